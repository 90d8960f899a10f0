"""HTTP layer of the users API: parse the request, call a service or selector, answer."""

import re
import uuid

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apikeys.decorators import refusal
from messenger.errors import error_body, error_response, shard_unavailable_response
from messenger.schema import STATS_EXAMPLE, ShardStatsSerializer
from shards.consistency import TOKEN_HEADER, Positions, encode_token, merge, request_positions
from shards.errors import ShardUnavailable
from shards.health import monitor
from shards.scatter import scatter
from shards.topology import all_shards
from users import selectors, services
from users.email_lookup import EmailTaken
from users.pagination import Cursor, InvalidCursor
from users.schema import (
    user_create_schema,
    user_destroy_schema,
    user_list_schema,
    user_retrieve_schema,
    user_update_schema,
)
from users.serializers import ListQuerySerializer, UserInputSerializer, user_representation

# A user id in a path is the hyphenated UUID, in any case; Python's UUID() would also take
# the braced, urn: and 32-hex spellings, which would make one user answer at four paths.
_USER_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)


def parse_user_id(raw: str) -> uuid.UUID | None:
    """The id a path names, or None when it is not a hyphenated UUID."""
    return uuid.UUID(raw) if _USER_ID.fullmatch(raw) else None


def _user_id(raw: str) -> uuid.UUID:
    user_id = parse_user_id(raw)
    if user_id is None:
        # A malformed id names no user: 404, like any other id that does not exist.
        raise NotFound("user not found")
    return user_id


def _with_token(response: Response, known: Positions, written: Positions) -> Response:
    """`known`: the positions the request's token carried (decoded by
    ConsistencyTokenMiddleware before any view runs, so an invalid token is refused before
    anything changes); `written`: those of this request."""
    token = merge(known, written)
    if token:
        response[TOKEN_HEADER] = encode_token(token)
    return response


def _conflict(exc: EmailTaken) -> Response:
    if exc.pending:
        response = Response(
            error_body(
                "a user with this email is being created; retry shortly",
                "email_pending",
                {"email": ["A user with this email is being created."]},
            ),
            status=status.HTTP_409_CONFLICT,
        )
        response["Retry-After"] = str(int(settings.EMAIL_CLAIM_TIMEOUT))
        return response
    return Response(
        error_body(
            "a user with this email already exists",
            "email_taken",
            {"email": ["A user with this email already exists."]},
        ),
        status=status.HTTP_409_CONFLICT,
    )


def _retrieve_without_drf(request: HttpRequest, pk: str) -> HttpResponse:
    """GET /api/v1/users/:id with the same selector, answers and error shapes as
    `UserViewSet.retrieve`, minus DRF's request wrapping, negotiation and rendering."""
    user_id = parse_user_id(pk)
    if user_id is None:
        return error_response(404, "user not found", "not_found")
    try:
        user = selectors.get_user(user_id=user_id)
    except ShardUnavailable as exc:
        return shard_unavailable_response(exc)
    if user is None:
        return error_response(404, "user not found", "not_found")
    body = orjson.dumps(user_representation(user), option=orjson.OPT_UTC_Z)
    return HttpResponse(body, content_type="application/json")


class UserViewSet(viewsets.ViewSet):
    lookup_value_regex = "[^/]+"

    def dispatch(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        # GET by id is the hottest path and needs nothing DRF adds: answering it directly
        # saves ~0.15 ms of ~1 ms of CPU per request (docs/PERFORMANCE_TUNING.md). The API
        # key check is the same one DRF's authentication class makes.
        if request.method == "GET" and "pk" in kwargs:
            return refusal(request) or _retrieve_without_drf(request, kwargs["pk"])
        return super().dispatch(request, *args, **kwargs)

    def perform_authentication(self, request: Request) -> None:
        # Lazy: the HasApiKey permission authenticates only when API_AUTH=required.
        pass

    @user_list_schema
    def list(self, request: Request) -> Response:
        query = ListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        if "email" in params:
            user = selectors.find_user_by_email(email=params["email"])
            results = [user_representation(user)] if user else []
            return Response({"results": results, "next": None})
        if params["offset"] > settings.LIST_MAX_OFFSET:
            raise ValidationError(
                {"offset": [f"offset above {settings.LIST_MAX_OFFSET}: follow the `next` cursor."]}
            )
        after = None
        if "cursor" in params:
            if params["offset"]:
                raise ValidationError({"offset": ["Use either cursor or offset, not both."]})
            try:
                after = Cursor.decode(params["cursor"])
            except InvalidCursor as exc:
                raise ValidationError({"cursor": [str(exc)]}) from exc
        page = selectors.list_users(
            limit=params["limit"],
            after=after,
            offset=params["offset"],
            allow_partial=params["partial"],
        )
        next_url = None
        if page.next_cursor is not None:
            next_url = request.build_absolute_uri(
                f"{request.path}?cursor={page.next_cursor.encode()}&limit={params['limit']}"
                + ("&partial=true" if params["partial"] else "")
            )
        body = {"results": [user_representation(u) for u in page.results], "next": next_url}
        if params["partial"]:
            body["partial"] = bool(page.missing_shards)
            body["missing_shards"] = page.missing_shards
        return Response(body)

    @user_create_schema
    def create(self, request: Request) -> Response:
        known = request_positions()
        data = UserInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            user, positions = services.create_user(**data.validated_data)
        except EmailTaken as exc:
            return _conflict(exc)
        response = Response(user_representation(user), status=status.HTTP_201_CREATED)
        response["Location"] = f"/api/v1/users/{user.id}"
        return _with_token(response, known, positions)

    @user_retrieve_schema
    def retrieve(self, request: Request, pk: str) -> HttpResponse:
        # Reached only for HEAD (dispatch answers GET); one implementation serves both.
        return _retrieve_without_drf(request._request, pk)

    @user_update_schema("PUT", "users_update", "Update a user")
    @user_update_schema("PATCH", "users_partial_update", "Update some fields of a user")
    def update(self, request: Request, pk: str) -> Response:
        # PUT changes only the fields given, like PATCH (the seed's documented behaviour).
        user_id = _user_id(pk)
        known = request_positions()
        data = UserInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        try:
            user, positions = services.update_user(user_id=user_id, **data.validated_data)
        except services.UserNotFound as exc:
            raise NotFound("user not found") from exc
        except EmailTaken as exc:
            return _conflict(exc)
        except services.UserBusy:
            response = Response(
                error_body(
                    "another change of this user's email is in progress; retry shortly",
                    "user_busy",
                ),
                status=status.HTTP_409_CONFLICT,
            )
            response["Retry-After"] = "1"
            return response
        return _with_token(Response(user_representation(user)), known, positions)

    partial_update = update

    @user_destroy_schema
    def destroy(self, request: Request, pk: str) -> Response:
        user_id = _user_id(pk)
        known = request_positions()
        try:
            positions = services.delete_user(user_id=user_id)
        except services.UserNotFound as exc:
            raise NotFound("user not found") from exc
        return _with_token(Response(status=status.HTTP_204_NO_CONTENT), known, positions)


class ShardStatsView(APIView):
    """Users per shard from trigger-maintained counters (exact, no table scan), read from
    each shard's replica when it is usable, in parallel, ordered by shard id."""

    @extend_schema(
        operation_id="shards_stats",
        tags=["shards"],
        summary="Users per shard",
        responses={
            200: OpenApiResponse(
                ShardStatsSerializer,
                description="Every shard's user count, in shard id order.",
                examples=[STATS_EXAMPLE],
            )
        },
    )
    def get(self, request: Request) -> Response:
        counts = scatter(all_shards(), selectors.count_users)
        shards = []
        for shard in all_shards():
            count = counts[shard.id]
            state = monitor.state(shard.id)
            ok = not isinstance(count, Exception)
            shards.append(
                {
                    "shard_id": shard.id,
                    "shard_name": shard.name,
                    "user_count": count if ok else None,
                    "healthy": ok and state.primary_ok,
                    "replica_ok": state.replica_ok,
                    "replica_lag_seconds": state.replica_lag_seconds,
                }
            )
        return Response(
            {
                "total_users": sum(s["user_count"] or 0 for s in shards),
                "shard_count": len(shards),
                "complete": all(s["user_count"] is not None for s in shards),
                "shards": shards,
            }
        )
