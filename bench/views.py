"""Comparison endpoints for the benchmark; never part of the product's URLs.

- The CEILING (`ceiling_get_user`): a bare Django function view, no DRF, doing the same
  primary-key SELECT as our GET through the same pooled PgBouncer connections (the replica
  alias of the id's shard) and answering with JsonResponse. Nothing else: no health view,
  no consistency token, no fallback. Our GET cannot be faster than this.
- The bare list (`ceiling_list_users`): the first page of our list, newest first, from one
  shard's replica (shard 0): one keyset SELECT of limit + 1 rows and the same `next` cursor,
  where ours reads every shard and merges.
- The STOCK baseline (`StockUserViewSet`): DRF as most people write it: a ModelViewSet with
  a ModelSerializer and DRF's default classes (JSON renderer, browsable API, session and
  basic authentication, default content negotiation), on one shard
  (`User.objects.using("shard_0")`, its primary), lists paged by DRF's CursorPagination;
  a create is one INSERT (on the new id's shard, as the router places it).
- The bare POST (`bare_create_user`): the same two inserts as our POST (the email claim on
  the email's shard, then the user row on the id's shard), each a single statement, with
  no validation framework and no consistency token.
"""

import json
import uuid

from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from rest_framework import (
    authentication,
    negotiation,
    pagination,
    parsers,
    permissions,
    renderers,
    viewsets,
)
from rest_framework import serializers as drf_serializers

from shards.topology import all_shards, shard_for_email, shard_for_user_id
from users.models import EmailLookup, User
from users.pagination import Cursor

USER_SELECT = "SELECT id, name, email, created_at, updated_at FROM users WHERE id = %s"


def _not_found() -> JsonResponse:
    return JsonResponse({"detail": "user not found"}, status=404)


@require_GET
def ceiling_get_user(request: HttpRequest, user_id: str) -> JsonResponse:
    try:
        key = uuid.UUID(user_id)
    except ValueError:
        return _not_found()
    with connections[shard_for_user_id(key).replica_alias].cursor() as cursor:
        cursor.execute(USER_SELECT, [key])
        row = cursor.fetchone()
    if row is None:
        return _not_found()
    return JsonResponse(
        {
            "id": str(row[0]),
            "name": row[1],
            "email": row[2],
            "created_at": row[3],
            "updated_at": row[4],
        }
    )


FIRST_PAGE_SQL = (
    "SELECT id, name, email, created_at, updated_at FROM users"
    " ORDER BY created_at DESC, id DESC LIMIT %s"
)


@require_GET
def ceiling_list_users(request: HttpRequest) -> JsonResponse:
    try:
        limit = min(max(int(request.GET.get("limit", 20)), 1), 100)
    except ValueError:
        return JsonResponse({"detail": "limit must be a number"}, status=400)
    with connections[all_shards()[0].replica_alias].cursor() as cursor:
        cursor.execute(FIRST_PAGE_SQL, [limit + 1])
        rows = cursor.fetchall()
    next_url = None
    if len(rows) > limit:
        cursor_text = Cursor(rows[limit - 1][3], rows[limit - 1][0]).encode()
        next_url = request.build_absolute_uri(f"/api/v1/users/?cursor={cursor_text}&limit={limit}")
    results = [
        {"id": str(r[0]), "name": r[1], "email": r[2], "created_at": r[3], "updated_at": r[4]}
        for r in rows[:limit]
    ]
    return JsonResponse({"results": results, "next": next_url})


def _claim_sql() -> str:
    # The model's columns, so the statement follows the lookup table's current shape.
    columns = [field.column for field in EmailLookup._meta.concrete_fields if not field.generated]
    values = {"email": "%(email)s", "user_id": "%(user_id)s", "claimed_at": "now()"}
    values["confirmed"] = "false"
    return (
        f"INSERT INTO email_lookup ({', '.join(columns)})"
        f" VALUES ({', '.join(values[c] for c in columns)})"
        " ON CONFLICT (email) DO NOTHING RETURNING user_id"
    )


CLAIM_SQL = _claim_sql()
INSERT_SQL = (
    "INSERT INTO users (id, name, email, created_at, updated_at) VALUES (%s, %s, %s, %s, %s)"
)


@csrf_exempt
@require_POST
def bare_create_user(request: HttpRequest) -> JsonResponse:
    try:
        body = json.loads(request.body)
        name, email = str(body["name"]).strip(), str(body["email"]).strip()
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"detail": "name and email are required"}, status=400)
    user_id = uuid.uuid4()
    key = email.lower()
    with connections[shard_for_email(key).primary_alias].cursor() as cursor:
        cursor.execute(CLAIM_SQL, {"email": key, "user_id": user_id})
        if cursor.fetchone() is None:
            return JsonResponse({"detail": "email taken"}, status=409)
    now = timezone.now()
    with connections[shard_for_user_id(user_id).primary_alias].cursor() as cursor:
        cursor.execute(INSERT_SQL, [user_id, name, email, now, now])
    return JsonResponse(
        {"id": str(user_id), "name": name, "email": email, "created_at": now, "updated_at": now},
        status=201,
    )


class StockUserSerializer(drf_serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "name", "email", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def create(self, validated_data: dict) -> User:
        # ModelSerializer.create asks the manager, which needs a shard (our router refuses a
        # query without one): the new row's id routes its INSERT instead.
        user = User(**validated_data)
        user.save(force_insert=True)
        return user


class StockCursorPagination(pagination.CursorPagination):
    page_size = 20
    ordering = ("-created_at", "-id")


class StockUserViewSet(viewsets.ModelViewSet):
    """DRF's defaults spelled out: the project's REST_FRAMEWORK settings would otherwise
    hand this view our faster renderer and negotiation."""

    queryset = User.objects.using("shard_0")
    serializer_class = StockUserSerializer
    renderer_classes = [renderers.JSONRenderer, renderers.BrowsableAPIRenderer]
    parser_classes = [parsers.JSONParser, parsers.FormParser, parsers.MultiPartParser]
    authentication_classes = [
        authentication.SessionAuthentication,
        authentication.BasicAuthentication,
    ]
    permission_classes = [permissions.AllowAny]
    content_negotiation_class = negotiation.DefaultContentNegotiation
    pagination_class = StockCursorPagination

    def perform_create(self, serializer: StockUserSerializer) -> None:
        # The model has no defaults: the usual DRF way to fill server-side fields. No email
        # claim: stock DRF knows none.
        now = timezone.now()
        serializer.save(id=uuid.uuid4(), created_at=now, updated_at=now)
