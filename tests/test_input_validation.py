"""Every input is checked before anything is written: a 4xx means nothing changed, and no
input, however odd, reaches the database in a form it would refuse (never a 500)."""

import base64
import uuid

import pytest
from django.db import connections

from shards.consistency import TOKEN_HEADER, encode_token
from shards.topology import all_shards
from tests.conftest import wait_for_replicas
from tests.test_api import USERS, assert_error, create, post

pytestmark = pytest.mark.cluster


def _user_rows() -> list[tuple]:
    rows = []
    for shard in all_shards():
        with connections[shard.primary_alias].cursor() as cursor:
            cursor.execute("SELECT id, name, email FROM users")
            rows.extend(cursor.fetchall())
    return rows


def _claims() -> list[str]:
    emails = []
    for shard in all_shards():
        with connections[shard.primary_alias].cursor() as cursor:
            cursor.execute("SELECT email FROM email_lookup")
            emails.extend(row[0] for row in cursor.fetchall())
    return sorted(emails)


# --- the consistency token is checked before any write ------------------------------------
BAD_TOKEN = {"HTTP_X_CONSISTENCY_TOKEN": "0-ffffffff:forged"}


def test_a_create_with_an_invalid_token_is_400_and_writes_nothing(client, shards_db):
    response = post(client, {"name": "A", "email": "a@example.com"}, **BAD_TOKEN)
    assert TOKEN_HEADER in assert_error(response, 400, "validation_error")["fields"]
    assert _user_rows() == [] and _claims() == []


def test_an_update_with_an_invalid_token_is_400_and_changes_nothing(client, shards_db):
    user = create(client, name="Before", email="before@example.com").json()
    response = client.put(
        f"{USERS}{user['id']}",
        {"name": "After", "email": "after@example.com"},
        content_type="application/json",
        **BAD_TOKEN,
    )
    assert_error(response, 400, "validation_error")
    assert _user_rows() == [(uuid.UUID(user["id"]), "Before", "before@example.com")]
    assert _claims() == ["before@example.com"]


def test_a_delete_with_an_invalid_token_is_400_and_deletes_nothing(client, shards_db):
    user = create(client).json()
    assert_error(client.delete(f"{USERS}{user['id']}", **BAD_TOKEN), 400, "validation_error")
    assert len(_user_rows()) == 1


def test_a_token_naming_a_shard_that_does_not_exist_is_refused(client, shards_db):
    token = encode_token({0: 1, 99: 1})
    body = assert_error(client.get(USERS, HTTP_X_CONSISTENCY_TOKEN=token), 400, "validation_error")
    assert TOKEN_HEADER in body["fields"]
    user = create(client).json()
    response = client.get(f"{USERS}{user['id']}", HTTP_X_CONSISTENCY_TOKEN=token)
    assert_error(response, 400, "validation_error")
    response = post(client, {"name": "B", "email": "b@example.com"}, HTTP_X_CONSISTENCY_TOKEN=token)
    assert_error(response, 400, "validation_error")
    assert len(_user_rows()) == 1


# --- cursors -------------------------------------------------------------------------------
def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "raw",
    [
        f"2026-01-01T00:00:00+16:00|{uuid.uuid4()}",
        f"2026-01-01T00:00:00-23:59|{uuid.uuid4()}",
        f"0001-01-01T00:00:00+01:00|{uuid.uuid4()}",
        f"9999-12-31T23:59:59-01:00|{uuid.uuid4()}",
        "2026-01-01T00:00:00+00:00|not-a-uuid",
        "2026-01-01T00:00:00+00:00",
    ],
)
def test_a_cursor_that_decodes_but_cannot_be_used_is_400(client, shards_db, raw):
    body = assert_error(client.get(f"{USERS}?cursor={_cursor(raw)}"), 400, "validation_error")
    assert "cursor" in body["fields"]


def test_a_cursor_written_by_the_api_is_accepted_after_a_round_trip(client, shards_db):
    created = [create(client).json() for _ in range(3)]
    wait_for_replicas()
    first = client.get(f"{USERS}?limit=1").json()
    second = client.get(first["next"]).json()
    assert [u["id"] for u in second["results"]] == [created[1]["id"]]


# --- media types and charsets ----------------------------------------------------------------
@pytest.mark.parametrize("charset", ["rot13", "base64", "zlib", "no-such-charset", "utf-16"])
def test_a_body_in_an_unknown_or_non_text_charset_is_415(client, shards_db, charset):
    response = client.generic(
        "POST",
        USERS,
        b'{"name": "A", "email": "a@example.com"}',
        content_type=f"application/json; charset={charset}",
    )
    assert_error(response, 415, "unsupported_media_type")
    assert _user_rows() == []


@pytest.mark.parametrize(
    "content_type",
    ["APPLICATION/JSON", "Application/Json; Charset=UTF-8", "application/json;charset=utf-8"],
)
def test_the_json_media_type_and_its_charset_are_case_insensitive(client, shards_db, content_type):
    response = client.post(
        USERS, '{"name": "A", "email": "a@example.com"}', content_type=content_type
    )
    assert response.status_code == 201, response.content


def test_a_chunked_body_is_411(client, shards_db):
    response = client.post(
        USERS, b"", content_type="application/json", HTTP_TRANSFER_ENCODING="chunked"
    )
    assert_error(response, 411, "length_required")


# --- emails: the canonical form is what is validated and what is unique -------------------
DOTTED_I = "\u0130"  # İ: lower-cases to two characters


@pytest.mark.parametrize(
    "email",
    [
        "a@" + ".".join([DOTTED_I * 60] * 4) + ".com",  # 249 characters, 489 lower-cased
        DOTTED_I * 40 + "@example.com",  # local part of 40, 80 lower-cased
        "b" * 60 + "@" + ("x" * 60 + ".") * 2 + DOTTED_I * 60 + ".com",
    ],
)
def test_an_email_whose_canonical_form_is_too_long_is_400_on_create_and_update(
    client, shards_db, email
):
    assert len(email) <= 254
    assert_error(post(client, {"name": "A", "email": email}), 400, "validation_error")
    user = create(client).json()
    response = client.put(f"{USERS}{user['id']}", {"email": email}, content_type="application/json")
    assert_error(response, 400, "validation_error")
    assert len(_user_rows()) == 1 and len(_claims()) == 1


def test_a_local_part_over_64_characters_is_400(client, shards_db):
    body = assert_error(
        post(client, {"name": "A", "email": "x" * 65 + "@example.com"}), 400, "validation_error"
    )
    assert "email" in body["fields"]
    assert post(client, {"name": "A", "email": "x" * 64 + "@example.com"}).status_code == 201


def test_an_internationalised_domain_and_its_punycode_are_one_mailbox(client, shards_db):
    create(client, email="Anna@bücher.example")
    response = post(client, {"name": "B", "email": "anna@xn--bcher-kva.example"})
    assert_error(response, 409, "email_taken")
    response = post(client, {"name": "C", "email": "ANNA@BÜCHER.example"})
    assert_error(response, 409, "email_taken")
    found = client.get(f"{USERS}?email=anna@xn--bcher-kva.example").json()["results"]
    assert [u["email"] for u in found] == ["Anna@bücher.example"]


# --- names, numbers, ids ---------------------------------------------------------------------
@pytest.mark.parametrize("name", [123, 1.5, True, "A\x01B", "tab\there", "line\nbreak", "del\x7f"])
def test_a_name_that_is_not_plain_text_is_400(client, shards_db, name):
    body = assert_error(
        post(client, {"name": name, "email": "a@example.com"}), 400, "validation_error"
    )
    assert set(body["fields"]) == {"name"}


@pytest.mark.parametrize(
    "query",
    [
        "limit=5.0",
        "limit=+5",
        "limit=%205",
        "limit=1e1",
        "limit=\u0665",
        "offset=0x1",
        "offset=1_0",
        "limit=" + "9" * 5000,
    ],
)
def test_limit_and_offset_accept_plain_decimal_integers_only(client, shards_db, query):
    assert_error(client.get(f"{USERS}?{query}"), 400, "validation_error")


@pytest.mark.parametrize(
    "alias",
    [
        "{%s}",
        "urn:uuid:%s",
        "HEX",
    ],
)
def test_only_the_hyphenated_form_of_an_id_names_a_user(client, shards_db, alias):
    user = create(client).json()
    raw = user["id"].replace("-", "") if alias == "HEX" else alias % user["id"]
    assert_error(client.get(f"{USERS}{raw}"), 404, "not_found")
    assert client.head(f"{USERS}{raw}").status_code == 404
    assert_error(
        client.put(f"{USERS}{raw}", {"name": "x"}, content_type="application/json"),
        404,
        "not_found",
    )
    assert_error(client.delete(f"{USERS}{raw}"), 404, "not_found")
    assert client.get(f"{USERS}{user['id'].upper()}").status_code == 200
    assert len(_user_rows()) == 1


# --- hosts and methods ------------------------------------------------------------------------
def test_an_invalid_host_header_on_a_list_page_is_400(client, shards_db):
    for _ in range(3):
        create(client)
    response = client.get(f"{USERS}?limit=1", HTTP_HOST="bad host!!")
    assert_error(response, 400, "bad_request")


@pytest.mark.parametrize("path", ["/health", "/health/ready", "/api/docs/", "/api/schema/"])
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "options"])
def test_health_schema_and_docs_answer_other_methods_with_a_json_405(
    client, shards_db, path, method
):
    response = getattr(client, method)(path)
    assert_error(response, 405, "method_not_allowed")
    assert set(response["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}


@pytest.mark.parametrize("path", ["/health", "/health/ready", "/api/docs/", "/api/schema/"])
def test_health_schema_and_docs_answer_get_and_head(client, shards_db, path):
    assert client.get(path).status_code == 200
    assert client.head(path).status_code == 200


def test_a_chunked_body_sent_to_the_server_is_411_not_a_missing_field(api_server, shards_db):
    import requests

    body = iter([b'{"name": "A", ', b'"email": "chunk@example.com"}'])
    response = requests.post(
        f"{api_server}{USERS}", data=body, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert response.status_code == 411, response.text
    assert response.json()["code"] == "length_required"
    assert _user_rows() == []
