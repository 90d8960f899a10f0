"""OpenAPI documentation of the users API: bodies, parameters and examples.

Only drf-spectacular reads these serializers; the views answer with
`users.serializers.user_representation`. The examples are the README's curl examples."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers

from messenger.schema import (
    LENGTH_REQUIRED,
    NOT_FOUND,
    RETRY_AFTER_HEADER,
    SHARD_UNAVAILABLE,
    TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
    ErrorSerializer,
    bad_request,
)
from shards.consistency import TOKEN_HEADER
from users.serializers import ListQuerySerializer, UserInputSerializer

EXAMPLE_ID = "123e4567-e89b-12d3-a456-426614174000"
EXAMPLE_USER = {
    "id": EXAMPLE_ID,
    "name": "John Doe",
    "email": "john@example.com",
    "created_at": "2026-11-25T08:14:53.123456Z",
    "updated_at": "2026-11-25T08:14:53.123456Z",
}


class UserSerializer(serializers.Serializer):
    id = serializers.UUIDField(help_text="Chosen by the server; decides the user's shard.")
    name = serializers.CharField(max_length=255)
    email = serializers.EmailField(
        max_length=254, help_text="Unique across all shards, case-insensitively."
    )
    created_at = serializers.DateTimeField(help_text="ISO 8601, UTC, microseconds.")
    updated_at = serializers.DateTimeField(help_text="ISO 8601, UTC, microseconds.")


# A list action answers one object (a page), not an array of them.
@extend_schema_serializer(many=False)
class UserPageSerializer(serializers.Serializer):
    results = UserSerializer(many=True, help_text="Newest first: (created_at, id) descending.")
    next = serializers.URLField(
        allow_null=True, help_text="URL of the next page (a cursor), null on the last page."
    )
    partial = serializers.BooleanField(
        required=False,
        help_text="Only with `partial=true`: whether some shards did not answer.",
    )
    missing_shards = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Only with `partial=true`: the shards whose users are missing from the page.",
    )


CONSISTENCY_PARAMETER = OpenApiParameter(
    TOKEN_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "The token of this client's last write (sent back by every write): reads then show"
        " at least what the client wrote, however far the replicas lag."
    ),
)
USER_ID_PARAMETER = OpenApiParameter(
    "id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The user's id."
)
WRITE_TOKEN_HEADER = OpenApiParameter(
    TOKEN_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    response=[200, 201, 204],
    description=(
        "Consistency token covering this write, merged with the one sent: send it with later"
        " requests to read your own writes."
    ),
)
LOCATION_HEADER = OpenApiParameter(
    "Location",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    response=[201],
    required=True,
    description="Path of the new user: `/api/v1/users/{id}`.",
)
EMAIL_CONFLICT = OpenApiResponse(
    ErrorSerializer,
    description=(
        "Another user has this email (`email_taken`), or is being created with it right now"
        " (`email_pending`, with `Retry-After`); on an update, another change of the same"
        " user's email is in progress (`user_busy`, with `Retry-After`)."
    ),
    examples=[
        OpenApiExample(
            "Email taken",
            value={
                "error": "a user with this email already exists",
                "code": "email_taken",
                "fields": {"email": ["A user with this email already exists."]},
            },
            status_codes=["409"],
            response_only=True,
        )
    ],
)
CREATE_EXAMPLE = OpenApiExample(
    "Create John Doe",
    value={"name": "John Doe", "email": "john@example.com"},
    request_only=True,
)
UPDATE_EXAMPLE = OpenApiExample("Rename", value={"name": "Jane Doe"}, request_only=True)
USER_EXAMPLE = OpenApiExample("John Doe", value=EXAMPLE_USER, response_only=True)
UPDATED_EXAMPLE = OpenApiExample(
    "Renamed",
    value={**EXAMPLE_USER, "name": "Jane Doe", "updated_at": "2026-11-25T08:20:01.000001Z"},
    response_only=True,
)
PAGE_EXAMPLE = OpenApiExample(
    "First page",
    value={
        "results": [EXAMPLE_USER],
        "next": "http://localhost:8080/api/v1/users/?cursor=MjAyNi0xMS0yNVQwODoxNDo1My4xMjM0NTYrMDA6MDB8MTIzZTQ1NjctZTg5Yi0xMmQzLWE0NTYtNDI2NjE0MTc0MDAw&limit=20",
    },
    response_only=True,
)
UPDATE_DESCRIPTION = (
    "Changes only the fields given (PUT and PATCH alike); `updated_at` is the time of this"
    " change. A new email is checked for uniqueness across all shards."
)

user_list_schema = extend_schema(
    operation_id="users_list",
    tags=["users"],
    summary="List users",
    description=(
        "Newest first, merged from every shard. Follow `next` (a keyset cursor: every page"
        " costs the same) or use `offset` for shallow pages (up to LIST_MAX_OFFSET). With"
        " `email`, answers the user holding that email (case-insensitive) or no result."
        " A shard that fails makes the list fail with 503 unless `partial=true`."
    ),
    parameters=[ListQuerySerializer, CONSISTENCY_PARAMETER, RETRY_AFTER_HEADER],
    responses={
        200: OpenApiResponse(
            UserPageSerializer, description="One page of users.", examples=[PAGE_EXAMPLE]
        ),
        400: bad_request(
            "Invalid query: limit out of 1..100, bad cursor, offset too deep.",
            [
                OpenApiExample(
                    "Limit too large",
                    value={
                        "error": "invalid input",
                        "code": "validation_error",
                        "fields": {"limit": ["Ensure this value is less than or equal to 100."]},
                    },
                    status_codes=["400"],
                    response_only=True,
                )
            ],
        ),
        503: SHARD_UNAVAILABLE,
    },
)
user_create_schema = extend_schema(
    operation_id="users_create",
    tags=["users"],
    summary="Create a user",
    parameters=[CONSISTENCY_PARAMETER, LOCATION_HEADER, WRITE_TOKEN_HEADER, RETRY_AFTER_HEADER],
    request=UserInputSerializer,
    examples=[CREATE_EXAMPLE, USER_EXAMPLE],
    responses={
        201: OpenApiResponse(UserSerializer, description="Created."),
        400: bad_request("Missing, empty, unknown or read-only fields, or malformed JSON."),
        409: EMAIL_CONFLICT,
        411: LENGTH_REQUIRED,
        413: TOO_LARGE,
        415: UNSUPPORTED_MEDIA_TYPE,
        503: SHARD_UNAVAILABLE,
    },
)
user_retrieve_schema = extend_schema(
    operation_id="users_retrieve",
    tags=["users"],
    summary="Get a user by id",
    parameters=[USER_ID_PARAMETER, CONSISTENCY_PARAMETER, RETRY_AFTER_HEADER],
    responses={
        200: OpenApiResponse(UserSerializer, description="The user.", examples=[USER_EXAMPLE]),
        404: NOT_FOUND,
        503: SHARD_UNAVAILABLE,
    },
)


def user_update_schema(method: str, operation_id: str, summary: str):
    """PUT and PATCH share one view method, so each gets its schema scoped to its method."""
    return extend_schema(
        methods=[method],
        operation_id=operation_id,
        tags=["users"],
        summary=summary,
        description=UPDATE_DESCRIPTION,
        parameters=[
            USER_ID_PARAMETER,
            CONSISTENCY_PARAMETER,
            WRITE_TOKEN_HEADER,
            RETRY_AFTER_HEADER,
        ],
        request=UserInputSerializer(partial=True),
        examples=[UPDATE_EXAMPLE, UPDATED_EXAMPLE],
        responses={
            200: OpenApiResponse(UserSerializer, description="The user as changed."),
            400: bad_request("No field given, or an empty, unknown or read-only field."),
            404: NOT_FOUND,
            409: EMAIL_CONFLICT,
            411: LENGTH_REQUIRED,
            413: TOO_LARGE,
            415: UNSUPPORTED_MEDIA_TYPE,
            503: SHARD_UNAVAILABLE,
        },
    )


user_destroy_schema = extend_schema(
    operation_id="users_destroy",
    tags=["users"],
    summary="Delete a user",
    description="Deletes the user and frees its email.",
    parameters=[USER_ID_PARAMETER, CONSISTENCY_PARAMETER, WRITE_TOKEN_HEADER, RETRY_AFTER_HEADER],
    responses={
        204: OpenApiResponse(description="Deleted."),
        404: NOT_FOUND,
        503: SHARD_UNAVAILABLE,
    },
)
