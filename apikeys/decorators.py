"""The API key check for views outside DRF (DRF views get it from their settings), with
the answers DRF would give."""

from collections.abc import Callable
from functools import wraps
from types import SimpleNamespace

from django.http import HttpRequest, HttpResponse
from rest_framework import exceptions

from apikeys.throttling import ApiKeyRateThrottle
from apikeys.verify import WWW_AUTHENTICATE, auth_required, verify
from messenger.errors import error_response


def refusal(request: HttpRequest) -> HttpResponse | None:
    """None when the request may go on, else its answer: 401 with `WWW-Authenticate`, 429
    with `Retry-After` (API_KEY_RATE), or 503 when keys cannot be checked."""
    if not auth_required():
        return None
    try:
        holder = verify(request.META.get("HTTP_AUTHORIZATION"))
        throttle = ApiKeyRateThrottle()
        if not throttle.allow_request(SimpleNamespace(auth=holder), None):
            raise exceptions.Throttled(throttle.wait())
    except exceptions.APIException as exc:
        response = error_response(exc.status_code, str(exc.detail), exc.get_codes())
        if exc.status_code == 401:
            response["WWW-Authenticate"] = WWW_AUTHENTICATE
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            response["Retry-After"] = str(exc.wait)
        return response
    return None


def require_api_key(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        return refusal(request) or view(request, *args, **kwargs)

    return wrapped
