"""Read what is left of a request body after the answer, so the client can read the answer.

A client that writes its whole body before reading (no `Expect: 100-continue`) is still
writing when an early answer (413, 408, 404...) has been sent. Closing a socket with
unread bytes makes the kernel send a reset, which also discards the answer on the client's
side; and gunicorn's gevent worker, on a keep-alive connection, would drain the body
without any limit. Called from gunicorn's post_request hook: at most DRAIN_MAX_BYTES within
DRAIN_SECONDS are read and thrown away; past that the connection is closed (only a client
sending more than that sees a reset). gunicorn's own bounded drain (parser.finish_body with
a deadline) is only used by its gthread worker, hence this."""

import contextlib
import socket
from typing import Any

import gevent

from messenger.body_timeout import TIMED_OUT

DRAIN_MAX_BYTES = 64 * 1024 * 1024
DRAIN_SECONDS = 10.0
_CHUNK = 256 * 1024


def drain_unread_body(req: Any, environ: dict) -> None:
    """Discard the unread body of `req`, bounded; close the connection if it is not done."""
    body = getattr(req, "body", None)
    if body is None or (
        environ.get("CONTENT_LENGTH") in (None, "", "0")
        and "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    ):
        return  # no body (most requests): nothing to drain, no timer to start
    done = False
    if not environ.get(TIMED_OUT):
        drained = 0
        with gevent.Timeout(DRAIN_SECONDS, False):
            while drained < DRAIN_MAX_BYTES:
                try:
                    data = body.read(_CHUNK)
                except Exception:  # a broken chunked body, a reset: the connection is over
                    break
                if not data:
                    done = True
                    break
                drained += len(data)
    if not done:
        # gunicorn closes the connection after this request (no next request can be found
        # in an unfinished body); the FIN goes after the answer already written.
        req.must_close = True
        sock = environ.get("gunicorn.socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
