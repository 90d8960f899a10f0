"""The admin and the API docs in a real browser (Debian's headless Chromium driven by
Playwright), against the gunicorn test server; plus the admin's rules over plain HTTP.

Needs `chromium` and the `playwright` package: scripts/install-browser.sh installs both.
Playwright only drives the system browser here; it never downloads one."""

import re
import shutil
import tempfile
import time
from collections.abc import Iterator

import pytest
import requests
from django.contrib.auth import get_user_model
from django.db import connections

from shards.topology import all_shards, shard_for_user_id

pytestmark = pytest.mark.cluster

ADMIN_USERNAME = "admin-test"
ADMIN_PASSWORD = "correct horse battery staple"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Chromium as root needs --no-sandbox; the rest keeps it from reaching the network on its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def superuser(django_db_setup, django_db_blocker) -> Iterator[tuple[str, str]]:
    """A Django superuser in the control test database, which the test server uses."""
    auth_user = get_user_model()
    with django_db_blocker.unblock():
        auth_user.objects.filter(username=ADMIN_USERNAME).delete()
        auth_user.objects.create_superuser(ADMIN_USERNAME, "admin@example.com", ADMIN_PASSWORD)
        connections["default"].close()
    yield ADMIN_USERNAME, ADMIN_PASSWORD
    with django_db_blocker.unblock():
        auth_user.objects.filter(username=ADMIN_USERNAME).delete()
        connections["default"].close()


@pytest.fixture
def page(api_server):
    """A page of a fresh headless Chromium profile; fails, naming what is missing, when the
    browser cannot be had."""
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: run scripts/install-browser.sh")
    if not shutil.which(CHROMIUM):
        pytest.fail(
            f"{CHROMIUM} is missing: run scripts/install-browser.sh (apt-get install chromium)"
        )
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        # Generous waits: the suite shares two cores with the whole cluster.
        context.set_default_timeout(20_000)
        expect.set_options(timeout=20_000)
        try:
            yield context.new_page()
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


def _create_user(api_server: str, name: str, email: str) -> dict:
    response = requests.post(
        f"{api_server}/api/v1/users/", json={"name": name, "email": email}, timeout=10
    )
    assert response.status_code == 201, response.text
    return response.json()


def _api_read(api_server: str, user_id: str, expected, timeout: float = 5.0):
    """`expected(response)` as the API answers a client that did not make the write: that
    client may read a replica still catching up, so retry for up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        response = requests.get(f"{api_server}/api/v1/users/{user_id}", timeout=10)
        if expected(response) or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


# --- In the browser ------------------------------------------------------------------------
def test_admin_finds_an_api_user_by_email_and_renames_it(api_server, shards_db, superuser, page):
    from playwright.sync_api import expect

    user = _create_user(api_server, "Ada Lovelace", "Ada.Lovelace@example.com")
    home = shard_for_user_id(user["id"])
    other = next(shard for shard in all_shards() if shard.id != home.id)

    # Logging in.
    page.goto(f"{api_server}/admin/")
    expect(page).to_have_url(f"{api_server}/admin/login/?next=/admin/")
    page.fill("#id_username", superuser[0])
    page.fill("#id_password", superuser[1])
    page.click("input[type=submit]")
    expect(page).to_have_url(f"{api_server}/admin/")

    # The shard overview: every shard, both servers up, the user counted on its shard.
    page.get_by_role("link", name="Shard overview").click()
    rows = page.locator("#shard-overview tbody tr[data-shard]")
    expect(rows).to_have_count(len(all_shards()))
    for shard in all_shards():
        row = page.locator(f"#shard-overview tr[data-shard='{shard.id}']")
        expect(row.locator(".primary-status")).to_have_text("up")
        expect(row.locator(".replica-status")).to_have_text("up")
        expect(row.locator(".replica-lag")).to_contain_text(" s")
        expect(row.locator(".user-count")).to_have_text("1" if shard.id == home.id else "0")
        expect(row.locator(".users-size")).not_to_have_text("unavailable")
    expect(page.locator("#total-users")).to_have_text("1")

    # Switching shards: the user is listed on its own shard only.
    page.get_by_role("link", name=home.name, exact=True).click()
    expect(page.locator("#result_list")).to_contain_text(user["email"])
    page.locator("#shard-picker").get_by_role("link", name=other.name, exact=True).click()
    expect(page.locator("#no-results")).to_have_text(f"No users on {other.name}.")
    page.locator("#shard-picker").get_by_role("link", name=home.name, exact=True).click()
    expect(page.locator("#result_list")).to_contain_text(user["id"])

    # Searching by email (any case) goes through the email lookup and names the shard.
    page.fill("#searchbar", "ada.LOVELACE@example.com")
    page.get_by_role("button", name="Search").click()
    result = page.locator("#result_list tbody tr")
    expect(result).to_have_count(1)
    expect(result.locator(".shard-name")).to_have_text(home.name)

    # Opening the user shows its shard; renaming it goes through the service.
    result.get_by_role("link", name="Ada Lovelace").click()
    expect(page.locator("#user-shard")).to_contain_text(home.name)
    expect(page.locator("#user-id")).to_have_text(user["id"])
    page.fill("#id_name", "Ada King")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was changed")
    expect(page.locator("#result_list")).to_contain_text("Ada King")

    seen = _api_read(api_server, user["id"], lambda r: r.json()["name"] == "Ada King")
    assert seen.json()["name"] == "Ada King"


def test_docs_page_runs_get_health_from_the_browser(api_server, page):
    from playwright.sync_api import expect

    outside: list[str] = []

    def local_only(route) -> None:
        # No CDN: every request the page makes must go to this server.
        if route.request.url.startswith(api_server):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", local_only)
    page.goto(f"{api_server}/api/docs/")
    operation = page.locator("#operations-health-health")
    operation.locator(".opblock-summary-control").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    answer = operation.locator(".live-responses-table tbody .response")
    expect(answer.locator(".response-col_status")).to_have_text("200")
    expect(answer.locator(".response-col_description")).to_contain_text('"status": "ok"')
    assert outside == []


# --- Over plain HTTP -----------------------------------------------------------------------
def _admin_session(api_server: str, superuser: tuple[str, str]) -> requests.Session:
    session = requests.Session()
    login = f"{api_server}/admin/login/"
    session.get(login, timeout=10)
    response = session.post(
        login,
        data={
            "username": superuser[0],
            "password": superuser[1],
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
            "next": "/admin/",
        },
        timeout=10,
    )
    assert response.url == f"{api_server}/admin/", "login failed"
    return session


def _messages(html: str) -> str:
    """The text of the admin's message list (or of its error note) on a page."""
    found = re.findall(r'<ul class="messagelist">(.*?)</ul>|class="errornote">(.*?)<', html, re.S)
    return " ".join(part.strip() for match in found for part in match if part)


def _post_form(session: requests.Session, url: str, data: dict) -> requests.Response:
    return session.post(
        url, data={**data, "csrfmiddlewaretoken": session.cookies["csrftoken"]}, timeout=10
    )


def test_admin_pages_need_a_staff_login(api_server):
    for path in ("/admin/", "/admin/shards/", "/admin/users/user/"):
        response = requests.get(f"{api_server}{path}", allow_redirects=False, timeout=10)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/admin/login/")


def test_admin_search_by_id_routes_to_the_users_shard(api_server, shards_db, superuser):
    session = _admin_session(api_server, superuser)
    user = _create_user(api_server, "Grace Hopper", "grace@example.com")
    home = shard_for_user_id(user["id"])
    page = session.get(
        f"{api_server}/admin/users/user/", params={"q": user["id"].upper()}, timeout=10
    )
    assert page.status_code == 200
    assert "Grace Hopper" in page.text
    assert f'<td class="shard-name"><a href="?shard={home.id}">{home.name}</a></td>' in page.text
    unknown = session.get(
        f"{api_server}/admin/users/user/", params={"q": "nobody@example.com"}, timeout=10
    )
    assert "No user has this email or id." in unknown.text


def test_admin_edit_keeps_emails_unique_across_shards(api_server, shards_db, superuser):
    session = _admin_session(api_server, superuser)
    _create_user(api_server, "First", "first@example.com")
    second = _create_user(api_server, "Second", "second@example.com")
    change_url = f"{api_server}/admin/users/user/{second['id']}/change/"

    taken = _post_form(session, change_url, {"name": "Second", "email": "FIRST@example.com"})
    assert taken.status_code == 200
    assert "A user with this email already exists." in taken.text
    unchanged = requests.get(f"{api_server}/api/v1/users/{second['id']}", timeout=10)
    assert unchanged.json()["email"] == "second@example.com"

    moved = _post_form(session, change_url, {"name": "Second", "email": "new@example.com"})
    assert moved.url.startswith(f"{api_server}/admin/users/user/?shard=")
    # The old email is free again and the new one is held, as after an API update.
    assert _create_user(api_server, "Third", "second@example.com")["email"] == "second@example.com"
    clash = requests.post(
        f"{api_server}/api/v1/users/",
        json={"name": "Fourth", "email": "new@example.com"},
        timeout=10,
    )
    assert clash.status_code == 409
    renamed = _api_read(api_server, second["id"], lambda r: r.json()["email"] != second["email"])
    assert renamed.json()["email"] == "new@example.com"


def test_admin_delete_removes_the_user_and_frees_its_email(api_server, shards_db, superuser):
    session = _admin_session(api_server, superuser)
    user = _create_user(api_server, "Temp", "temp@example.com")
    delete_url = f"{api_server}/admin/users/user/{user['id']}/delete/"
    assert "Delete the user" in session.get(delete_url, timeout=10).text

    done = _post_form(session, delete_url, {})
    assert done.status_code == 200
    assert "was deleted from" in _messages(done.text)
    assert _api_read(api_server, user["id"], lambda r: r.status_code == 404).status_code == 404
    assert _create_user(api_server, "Temp again", "temp@example.com")["name"] == "Temp again"


# --- In process ----------------------------------------------------------------------------
def test_admin_shard_pages_walk_every_user_of_the_shard_newest_first(shards_db):
    from shards.consistency import merge
    from users import services
    from users.admin import shard_page

    created, positions = [], {}
    for i in range(12):
        user, written = services.create_user(name=f"User {i}", email=f"user{i}@example.com")
        created.append(user)
        positions = merge(positions, written)
    shard = shard_for_user_id(created[0].id)
    expected = sorted(
        (user for user in created if shard_for_user_id(user.id) == shard),
        key=lambda user: (user.created_at, user.id),
        reverse=True,
    )

    seen, after = [], None
    while True:
        rows, after = shard_page(shard, after=after, limit=2, positions=positions)
        seen += rows
        if after is None:
            break
    assert [row.id for row in seen] == [user.id for user in expected]
