"""The README's examples, run as written against a real server.

The curl commands of README.md's "Examples" block and its consistency-token script run with
bash and curl against the test API server (gunicorn on the test databases): the address
`http://localhost:8080` becomes the server's, and the example id becomes the id of the user
the create example made. Each must answer as the README says."""

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import requests
from django.conf import settings

from tests.conftest import wait_for_replicas

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_URL = "http://localhost:8080"
EXAMPLE_ID = "123e4567-e89b-12d3-a456-426614174000"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n{title}\n")
    end = re.compile(r"\n#{2,3} ").search(text, start + len(title) + 2)
    return text[start : end.start() if end else len(text)]


def _bash_blocks(section: str) -> list[str]:
    return re.findall(r"(?ms)^```bash\n(.*?)^```", section)


def curl_examples() -> list[tuple[str, str]]:
    """(comment, command) for every curl command of the Examples block, in order."""
    (block,) = _bash_blocks(_section("### Examples"))
    examples, title = [], None
    for line in block.replace("\\\n", " ").splitlines():
        line = line.strip()
        if line.startswith("#"):
            title = line.lstrip("# ").strip()
        elif line.startswith("curl "):
            examples.append((title, " ".join(line.split())))
    return examples


def token_script() -> str:
    (block,) = _bash_blocks(_section("### Read-your-writes: the consistency token"))
    return block


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: str) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)


def run_curl(command: str, base_url: str, user_id: str | None, tmp_path: Path) -> Answer:
    command = command.replace(README_URL, base_url)
    if user_id:
        command = command.replace(EXAMPLE_ID, user_id)
    body, headers = tmp_path / "body", tmp_path / "headers"
    extra = f" -sS -o {shlex.quote(str(body))} -D {shlex.quote(str(headers))} -w '%{{http_code}}'"
    result = subprocess.run(
        ["bash", "-c", command + extra], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, f"{command}\n{result.stderr}"
    parsed = {}
    for line in headers.read_text().splitlines()[1:]:
        name, _, value = line.partition(":")
        if value:
            parsed[name.strip().lower()] = value.strip()
    return Answer(int(result.stdout), parsed, body.read_text())


def test_the_readme_has_the_examples_this_test_runs():
    titles = [title for title, _ in curl_examples()]
    assert titles == [
        "Create a user",
        "List users",
        "Get user by ID",
        "Update user (only the name changes)",
        "Delete user",
        "Find a user by email",
        "Check shard statistics",
    ]


def test_every_curl_example_answers_as_documented(api_server, shards_db, tmp_path):
    user: dict = {}
    answers = {}
    for title, command in curl_examples():
        if title != "Create a user":
            wait_for_replicas()  # the examples send no consistency token
        answer = run_curl(command, api_server, user.get("id"), tmp_path)
        answers[title] = answer
        if title == "Create a user":
            assert answer.status == 201, answer.body
            user = answer.json()
            assert (user["name"], user["email"]) == ("John Doe", "john@example.com")
            assert answer.headers["location"] == f"/api/v1/users/{user['id']}"
            assert answer.headers["x-consistency-token"]
        elif title == "List users":
            assert answer.status == 200, answer.body
            assert user in answer.json()["results"]
        elif title == "Get user by ID":
            assert answer.status == 200, answer.body
            assert answer.json() == user
        elif title == "Update user (only the name changes)":
            assert answer.status == 200, answer.body
            updated = answer.json()
            assert updated["name"] == "Jane Doe" and updated["email"] == user["email"]
            assert updated["created_at"] == user["created_at"]
            assert updated["updated_at"] > user["updated_at"]
        elif title == "Delete user":
            assert (answer.status, answer.body) == (204, "")
        elif title == "Find a user by email":
            # The user was deleted just before: the lookup finds no one.
            assert answer.status == 200, answer.body
            assert answer.json() == {"results": [], "next": None}
        elif title == "Check shard statistics":
            assert answer.status == 200, answer.body
            stats = answer.json()
            assert stats["complete"] is True
            assert stats["total_users"] == sum(s["user_count"] for s in stats["shards"])
            assert stats["shard_count"] == settings.SHARDING_COUNT
            assert [s["shard_name"] for s in stats["shards"]] == [
                f"shard-{i}" for i in range(settings.SHARDING_COUNT)
            ]
        else:
            pytest.fail(f"no expectation for the README example {title!r}")
    assert len(answers) == len(curl_examples())


def test_the_find_by_email_example_finds_the_user_it_names(api_server, shards_db, tmp_path):
    examples = dict(curl_examples())
    created = run_curl(examples["Create a user"], api_server, None, tmp_path).json()
    wait_for_replicas()
    found = run_curl(examples["Find a user by email"], api_server, None, tmp_path)
    assert found.status == 200
    assert found.json() == {"results": [created], "next": None}


def test_the_consistency_token_script_reads_its_own_write(api_server, shards_db):
    script = token_script().replace(README_URL, api_server)
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert "ann@example.com" in [u["email"] for u in listed["results"]]


def test_the_list_shape_and_next_link_are_as_documented(api_server, shards_db):
    section = _section("### Lists")
    assert '"next": "http://localhost:8080/api/v1/users/?cursor=' in section
    for n in range(3):
        requests.post(
            f"{api_server}/api/v1/users/", json={"name": f"L{n}", "email": f"l{n}@example.com"}
        ).raise_for_status()
    wait_for_replicas()
    page = requests.get(f"{api_server}/api/v1/users/?limit=2").json()
    assert set(page) == {"results", "next"} and len(page["results"]) == 2
    assert set(page["results"][0]) == {"id", "name", "email", "created_at", "updated_at"}
    assert re.fullmatch(rf"{api_server}/api/v1/users/\?cursor=[\w-]+&limit=2", page["next"])
    walked, url = [], f"{api_server}/api/v1/users/?limit=2"
    while url:  # following `next` to the end reaches a page whose `next` is null
        body = requests.get(url).json()
        walked += [u["email"] for u in body["results"]]
        url = body["next"]
    assert {"l0@example.com", "l1@example.com", "l2@example.com"} <= set(walked)


def test_the_health_answer_is_the_documented_one(api_server):
    documented = re.search(r"`(\{\"status\": \"ok\", \"shards\": 5[^`]*\})`", README.read_text())
    expected = json.loads(documented.group(1))
    expected["shards"] = settings.SHARDING_COUNT
    assert requests.get(f"{api_server}/health").json() == expected


@pytest.mark.parametrize("target", ["health", "shards"])
def test_the_quick_start_make_targets_answer(api_server, shards_db, target):
    assert f"make {target}" in _section("## Quick start")
    port = api_server.rsplit(":", 1)[1]
    result = subprocess.run(
        ["make", "--no-print-directory", target, f"PORT={port}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    if target == "health":
        live, ready = (json.loads(line) for line in result.stdout.splitlines()[:2])
        assert live["status"] == "ok" and ready["status"] == "ok"
    else:
        assert json.loads(result.stdout)["shard_count"] == settings.SHARDING_COUNT
