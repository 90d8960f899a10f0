"""Request bodies on a real gunicorn (issue 11, item 12): an early answer reaches a client
that writes its whole body before reading, and a body that never arrives is bounded in time."""

import socket
import time

import pytest

from tests.conftest import API_PORT

pytestmark = pytest.mark.cluster


def _post(body: bytes, length: int | None = None, extra: str = "") -> socket.socket:
    """Send headers and `body` at once, as a client without `Expect: 100-continue` does."""
    sock = socket.create_connection(("127.0.0.1", API_PORT), timeout=30)
    head = (
        "POST /api/v1/users/ HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\n{extra}\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def _read_answer(sock: socket.socket) -> bytes:
    """One answer: its head and the Content-Length bytes of body that follow (or, chunked,
    up to the last chunk), or what came before the connection closed."""
    data = b""
    while True:
        head, separator, body = data.partition(b"\r\n\r\n")
        if separator:
            length = _content_length(head)
            if length is not None and len(body) >= length:
                return data
            if length is None and body.endswith(b"0\r\n\r\n"):
                return data
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return None


@pytest.mark.parametrize("size", [3_000_000, 40_000_000])
def test_a_large_body_written_before_reading_gets_the_413_not_a_reset(api_server, size):
    # Connection: close, and more than the kernel's buffers hold: closing with the body
    # unread used to reset the connection while the client was still writing.
    sock = _post(b"x" * size, extra="Connection: close\r\n")
    answer = _read_answer(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:100]
    assert b'"code": "request_too_large"' in answer


def test_after_a_413_the_keep_alive_connection_serves_the_next_request(api_server):
    sock = _post(b"x" * 3_000_000)
    assert _read_answer(sock).startswith(b"HTTP/1.1 413 ")
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
    assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    sock.close()


def test_a_body_shorter_than_its_content_length_gets_408_and_the_connection_closes(
    api_server,
):
    # The api_server fixture sets REQUEST_BODY_TIMEOUT=2.
    started = time.monotonic()
    sock = _post(b'{"name": "Short"', length=100)
    answer = _read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert b'"code": "request_timeout"' in answer
    assert sock.recv(100) == b""  # closed: the rest of the body would never come
    sock.close()
    assert time.monotonic() - started < 6
