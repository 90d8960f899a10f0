"""gunicorn's HTTP/1 response, sending an answer whose length is known in one socket write.

gunicorn writes the status line and headers in one `sendall` and the body in another. A
Django answer is one piece of bytes with a `Content-Length` (ContentLengthMiddleware), so
here both go out together: one system call and one TCP segment instead of two, and one pass
through gevent's `sendall` (which asks the socket for its buffer size on every call). The
`Date` header is formatted once a second instead of once per answer. Writing a GET's answer
to a socket pair under gevent took 28 µs with gunicorn's writer, 23 µs in one write and 17 µs
with the date kept (docs/PERFORMANCE_TUNING.md, step 11). Streamed, chunked, file and
bodiless answers are written exactly as gunicorn writes them.

No option of gunicorn's does this: its writer has one hook for the body's framing
(`_emit_body`), which is where the held headers join the body."""

import time
from email.utils import formatdate

from gunicorn import util
from gunicorn.http import wsgi

_format_http_date = util.http_date


class OneWriteResponse(wsgi.Response):
    _held: bytes | None = None
    _hold_headers = False

    def write(self, arg: bytes) -> None:
        # Only a write known to reach _emit_body: the whole body, nothing sent before it.
        self._hold_headers = (
            not self.headers_sent
            and not self.chunked
            and not self._omits_body
            and isinstance(arg, bytes)
            and 0 < len(arg) == self.response_length
        )
        super().write(arg)

    def send_headers(self) -> None:
        if not self._hold_headers or self.headers_sent:
            super().send_headers()
            return
        # gunicorn's own send_headers, with the bytes kept for the body's write.
        tosend = self.default_headers()
        tosend.extend([f"{k}: {v}\r\n" for k, v in self.headers])
        self._held = util.to_bytestring("".join(tosend) + "\r\n", "latin-1")
        self.headers_sent = True

    def _emit_body(self, data: bytes) -> None:
        held, self._held = self._held, None
        if held is None:
            super()._emit_body(data)
        else:
            self.sock.sendall(held + data)


class _SecondDate:
    """`util.http_date()` for the current time, formatted once per second."""

    second = -1
    text = ""

    def __call__(self, timestamp: float | None = None) -> str:
        if timestamp is not None:
            return _format_http_date(timestamp)
        now = int(time.time())
        if now != self.second:
            self.text, self.second = formatdate(now, usegmt=True), now
        return self.text


def install() -> None:
    """Make gunicorn build this response for every HTTP/1 request of this process."""
    wsgi.Response = OneWriteResponse  # what wsgi.create() builds when given no class
    util.http_date = _SecondDate()
