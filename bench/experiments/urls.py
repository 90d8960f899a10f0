"""Experimental routes in front of bench.urls (see bench.experiments.settings).

`plain`: POST /api/v1/users/ as a plain Django view that calls the same shard access as our
API, validates without a DRF serializer and answers with orjson. Every other method and path
goes to our views (GET by id already skips DRF's dispatch in the product)."""

import os
import uuid

import orjson
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from bench.urls import handler400, handler404, handler500  # noqa: F401 - Django reads them
from messenger.errors import error_response
from shards.access import run_write
from shards.consistency import TOKEN_HEADER, encode_token
from shards.topology import shard_for_user_id
from users import email_lookup, user_queries
from users.models import User
from users.serializers import iso_utc
from users.views import UserViewSet

DETAIL = {"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}
_email = EmailValidator()


class NoAuthUserViewSet(UserViewSet):
    def perform_authentication(self, request) -> None:
        pass  # no authenticators are configured: skip DRF's lazy user machinery


drf_detail = UserViewSet.as_view(DETAIL)
drf_collection = UserViewSet.as_view({"get": "list", "post": "create"})


def _json(body: dict, status: int = 200) -> HttpResponse:
    return HttpResponse(orjson.dumps(body), status=status, content_type="application/json")


@csrf_exempt
def plain_collection(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return drf_collection(request)
    try:
        body = orjson.loads(request.body)
        name, email = body["name"].strip(), body["email"].strip()
        _email(email)
        if not name or len(name) > 255 or set(body) - {"name", "email"}:
            raise ValueError
    except (ValueError, KeyError, AttributeError, TypeError, ValidationError):
        return error_response(400, "invalid body", "invalid")
    user_id = uuid.uuid4()
    try:
        email_lookup.claim(email, user_id)
    except email_lookup.EmailTaken:
        return error_response(409, "a user with this email already exists", "email_taken")
    shard = shard_for_user_id(user_id)
    now = timezone.now()
    user = User(id=user_id, name=name, email=email, created_at=now, updated_at=now)
    _, lsn = run_write(shard, lambda: user_queries.insert(user), atomic=False)
    created = iso_utc(now)
    response = _json(
        {"id": str(user_id), "name": name, "email": email, "created_at": created,
         "updated_at": created},
        status=201,
    )  # fmt: skip
    response["Location"] = f"/api/v1/users/{user_id}"
    if lsn:
        response[TOKEN_HEADER] = encode_token({shard.id: lsn})
    return response


MODE = os.environ.get("EXP_URLS", "plain")
if MODE == "plain":
    detail, collection = drf_detail, plain_collection
else:
    detail, collection = (
        NoAuthUserViewSet.as_view(DETAIL),
        NoAuthUserViewSet.as_view({"get": "list", "post": "create"}),
    )

urlpatterns = [
    path("api/v1/users/<str:pk>", detail),
    path("api/v1/users/", collection),
    path("", include("bench.urls")),
]
