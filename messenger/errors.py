"""One JSON shape for every error: {"error": message, "code": stable code, "fields": {...}}.

Used by DRF's exception handler, Django's 404/500 handlers and the middleware, so a client
sees the same shape whatever layer refused the request. No stack trace, SQL or host name
ever reaches the body."""

import logging

from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from shards.errors import ShardUnavailable

logger = logging.getLogger(__name__)

# Every `code` the API answers with, and what it means: the one list the OpenAPI description
# and the README draw on (tests/test_openapi.py checks the code uses no other).
ERROR_CODES = {
    "validation_error": "400: a field, parameter or header is invalid; `fields` says which.",
    "parse_error": "400: the body is not valid JSON.",
    "bad_request": "400: the request itself is malformed (Content-Length, Host).",
    "not_authenticated": "401: API_AUTH=required and the request sent no API key.",
    "authentication_failed": "401: the API key is unknown or revoked (or not a Bearer key).",
    "not_found": "404: no such user (a malformed id names none) or route.",
    "method_not_allowed": "405: the path does not answer this method (`Allow` lists it).",
    "request_timeout": "408: the body did not arrive within REQUEST_BODY_TIMEOUT.",
    "email_taken": "409: another user has this email.",
    "email_pending": "409: a user with this email is being created; retry after `Retry-After`.",
    "user_busy": "409: another change of this user's email is in progress; retry shortly.",
    "length_required": "411: the body was sent chunked; send it with Content-Length.",
    "request_too_large": "413: the body is larger than MAX_BODY_BYTES.",
    "unsupported_media_type": "415: the body is not application/json in UTF-8.",
    "throttled": "429: the API key made more than API_KEY_RATE requests; retry after"
    " `Retry-After`.",
    "internal_error": "500: a bug; the log has its traceback.",
    "shard_unavailable": "503: a shard did not answer; nothing was written.",
    "write_outcome_unknown": "503: a shard failed while committing; retrying is safe.",
    "server_busy": "503: this server is at capacity (requests waiting for their turn, or"
    " every connection to a shard in use); retry shortly.",
    "auth_unavailable": "503: API keys cannot be checked: the control database did not"
    " answer; retry shortly.",
    "slot_moving": "503: the user's data is being moved to another shard for longer than"
    " RESHARD_WRITE_WAIT; nothing was written, retry shortly.",
}


def error_body(message: str, code: str, fields: dict | None = None) -> dict:
    body = {"error": message, "code": code}
    if fields:
        body["fields"] = fields
    return body


def error_response(
    status_code: int, message: str, code: str, fields: dict | None = None
) -> JsonResponse:
    return JsonResponse(error_body(message, code, fields), status=status_code)


def shard_unavailable_response(exc: ShardUnavailable) -> JsonResponse:
    """503 naming the shards, with Retry-After (DRF's handler and plain views alike)."""
    response = error_response(503, str(exc), exc.code, {"shards": exc.shard_names})
    response["Retry-After"] = str(exc.retry_after)
    return response


def _flatten(detail) -> list[str] | dict:
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        flat: list = []
        for item in detail:
            value = _flatten(item)
            flat.extend(value if isinstance(value, list) else [value])
        return flat
    return [str(detail)]


def api_exception_handler(exc: Exception, context: dict) -> HttpResponse | None:
    if isinstance(exc, ShardUnavailable):
        return shard_unavailable_response(exc)
    if isinstance(exc, SuspiciousOperation):
        # A Host header Django refuses, met while building an absolute link: the request's
        # fault, answered like Django's own handler400 would.
        return error_response(400, "bad request", "bad_request")
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        if not isinstance(fields, dict):
            fields = {"non_field_errors": fields}
        return Response(
            error_body("invalid input", "validation_error", fields),
            status=status.HTTP_400_BAD_REQUEST,
        )
    response = exception_handler(exc, context)
    if response is None:
        # Not an API exception: log it with its trace, answer the generic 500 shape.
        logger.exception("unhandled error in %s", context.get("view"))
        return Response(
            error_body("internal server error", "internal_error"),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
    message = detail if isinstance(detail, str) else "request refused"
    response.data = error_body(str(message), code if isinstance(code, str) else "error")
    return response


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(404, "not found", "not_found")


def server_error(request: HttpRequest) -> HttpResponse:
    return error_response(500, "internal server error", "internal_error")


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(400, "bad request", "bad_request")
