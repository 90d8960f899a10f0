"""gunicorn's response writer sending a known-length answer in one write
(messenger.one_write_response), byte for byte what gunicorn's own writer sends."""

import re

import pytest
from gunicorn import util
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser

from messenger import one_write_response
from messenger.one_write_response import OneWriteResponse


class RecordingSocket:
    """Stands in for the client's socket: keeps each write apart."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def send(self, data: bytes) -> int:
        self.sendall(data)
        return len(data)


def _request(method: str = "GET") -> object:
    raw = f"{method} /api/v1/users HTTP/1.1\r\nHost: t\r\n\r\n".encode()
    return next(RequestParser(Config(), iter([raw]), ("127.0.0.1", 5000)))


def _answer(
    response_class: type, status: str, headers: list, body: list[bytes], method: str = "GET"
) -> list[bytes]:
    sock = RecordingSocket()
    response = response_class(_request(method), sock, Config())
    response.start_response(status, headers)
    for piece in body:
        response.write(piece)
    response.close()
    # The Date header is the one part that may differ between two answers.
    return [re.sub(rb"Date: [^\r]*", b"Date: -", write) for write in sock.writes]


ANSWERS = {
    "json with its length": ("200 OK", [("Content-Length", "11")], [b'{"id": "x"}']),
    "chunked, no length": ("200 OK", [], [b"abc", b"def"]),
    "length, two pieces": ("200 OK", [("Content-Length", "6")], [b"abc", b"def"]),
    "no content": ("204 No Content", [], []),
    "empty body": ("200 OK", [("Content-Length", "0")], [b""]),
    "body longer than announced": ("200 OK", [("Content-Length", "2")], [b"abcd"]),
}


@pytest.mark.parametrize("name", ANSWERS)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_bytes_on_the_wire_are_gunicorns(name, method):
    status, headers, body = ANSWERS[name]
    ours = _answer(OneWriteResponse, status, headers, body, method)
    theirs = _answer(wsgi.Response, status, headers, body, method)
    assert b"".join(ours) == b"".join(theirs)


def test_a_whole_known_length_body_goes_with_its_headers_in_one_write():
    writes = _answer(OneWriteResponse, "200 OK", [("Content-Length", "11")], [b'{"id": "x"}'])
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert writes[0].endswith(b'\r\n\r\n{"id": "x"}')
    # gunicorn's own writer: headers, then body
    assert len(_answer(wsgi.Response, "200 OK", [("Content-Length", "11")], [b"x" * 11])) == 2


def test_a_streamed_answer_is_written_as_it_comes():
    writes = _answer(OneWriteResponse, "200 OK", [], [b"abc", b"def"])
    assert len(writes) == len(_answer(wsgi.Response, "200 OK", [], [b"abc", b"def"])) > 2


def test_the_date_header_is_the_current_second_formatted_as_gunicorn_does(monkeypatch):
    date = one_write_response._SecondDate()
    monkeypatch.setattr(one_write_response.time, "time", lambda: 1_000_000_000.7)
    assert date() == "Sun, 09 Sep 2001 01:46:40 GMT"
    monkeypatch.setattr(one_write_response.time, "time", lambda: 1_000_000_001.2)
    assert date() == "Sun, 09 Sep 2001 01:46:41 GMT"
    assert date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"  # an explicit time is not cached


def test_install_makes_gunicorn_build_this_response(monkeypatch):
    monkeypatch.setattr(wsgi, "Response", wsgi.Response)
    monkeypatch.setattr(util, "http_date", util.http_date)
    one_write_response.install()
    client, server = ("127.0.0.1", 5000), ("127.0.0.1", 8080)
    response, _ = wsgi.create(_request(), RecordingSocket(), client, server, Config())
    assert isinstance(response, OneWriteResponse)
    assert util.http_date() == util.http_date()
