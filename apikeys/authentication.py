"""DRF's side of the API keys: an authentication class and the permission that needs it."""

from typing import TYPE_CHECKING

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from apikeys.verify import MISSING, WWW_AUTHENTICATE, KeyHolder, auth_required, verify

if TYPE_CHECKING:  # DRF imports this module while rest_framework.views is half-imported
    from rest_framework.views import APIView


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer <key>`; checked only when API_AUTH=required."""

    def authenticate(self, request: Request) -> tuple[KeyHolder, KeyHolder] | None:
        header = request.META.get("HTTP_AUTHORIZATION")
        if not auth_required() or not header:
            return None
        holder = verify(header)
        return holder, holder

    def authenticate_header(self, request: Request) -> str:
        # Having one makes DRF answer 401 (not 403) to a request without a valid key.
        return WWW_AUTHENTICATE


class HasApiKey(BasePermission):
    """Every request carries a valid key when API_AUTH=required; any request otherwise."""

    def has_permission(self, request: Request, view: "APIView") -> bool:
        if auth_required() and not isinstance(request.user, KeyHolder):
            raise exceptions.NotAuthenticated(MISSING)
        return True
