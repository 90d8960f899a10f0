"""OpenAPI documentation of the API: the shared error shape, the shard and health bodies,
and the schema hooks.

These serializers only describe responses for drf-spectacular; the views build their bodies
themselves. The health endpoints are plain Django views (they must answer without DRF's
machinery), which drf-spectacular does not discover, so a preprocessing hook adds them from
documentation-only views that are never routed."""

import re

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from messenger.errors import ERROR_CODES


# --- The error shape ---------------------------------------------------------------------------
class ErrorSerializer(serializers.Serializer):
    """Every error of the API has this shape, whatever layer refused the request."""

    error = serializers.CharField(help_text="Human-readable message.")
    code = serializers.ChoiceField(
        choices=list(ERROR_CODES),
        help_text="Stable machine-readable code:\n\n"
        + "\n".join(f"- `{code}`: {meaning}" for code, meaning in ERROR_CODES.items()),
    )
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text=(
            "Per-field messages of a validation error (`non_field_errors` for the body as a"
            " whole); for a 503, `shards` lists the shards that failed."
        ),
    )


# Sent with 503 and with 409 `email_pending`; listed on every operation that can answer either.
RETRY_AFTER_HEADER = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    OpenApiParameter.HEADER,
    response=[409, 503],
    description="Seconds to wait before retrying.",
)


def _error_example(name: str, status: int, body: dict) -> OpenApiExample:
    return OpenApiExample(name, value=body, status_codes=[str(status)], response_only=True)


def error_response(description: str, examples: list[OpenApiExample]) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description, examples=examples)


BAD_REQUEST_EXAMPLES = [
    _error_example(
        "Validation error",
        400,
        {
            "error": "invalid input",
            "code": "validation_error",
            "fields": {"email": ["Enter a valid email address."], "age": ["Unknown field."]},
        },
    ),
    _error_example(
        "Malformed JSON",
        400,
        {
            "error": "JSON parse error - unexpected character, expected a string key:"
            " line 1 column 2 (char 1)",
            "code": "parse_error",
        },
    ),
]
NOT_FOUND = error_response(
    "No user has this id (a malformed id names no user either).",
    [_error_example("Not found", 404, {"error": "user not found", "code": "not_found"})],
)
SHARD_UNAVAILABLE = OpenApiResponse(
    ErrorSerializer,
    description=(
        "A shard could not serve the request (`shard_unavailable`), or failed while a write"
        " was committing (`write_outcome_unknown`: retrying the same request is safe)."
        " `Retry-After` says when to retry."
    ),
    examples=[
        _error_example(
            "Shard unavailable",
            503,
            {
                "error": "shard unavailable: shard-2",
                "code": "shard_unavailable",
                "fields": {"shards": ["shard-2"]},
            },
        )
    ],
)
TOO_LARGE = error_response(
    "The body is larger than MAX_BODY_BYTES.",
    [
        _error_example(
            "Too large",
            413,
            {"error": "request body larger than 65536 bytes", "code": "request_too_large"},
        )
    ],
)
LENGTH_REQUIRED = error_response(
    "The body was sent chunked: send it with `Content-Length`.",
    [
        _error_example(
            "Length required",
            411,
            {
                "error": "chunked request bodies are not accepted: send Content-Length",
                "code": "length_required",
            },
        )
    ],
)
UNSUPPORTED_MEDIA_TYPE = error_response(
    "The body is not `application/json` in UTF-8.",
    [
        _error_example(
            "Unsupported media type",
            415,
            {
                "error": 'Unsupported media type "text/plain" in request.',
                "code": "unsupported_media_type",
            },
        )
    ],
)


def bad_request(description: str, examples: list[OpenApiExample] | None = None) -> OpenApiResponse:
    return error_response(description, examples or BAD_REQUEST_EXAMPLES)


# --- Shard statistics --------------------------------------------------------------------------
class ShardStatsEntrySerializer(serializers.Serializer):
    shard_id = serializers.IntegerField(min_value=0)
    shard_name = serializers.CharField(help_text="`shard-<id>`.")
    user_count = serializers.IntegerField(
        allow_null=True, help_text="Users on the shard; null when the shard did not answer."
    )
    healthy = serializers.BooleanField(help_text="The shard answered and its primary is up.")
    replica_ok = serializers.BooleanField(help_text="Reads may go to the replica.")
    replica_lag_seconds = serializers.FloatField(
        allow_null=True,
        help_text="Replication lag; 0 when caught up, null when unknown (primary down).",
    )


class ShardStatsSerializer(serializers.Serializer):
    total_users = serializers.IntegerField(min_value=0)
    shard_count = serializers.IntegerField(min_value=1)
    complete = serializers.BooleanField(
        help_text="False when a shard did not answer: `total_users` then misses its users."
    )
    shards = ShardStatsEntrySerializer(many=True, help_text="Ordered by shard id.")


def _stats_entry(shard_id: int, count: int) -> dict:
    return {
        "shard_id": shard_id,
        "shard_name": f"shard-{shard_id}",
        "user_count": count,
        "healthy": True,
        "replica_ok": True,
        "replica_lag_seconds": 0.0,
    }


# The figures of the README's `make shards` example.
STATS_EXAMPLE = OpenApiExample(
    "Five shards",
    value={
        "total_users": 9398603,
        "shard_count": 5,
        "complete": True,
        "shards": [
            _stats_entry(i, n) for i, n in enumerate([2132135, 2368920, 2424517, 2382946, 90085])
        ],
    },
    response_only=True,
)


# --- Health ------------------------------------------------------------------------------------
class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok"])
    shards = serializers.IntegerField(min_value=1, help_text="Number of shards configured.")
    mode = serializers.ChoiceField(
        choices=["sharded", "single"], help_text="`single` when SHARDING_ENABLED is false."
    )


class ReadinessShardSerializer(serializers.Serializer):
    shard_id = serializers.IntegerField(min_value=0)
    shard_name = serializers.CharField()
    primary_ok = serializers.BooleanField()
    replica_ok = serializers.BooleanField(help_text="Reachable and within REPLICA_MAX_LAG.")
    replica_lag_seconds = serializers.FloatField(allow_null=True)


class ReadinessSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "unavailable"])
    failing = serializers.ListField(
        child=serializers.CharField(),
        help_text="`control-db`, `shard-<id>-primary` / `shard-<id>-replica`: every database"
        " that is down.",
    )
    control_db_ok = serializers.BooleanField(
        help_text="The control database (slot map, API keys, admin) answered."
    )
    shards = ReadinessShardSerializer(many=True)


class HealthDoc(APIView):
    """Documents `shards.views.health`; never routed."""

    # Liveness needs no API key.
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="health",
        tags=["health"],
        summary="Liveness",
        description="Answers without touching any database.",
        responses={
            200: OpenApiResponse(
                HealthSerializer,
                description="The API process is up.",
                examples=[
                    OpenApiExample(
                        "Five shards", value={"status": "ok", "shards": 5, "mode": "sharded"}
                    )
                ],
            )
        },
    )
    def get(self, request: Request) -> Response:
        raise NotImplementedError


class HealthReadyDoc(APIView):
    """Documents `shards.views.health_ready`; never routed."""

    @extend_schema(
        operation_id="health_ready",
        tags=["health"],
        summary="Readiness",
        description="Probes the control database and every shard's primary and replica now.",
        responses={
            200: OpenApiResponse(ReadinessSerializer, description="Every database is up."),
            503: OpenApiResponse(
                ReadinessSerializer,
                description="`failing` names the databases that are down.",
                examples=[
                    OpenApiExample(
                        "Replica down",
                        value={
                            "status": "unavailable",
                            "failing": ["shard-1-replica"],
                            "control_db_ok": True,
                            "shards": [
                                {
                                    "shard_id": 1,
                                    "shard_name": "shard-1",
                                    "primary_ok": True,
                                    "replica_ok": False,
                                    "replica_lag_seconds": None,
                                }
                            ],
                        },
                        status_codes=["503"],
                    )
                ],
            ),
        },
    )
    def get(self, request: Request) -> Response:
        raise NotImplementedError


# --- Hooks -------------------------------------------------------------------------------------
# The users router accepts both `/users/<id>` and `/users/<id>/`; drf-spectacular writes the
# optional slash as a slash, the README documents the item path without one.
_ITEM_TRAILING_SLASH = re.compile(r"(\{[^}/]+\})/$")


def preprocess_endpoints(endpoints: list[tuple]) -> list[tuple]:
    """Document item paths without their optional trailing slash, and add the health views."""
    fixed = [
        (_ITEM_TRAILING_SLASH.sub(r"\1", path), path_regex, method, callback)
        for path, path_regex, method, callback in endpoints
    ]
    for url_name, doc_view in (("health", HealthDoc), ("health-ready", HealthReadyDoc)):
        path = reverse(url_name)
        fixed.append((path, f"^{re.escape(path.lstrip('/'))}$", "GET", doc_view.as_view()))
    return fixed


# Request bodies that refuse unknown fields (UserInputSerializer names them in a 400), and
# the minimum number of fields each needs.
CLOSED_REQUEST_BODIES = {"UserInputRequest": 2, "PatchedUserInputRequest": 1}


UNAUTHORIZED = {
    "description": "API_AUTH=required and the request has no valid API key"
    " (`not_authenticated`: none sent; `authentication_failed`: unknown or revoked).",
    "headers": {
        "WWW-Authenticate": {"schema": {"type": "string"}, "required": True},
    },
    "content": {
        "application/json": {
            "schema": {"$ref": "#/components/schemas/Error"},
            "examples": {
                "NoKey": {
                    "value": {
                        "error": "an API key is required: send `Authorization: Bearer <key>`",
                        "code": "not_authenticated",
                    },
                    "summary": "No key",
                }
            },
        }
    },
}


THROTTLED = {
    "description": "API_KEY_RATE is set and this key made more requests than it allows"
    " (`throttled`); `Retry-After` says when to retry.",
    "headers": {
        "Retry-After": {"schema": {"type": "integer"}, "required": True},
    },
    "content": {
        "application/json": {
            "schema": {"$ref": "#/components/schemas/Error"},
            "examples": {
                "Throttled": {
                    "value": {
                        "error": "Request was throttled. Expected available in 3 seconds.",
                        "code": "throttled",
                    },
                    "summary": "Over the key's rate",
                }
            },
        }
    },
}


def postprocess_schema(result: dict, generator, request, public: bool) -> dict:
    """Say in the schema what the serializers enforce by hand (no unknown fields) and what
    every operation behind an API key may answer (401, 429)."""
    schemas = result.get("components", {}).get("schemas", {})
    for name, min_properties in CLOSED_REQUEST_BODIES.items():
        if name in schemas:
            schemas[name]["additionalProperties"] = False
            schemas[name]["minProperties"] = min_properties
    for item in result["paths"].values():
        for operation in item.values():
            if any(requirement for requirement in operation.get("security", [])):
                operation["responses"].setdefault("401", UNAUTHORIZED)
                operation["responses"].setdefault("429", THROTTLED)
    return result


# Used by the schema view (messenger.urls); `manage.py spectacular --custom-settings
# messenger.schema.SCHEMA_SETTINGS` writes the same schema to a file.
SCHEMA_SETTINGS = {
    "PREPROCESSING_HOOKS": ["messenger.schema.preprocess_endpoints"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "messenger.schema.postprocess_schema",
    ],
    # Request and response bodies differ (ids and timestamps are never sent): name both.
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_GENERATE_CHOICE_DESCRIPTION": False,
}
