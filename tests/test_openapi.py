"""The OpenAPI schema is valid, its examples fit it, and the running API answers every
documented operation with a documented status, headers and body."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests
import yaml
from django.conf import settings
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from openapi_spec_validator import validate as validate_spec

from tests.fault_cluster import die_with_parent

pytestmark = pytest.mark.cluster

METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def schema(api_server) -> dict:
    response = requests.get(f"{api_server}/api/schema/?format=json", timeout=10)
    assert response.status_code == 200
    return response.json()


def _errors(instance, body_schema: dict, schema: dict) -> list[str]:
    """Messages of every way `instance` breaks `body_schema` ($refs resolved in `schema`)."""
    validator = OAS30Validator(
        {**body_schema, "components": schema["components"]}, format_checker=oas30_format_checker
    )
    return [
        f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(instance)
    ]


def assert_documented(schema: dict, path: str, method: str, response: requests.Response) -> None:
    """The answer's status is documented for the operation, and its headers and body are
    what the documentation says for that status."""
    operation = schema["paths"][path][method]
    status = str(response.status_code)
    assert status in operation["responses"], (
        f"{method.upper()} {path} answered {status}, documented: {sorted(operation['responses'])}"
        f" ({response.text[:200]})"
    )
    documented = operation["responses"][status]
    for name, header in documented.get("headers", {}).items():
        if header.get("required"):
            assert name in response.headers, f"{method.upper()} {path} {status}: no {name}"
    content = documented.get("content")
    if content is None:
        assert response.content == b"", f"{method.upper()} {path} {status}: undocumented body"
        return
    assert response.headers["Content-Type"].split(";")[0] in content
    errors = _errors(response.json(), content["application/json"]["schema"], schema)
    assert not errors, f"{method.upper()} {path} {status}: {errors}"


def _examples(node: dict) -> list:
    return [example["value"] for example in node.get("examples", {}).values()]


def _request_example(schema: dict, path: str, method: str) -> dict:
    content = schema["paths"][path][method]["requestBody"]["content"]["application/json"]
    return _examples(content)[0]


# --- The schema itself ---------------------------------------------------------------------
def test_schema_is_a_valid_openapi_3_document(schema):
    validate_spec(schema)
    assert schema["openapi"].startswith("3.")


def test_schema_is_served_as_yaml_by_default(api_server, schema):
    response = requests.get(f"{api_server}/api/schema/", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/vnd.oai.openapi;")
    assert yaml.safe_load(response.text) == schema


def test_schema_documents_the_readme_endpoints(schema):
    assert set(schema["paths"]) == {
        "/health",
        "/health/ready",
        "/api/v1/users/",
        "/api/v1/users/{id}",
        "/api/v1/shards/stats",
    }
    assert set(schema["paths"]["/api/v1/users/"]) == {"get", "post"}
    assert set(schema["paths"]["/api/v1/users/{id}"]) == {"get", "put", "patch", "delete"}


def test_every_error_response_has_the_error_shape(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")) and path.startswith("/api/"):
                    body = response["content"]["application/json"]["schema"]
                    assert body == {"$ref": "#/components/schemas/Error"}, (method, path, status)


def test_every_example_fits_its_schema(schema):
    checked = 0
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            bodies = [operation.get("requestBody", {}).get("content", {})]
            bodies += [response.get("content", {}) for response in operation["responses"].values()]
            for content in bodies:
                for media in content.values():
                    for value in _examples(media):
                        assert not _errors(value, media["schema"], schema), (method, path, value)
                        checked += 1
    assert checked >= 10


# `curl -X METHOD http://host/PATH \ ... -d 'BODY'` in the README's examples.
_README_CURL = re.compile(r"curl -X (POST|PUT) https?://[^/\s]+(/\S+)[^']*?-d '([^']*)'")


def test_schema_examples_are_the_readme_examples(schema):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    bodies = {
        (method.lower(), re.sub(r"/[0-9a-f-]{36}$", "/{id}", path)): json.loads(body)
        for method, path, body in _README_CURL.findall(readme)
    }
    assert bodies == {
        ("post", "/api/v1/users/"): _request_example(schema, "/api/v1/users/", "post"),
        ("put", "/api/v1/users/{id}"): _request_example(schema, "/api/v1/users/{id}", "put"),
    }
    created = schema["paths"]["/api/v1/users/"]["post"]["responses"]["201"]
    example_id = _examples(created["content"]["application/json"])[0]["id"]
    assert f"/api/v1/users/{example_id}" in readme


# --- The docs page -------------------------------------------------------------------------
class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


def test_docs_page_loads_its_assets_from_this_server(api_server):
    page = requests.get(f"{api_server}/api/docs/", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    urls = _asset_urls(page.text)
    assert len(urls) >= 3  # css, bundle, preset (and the favicon)
    for url in urls:
        assert url.startswith("/static/"), f"asset not served locally: {url}"
        asset = requests.get(f"{api_server}{url}", timeout=10)
        assert asset.status_code == 200, url
        assert len(asset.content) > 100, url
    schema_url = re.search(r'url: "([^"]+)"', page.text).group(1)
    assert schema_url == "/api/schema/"


def _asset_urls(html: str) -> list[str]:
    parser = _Assets()
    parser.feed(html)
    return parser.urls


PRODUCTION_PORT = int(os.environ.get("TEST_PRODUCTION_PORT", "18091"))


@pytest.fixture(scope="module")
def production_server(django_db_setup):
    """The API in production mode (no static finders, DEBUG off) after the deploy step
    `collectstatic`, so static files come from STATIC_ROOT through WhiteNoise."""
    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "DJANGO_ENV": "production",
        "SECRET_KEY": "test-only-production-key",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DEBUG": "false",
        "PORT": str(PRODUCTION_PORT),
        "WEB_CONCURRENCY": "1",
        "SHARD_DB_NAME": settings.SHARD_DB_NAME.removesuffix("_test") + "_test",
        "DATABASE_URL": "postgres://{USER}@{HOST}:{PORT}/{NAME}".format(
            **settings.DATABASES["default"]
        ),
        "LOG_LEVEL": "warning",
    }
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=root,
        env=env,
        check=True,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "messenger/gunicorn.conf.py"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    base = f"http://127.0.0.1:{PRODUCTION_PORT}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert process.poll() is None, "the production server exited"
            assert time.monotonic() < deadline, "the production server did not answer"
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)


@pytest.mark.slow
def test_production_mode_serves_collected_static_files(production_server):
    https = {"X-Forwarded-Proto": "https"}  # as the TLS-terminating proxy says
    for page_path in ("/api/docs/", "/admin/login/"):
        page = requests.get(f"{production_server}{page_path}", headers=https, timeout=10)
        assert page.status_code == 200, page_path
        urls = [url for url in _asset_urls(page.text) if url.startswith("/static/")]
        assert urls, page_path
        for url in urls:
            asset = requests.get(
                f"{production_server}{url}",
                headers={**https, "Accept-Encoding": "gzip"},
                timeout=10,
            )
            assert asset.status_code == 200, url
            # WhiteNoise serves the compressed copy collectstatic made, with caching headers.
            assert "Cache-Control" in asset.headers, url
            if url.endswith((".js", ".css")):
                assert asset.headers.get("Content-Encoding") == "gzip", url
    missing = requests.get(f"{production_server}/static/no-such-file.js", headers=https, timeout=10)
    assert missing.status_code == 404


# --- The running API answers as documented -------------------------------------------------
def test_every_documented_operation_answers_as_documented(api_server, shards_db, schema):
    seen: set[tuple[str, str]] = set()

    def call(method: str, path: str, user_id: str | None = None, **kwargs) -> requests.Response:
        url = api_server + path.replace("{id}", user_id or "")
        response = requests.request(method, url, timeout=10, **kwargs)
        assert_documented(schema, path, method, response)
        seen.add((path, method))
        return response

    call("get", "/health")
    call("get", "/health/ready")
    call("get", "/api/v1/shards/stats")

    created = call(
        "post", "/api/v1/users/", json=_request_example(schema, "/api/v1/users/", "post")
    )
    assert created.status_code == 201
    user_id = created.json()["id"]
    assert created.headers["Location"] == f"/api/v1/users/{user_id}"
    token = {"X-Consistency-Token": created.headers["X-Consistency-Token"]}

    page = call("get", "/api/v1/users/", headers=token, params={"limit": 5})
    assert [user["id"] for user in page.json()["results"]] == [user_id]
    found = call("get", "/api/v1/users/", headers=token, params={"email": "JOHN@example.com"})
    assert found.json()["results"][0]["id"] == user_id
    partial = call("get", "/api/v1/users/", headers=token, params={"partial": "true"})
    assert partial.json()["partial"] is False
    assert call("get", "/api/v1/users/{id}", user_id, headers=token).status_code == 200

    renamed = call(
        "put",
        "/api/v1/users/{id}",
        user_id,
        json=_request_example(schema, "/api/v1/users/{id}", "put"),
    )
    assert renamed.json()["name"] == "Jane Doe"
    patched = call("patch", "/api/v1/users/{id}", user_id, json={"email": "jane@example.com"})
    assert patched.json()["email"] == "jane@example.com"

    stats = call("get", "/api/v1/shards/stats")
    assert stats.json()["total_users"] == 1

    assert call("delete", "/api/v1/users/{id}", user_id).status_code == 204

    documented = {
        (path, method)
        for path, item in schema["paths"].items()
        for method in item
        if method in METHODS
    }
    assert seen == documented


def test_error_answers_are_documented(api_server, shards_db, schema):
    def call(method: str, path: str, user_id: str = "", **kwargs) -> requests.Response:
        response = requests.request(
            method, api_server + path.replace("{id}", user_id), timeout=10, **kwargs
        )
        assert_documented(schema, path, method, response)
        return response

    users, user = "/api/v1/users/", "/api/v1/users/{id}"
    body = {"name": "John Doe", "email": "john@example.com"}
    assert call("post", users, json=body).status_code == 201
    conflict = call("post", users, json={**body, "name": "Other"})
    assert (conflict.status_code, conflict.json()["code"]) == (409, "email_taken")
    invalid = call("post", users, json={"name": "", "email": "nope", "age": 3})
    assert invalid.status_code == 400
    assert set(invalid.json()["fields"]) == {"name", "email", "age"}
    malformed = call("post", users, data="{bad", headers={"Content-Type": "application/json"})
    assert (malformed.status_code, malformed.json()["code"]) == (400, "parse_error")
    assert call("post", users, data="x", headers={"Content-Type": "text/plain"}).status_code == 415
    huge = call("post", users, json={"name": "x" * 70_000, "email": "big@example.com"})
    assert huge.status_code == 413
    assert call("get", users, params={"limit": 1000}).status_code == 400
    assert call("get", users, params={"cursor": "not-a-cursor"}).status_code == 400

    missing = str(uuid.uuid4())
    assert call("get", user, missing).status_code == 404
    assert call("get", user, "not-a-uuid").status_code == 404
    assert call("put", user, missing, json={"name": "x"}).status_code == 404
    assert call("patch", user, missing, json={}).status_code == 400
    assert call("delete", user, missing).status_code == 404


def test_every_error_code_the_code_answers_with_is_in_the_one_registry():
    """Codes written in the code (error_response/error_body calls, ShardUnavailable
    subclasses) and those DRF's exceptions carry are all listed, with their meaning, in
    messenger.errors.ERROR_CODES, from which the schema documents them."""
    import re
    from pathlib import Path

    from rest_framework import exceptions

    from messenger.errors import ERROR_CODES

    root = Path(__file__).resolve().parent.parent
    pattern = re.compile(
        r"""(?:error_(?:response|body)\([^)]*?,\s*|code = )["']([a-z_]+)["']""", re.S
    )
    used = set()
    for folder in ("messenger", "users", "shards", "apikeys"):
        for path in (root / folder).rglob("*.py"):
            if path.name != "schema.py":  # examples of answers, not answers
                used.update(pattern.findall(path.read_text()))
    drf = {
        exc.default_code
        for exc in (exceptions.ParseError, exceptions.NotFound, exceptions.MethodNotAllowed,
                    exceptions.UnsupportedMediaType, exceptions.NotAuthenticated,
                    exceptions.AuthenticationFailed, exceptions.Throttled)
    }  # fmt: skip
    assert used and not (used | drf) - set(ERROR_CODES)
