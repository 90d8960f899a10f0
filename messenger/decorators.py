"""View decorators that answer in the API's error shape."""

from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, HttpResponse

from messenger.errors import error_response

SAFE_METHODS = ("GET", "HEAD")


def require_safe_json(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Django's `require_safe` (GET and HEAD only), answering other methods with the JSON
    405 of the API instead of an empty HTML one. Health probes, the schema and the docs
    page have nothing to say to OPTIONS or a write, and their own renderers (YAML, HTML)
    cannot render an error."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method not in SAFE_METHODS:
            response = error_response(
                405, f'Method "{request.method}" not allowed.', "method_not_allowed"
            )
            response["Allow"] = ", ".join(SAFE_METHODS)
            return response
        return view(request, *args, **kwargs)

    return wrapped
