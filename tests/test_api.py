"""The users API over HTTP semantics (Django's test client), on the real shards."""

import re
import uuid
from datetime import UTC, datetime

import pytest

from shards.consistency import TOKEN_HEADER
from tests.conftest import wait_for_replicas

pytestmark = pytest.mark.cluster

USERS = "/api/v1/users/"


def post(client, body, **extra):
    return client.post(USERS, body, content_type="application/json", **extra)


def create(client, name="John Doe", email=None):
    email = email or f"{uuid.uuid4().hex[:12]}@example.com"
    response = post(client, {"name": name, "email": email})
    assert response.status_code == 201, response.content
    return response


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code
    assert isinstance(body["error"], str) and body["error"]
    return body


# --- create -----------------------------------------------------------------------------
def test_create_answers_201_with_the_user_its_location_and_a_token(client, shards_db):
    response = post(client, {"name": "  John Doe ", "email": "john@example.com"})
    assert response.status_code == 201
    user = response.json()
    assert set(user) == {"id", "name", "email", "created_at", "updated_at"}
    assert user["name"] == "John Doe"
    assert uuid.UUID(user["id"]).version == 4
    assert response["Location"] == f"/api/v1/users/{user['id']}"
    assert response[TOKEN_HEADER]
    assert user["created_at"].endswith("Z") and len(user["created_at"]) == 27


def test_times_are_utc_with_six_digits_of_microseconds_even_when_they_are_zero(client, shards_db):
    from users.models import User

    user_id = uuid.UUID(create(client).json()["id"])
    whole_second = datetime(2100, 1, 2, 3, 4, 5, tzinfo=UTC)
    User.objects.for_key(user_id).filter(id=user_id).update(created_at=whole_second)
    wait_for_replicas()
    shown = client.get(f"{USERS}{user_id}").json()
    assert shown["created_at"] == "2100-01-02T03:04:05.000000Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", shown["updated_at"])
    (listed,) = client.get(USERS, {"limit": 1}).json()["results"]
    assert listed == shown


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"email": "a@example.com"}, {"name"}),
        ({"name": "   ", "email": "a@example.com"}, {"name"}),
        ({"name": "x" * 256, "email": "a@example.com"}, {"name"}),
        ({"name": "A", "email": "not-an-email"}, {"email"}),
        ({"name": "A", "email": ("x" * 250) + "@example.com"}, {"email"}),
        ({"name": "A", "email": "a@example.com", "id": "1"}, {"id"}),
        ({"name": "A", "email": "a@example.com", "role": "admin"}, {"role"}),
        ({"name": "", "email": "bad", "created_at": "x"}, {"name", "email", "created_at"}),
        ({"name": "A\x00B", "email": "a@example.com"}, {"name"}),
    ],
)
def test_invalid_bodies_are_refused_field_by_field(client, shards_db, body, fields):
    body = assert_error(post(client, body), 400, "validation_error")
    assert set(body["fields"]) == fields


def test_a_body_that_is_not_an_object_is_refused(client, shards_db):
    assert_error(post(client, ["name"]), 400, "validation_error")


def test_malformed_json_is_400(client, shards_db):
    assert_error(post(client, "{oops"), 400, "parse_error")


def test_a_body_that_is_not_json_is_415(client, shards_db):
    response = client.post(USERS, "name=x", content_type="application/x-www-form-urlencoded")
    assert_error(response, 415, "unsupported_media_type")


def test_a_body_over_the_limit_is_413(client, shards_db, settings):
    big = {"name": "A", "email": "a@example.com", "pad": "x" * (70 * 1024)}
    assert_error(post(client, big), 413, "request_too_large")


def test_a_duplicate_email_in_any_case_is_409(client, shards_db):
    create(client, email="dup@example.com")
    body = assert_error(post(client, {"name": "B", "email": "DUP@Example.com"}), 409, "email_taken")
    assert "email" in body["fields"]


# --- read --------------------------------------------------------------------------------
def test_get_returns_the_user_by_lower_or_upper_case_id(client, shards_db):
    user = create(client).json()
    assert client.get(f"{USERS}{user['id']}").json() == user
    assert client.get(f"/api/v1/users/{user['id'].upper()}").json() == user


@pytest.mark.parametrize("bad_id", ["123", "not-a-uuid", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"])
def test_a_malformed_id_is_404_never_500(client, shards_db, bad_id):
    assert_error(client.get(f"/api/v1/users/{bad_id}"), 404, "not_found")
    assert_error(client.delete(f"/api/v1/users/{bad_id}"), 404, "not_found")
    response = client.put(f"/api/v1/users/{bad_id}", {"name": "x"}, content_type="application/json")
    assert_error(response, 404, "not_found")


def test_an_unknown_id_is_404(client, shards_db):
    assert_error(client.get(f"/api/v1/users/{uuid.uuid4()}"), 404, "not_found")


def test_unknown_routes_and_methods_answer_json(client, shards_db):
    assert_error(client.get("/no/such/route"), 404, "not_found")
    assert_error(
        client.patch(USERS, {}, content_type="application/json"), 405, "method_not_allowed"
    )


def test_a_tampered_consistency_token_is_refused(client, shards_db):
    response = client.get(USERS, HTTP_X_CONSISTENCY_TOKEN="0-ffffffff:forged")
    body = assert_error(response, 400, "validation_error")
    assert TOKEN_HEADER in body["fields"]


# --- update / delete ---------------------------------------------------------------------
def test_put_with_only_a_name_changes_only_the_name(client, shards_db):
    user = create(client, email="jd@example.com").json()
    response = client.put(
        f"/api/v1/users/{user['id']}", {"name": "Jane Doe"}, content_type="application/json"
    )
    assert response.status_code == 200
    updated = response.json()
    assert updated["name"] == "Jane Doe" and updated["email"] == "jd@example.com"
    assert updated["updated_at"] > user["updated_at"]
    token = response[TOKEN_HEADER]
    again = client.get(f"/api/v1/users/{user['id']}", HTTP_X_CONSISTENCY_TOKEN=token).json()
    assert again == updated


def test_patch_behaves_like_put(client, shards_db):
    user = create(client).json()
    response = client.patch(
        f"/api/v1/users/{user['id']}", {"email": "new@example.com"}, content_type="application/json"
    )
    assert response.status_code == 200 and response.json()["email"] == "new@example.com"


def test_an_empty_update_is_400(client, shards_db):
    user = create(client).json()
    response = client.put(f"/api/v1/users/{user['id']}", {}, content_type="application/json")
    assert_error(response, 400, "validation_error")


def test_update_of_a_missing_user_is_404(client, shards_db):
    response = client.put(
        f"/api/v1/users/{uuid.uuid4()}", {"name": "x"}, content_type="application/json"
    )
    assert_error(response, 404, "not_found")


def test_delete_answers_204_then_404(client, shards_db):
    user = create(client).json()
    response = client.delete(f"/api/v1/users/{user['id']}")
    assert response.status_code == 204 and response[TOKEN_HEADER]
    token = response[TOKEN_HEADER]
    assert_error(
        client.get(f"/api/v1/users/{user['id']}", HTTP_X_CONSISTENCY_TOKEN=token), 404, "not_found"
    )
    assert_error(client.delete(f"/api/v1/users/{user['id']}"), 404, "not_found")


# --- list ----------------------------------------------------------------------------------
def _walk(client, limit):
    seen, url, pages = [], f"{USERS}?limit={limit}", 0
    while url:
        body = client.get(url).json()
        seen.extend(body["results"])
        url = body["next"]
        pages += 1
    return seen, pages


def test_list_walks_every_user_newest_first_without_duplicates(client, shards_db):
    created = [create(client, name=f"User {n}").json() for n in range(23)]
    wait_for_replicas()
    seen, pages = _walk(client, 5)
    assert pages == 5
    assert [u["id"] for u in seen] == [u["id"] for u in reversed(created)]
    keys = [(u["created_at"], u["id"]) for u in seen]
    assert keys == sorted(keys, reverse=True)


def test_offset_pages_match_the_cursor_order(client, shards_db):
    created = [create(client).json() for _ in range(12)]
    wait_for_replicas()
    body = client.get(f"{USERS}?limit=5&offset=5").json()
    assert [u["id"] for u in body["results"]] == [u["id"] for u in reversed(created)][5:10]
    assert body["next"]


def test_list_limits_and_offsets_are_bounded(client, shards_db):
    assert_error(client.get(f"{USERS}?limit=0"), 400, "validation_error")
    assert_error(client.get(f"{USERS}?limit=101"), 400, "validation_error")
    assert_error(client.get(f"{USERS}?limit=abc"), 400, "validation_error")
    body = assert_error(client.get(f"{USERS}?offset=5000"), 400, "validation_error")
    assert "cursor" in body["fields"]["offset"][0]
    assert_error(client.get(f"{USERS}?cursor=garbage!"), 400, "validation_error")


def test_list_by_email_finds_one_user_case_insensitively(client, shards_db):
    user = create(client, email="Find.Me@example.com").json()
    token = client.get(USERS).get(TOKEN_HEADER)
    assert token is None
    wait_for_replicas()
    body = client.get(f"{USERS}?email=find.me@EXAMPLE.com").json()
    assert body["results"] == [user]
    assert client.get(f"{USERS}?email=nobody@example.com").json()["results"] == []


# --- health and stats --------------------------------------------------------------------
def test_health_answers_without_databases(client):
    assert client.get("/health").json() == {"status": "ok", "shards": 5, "mode": "sharded"}


def test_health_ready_checks_every_primary_and_replica(client, shards_db):
    response = client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and len(body["shards"]) == 5
    assert all(s["primary_ok"] and s["replica_ok"] for s in body["shards"])


def test_stats_count_users_per_shard_in_shard_order(client, shards_db):
    for _ in range(15):
        create(client)
    wait_for_replicas()
    body = client.get("/api/v1/shards/stats").json()
    assert body["shard_count"] == 5 and body["total_users"] == 15
    assert [s["shard_id"] for s in body["shards"]] == [0, 1, 2, 3, 4]
    assert [s["shard_name"] for s in body["shards"]] == [f"shard-{i}" for i in range(5)]
    assert sum(s["user_count"] for s in body["shards"]) == 15
    assert all(s["healthy"] for s in body["shards"])
