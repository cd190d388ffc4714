"""The web view's doors, over HTTP against a live ``automl server`` (no browser): logging in and out,
pages without a token, cross-site requests, and who sees which study in the dashboard.

The browser's own view of the same (a job watched live, cancelled, another's refused) is
:mod:`test_web_view`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import optuna
import pytest
from server_fixture import LiveServer, start_server  # tests/server/, on sys.path by its conftest

EVIL = "http://evil.example"


@dataclass
class Site:
    """A live server with one queued job of alice's and one of bob's, each with its Optuna study."""

    server: LiveServer
    jobs: dict[str, dict[str, Any]]  # user -> the job (wire form)
    study_ids: dict[str, int]  # user -> the dashboard's id of their job's study

    @property
    def url(self) -> str:
        return self.server.url

    def browser(self, user: str | None = None) -> httpx.Client:
        """A client that carries the login cookie as a browser does (``None``: logged out)."""
        client = httpx.Client(base_url=self.url, timeout=30, follow_redirects=False)
        if user is not None:
            client.cookies.set("automl_token", self.server.tokens[user])
        return client

    def bearer(self, user: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {self.server.tokens[user]}"})

    def submit(self, user: str, name: str) -> dict[str, Any]:
        with self.bearer(user) as client:
            answer = client.post("/api/v1/jobs", json={"plan_json": plan(name)})
        assert answer.status_code == 201, answer.text
        return dict(answer.json())


def plan(name: str) -> str:
    spec = {
        "name": name,
        "objective": "nowhere:objective",  # never runs: no runner here
        "space": {"x": {"type": "float", "low": 0, "high": 1}},
        "metric": "loss",
        "mode": "min",
        "budget": {"trials": 3},
    }
    return json.dumps({"spec": spec})


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("web-pages")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AUTOML_DB_URL", "AUTOML_STORAGE_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS", "AUTOML_TRIAL_STORAGE"):
            mp.delenv(name, raising=False)
        mp.setenv("AUTOML_HOME", str(root / "home"))
        mp.setenv("AUTOML_DATA_CACHE", str(root / "data-cache"))
        live = start_server()
        try:
            from automl.settings import resolve_settings

            storage = resolve_settings().storage_url
            shell = Site(live, {}, {})
            for user in ("alice", "bob"):
                job = shell.submit(user, f"{user}-job")
                shell.jobs[user] = job
                # The study a runner would create; a queued job has none yet.
                shell.study_ids[user] = optuna.create_study(study_name=job["study_name"], storage=storage)._study_id
            yield shell
        finally:
            live.stop()


@pytest.fixture(autouse=True)
def no_token_in_the_log(site: Site, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The server runs in this process: whatever it logs must not hold a token."""
    with caplog.at_level(logging.DEBUG):
        yield
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for token in site.server.tokens.values():
        assert token not in logged, "a token reached a log line"


def log_in(client: httpx.Client, token: str, *, next_path: str = "/", origin: str | None = None) -> httpx.Response:
    origin = origin or str(client.base_url).rstrip("/")
    return client.post("/login", data={"token": token, "next": next_path}, headers={"Origin": origin})


# -- logging in and out --------------------------------------------------------------------------


def test_login_sets_an_httponly_samesite_strict_cookie_and_goes_on_to_the_page_asked_for(site: Site) -> None:
    job = site.jobs["alice"]["id"]
    with site.browser() as client:
        answer = log_in(client, site.server.tokens["alice"], next_path=f"/jobs/{job}")
        assert answer.status_code == 303 and answer.headers["location"] == f"/jobs/{job}"
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith("automl_token=")
        assert re.search(r"; HttpOnly", cookie, re.IGNORECASE) and re.search(r"; SameSite=strict", cookie, re.IGNORECASE)
        assert re.search(r"; Path=/(;|$)", cookie) and "secure" not in cookie.lower(), "Secure only with secure_cookies"
        page = client.get(f"/jobs/{job}")
        assert page.status_code == 200 and site.jobs["alice"]["name"] in page.text
        assert site.server.tokens["alice"] not in page.text, "the token is never put in a page"
        listing = client.get("/")
        assert listing.status_code == 200 and job in listing.text and site.jobs["bob"]["id"] not in listing.text
        headers = listing.headers
        assert (
            "script-src 'self'" in headers["content-security-policy"]
            and "frame-ancestors 'none'" in headers["content-security-policy"]
        )
        assert headers["cache-control"] == "no-store"


def test_a_bad_token_shows_the_form_again_with_401_and_sets_no_cookie(site: Site) -> None:
    with site.browser() as client:
        for token in ("nope", "", site.server.tokens["alice"] + "x"):
            answer = log_in(client, token)
            assert answer.status_code == 401, token
            assert "set-cookie" not in answer.headers
            assert "That token is not valid" in answer.text and 'name="token"' in answer.text
            assert not token or token not in answer.text, "the token sent is not shown back"
        crowded = client.post("/login", content="&".join(f"f{n}=x" for n in range(50)), headers={"Origin": site.url})
        assert crowded.status_code == 401


def test_login_from_another_site_or_to_another_site_is_refused(site: Site) -> None:
    with site.browser() as client:
        answer = log_in(client, site.server.tokens["alice"], origin=EVIL)
        assert answer.status_code == 403 and "set-cookie" not in answer.headers
        for elsewhere in ("//evil.example/x", "http://evil.example/", "/\\evil.example"):
            answer = log_in(client, site.server.tokens["alice"], next_path=elsewhere)
            assert answer.status_code == 303 and answer.headers["location"] == "/", elsewhere


def test_secure_cookies_mark_the_cookie_secure(automl_home: Path) -> None:
    live = start_server(config_overrides={"secure_cookies": True})
    try:
        with httpx.Client(base_url=live.url, timeout=30) as client:
            answer = log_in(client, live.tokens["bob"])
            assert answer.status_code == 303 and "; secure" in answer.headers["set-cookie"].lower()
    finally:
        live.stop()


def test_logout_clears_the_cookie(site: Site) -> None:
    with site.browser("alice") as client:
        for method in ("POST", "GET"):
            answer = client.request(method, "/logout", headers={"Origin": site.url})
            assert answer.status_code == 303 and answer.headers["location"] == "/login"
            assert re.match(r'automl_token="?"?;.*Max-Age=0', answer.headers["set-cookie"]), answer.headers["set-cookie"]


# -- no token ------------------------------------------------------------------------------------


def test_pages_send_a_browser_without_a_token_to_login_and_the_api_answers_401(site: Site) -> None:
    job = site.jobs["alice"]["id"]
    with site.browser() as client:
        for path in (
            "/",
            f"/jobs/{job}",
            f"/jobs/{job}/dashboard",
            "/dashboard/",
            f"/dashboard/studies/{site.study_ids['alice']}",
        ):
            answer = client.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/login?next=%2F"), (path, answer.headers["location"])
        assert client.get("/login").status_code == 200
        for path in ("/api/v1/jobs", f"/api/v1/jobs/{job}/stream", "/api/studies", "/api/meta", "/static/bundle.js"):
            answer = client.get(path)
            assert answer.status_code == 401 and answer.json()["error"].startswith("a valid token is required"), path
        # A bad cookie is no token.
        client.cookies.set("automl_token", "aml_nothing")
        assert client.get("/").status_code == 303


def test_a_link_from_another_site_is_loaded_once_more_from_this_one(site: Site) -> None:
    """The SameSite=Strict cookie is not sent with a navigation from another site: the page asks the
    browser to load it again from here (which sends the cookie) instead of logging it out."""
    job = site.jobs["alice"]["id"]
    with site.browser() as client:
        answer = client.get(f"/jobs/{job}", headers={"Sec-Fetch-Site": "cross-site"})
        assert answer.status_code == 200
        assert f'<meta http-equiv="refresh" content="0; url=/jobs/{job}">' in answer.text
        again = client.get(f"/jobs/{job}", headers={"Sec-Fetch-Site": "same-origin"})
        assert again.status_code == 303 and again.headers["location"].startswith("/login"), "no loop"


# -- cross-site requests -------------------------------------------------------------------------


def test_a_cross_site_cancel_through_the_cookie_is_refused_while_bearer_and_same_origin_work(site: Site) -> None:
    first, second, third = (site.submit("alice", f"cancel-{n}")["id"] for n in range(3))
    with site.browser("alice") as client:
        for headers in ({"Origin": EVIL}, {"Referer": f"{EVIL}/page"}, {}, {"Origin": "null"}):
            answer = client.post(f"/api/v1/jobs/{first}/cancel", headers=headers)
            assert answer.status_code == 403, headers
            assert "Authorization: Bearer" in answer.json()["error"]
        assert client.get(f"/api/v1/jobs/{first}").json()["state"] == "queued", "nothing was cancelled"
        assert client.post(f"/api/v1/jobs/{first}/cancel", headers={"Origin": site.url}).json()["state"] == "cancelled"
        same_page = client.post(f"/api/v1/jobs/{second}/cancel", headers={"Referer": f"{site.url}/jobs/{second}"})
        assert same_page.status_code == 200
    with site.bearer("alice") as script:  # no cookie, no Origin: a script with its token is not asked
        assert script.post(f"/api/v1/jobs/{third}/cancel", headers={"Origin": EVIL}).json()["state"] == "cancelled"


# -- whose pages ---------------------------------------------------------------------------------


def test_another_users_job_page_is_404_and_an_admin_sees_it(site: Site) -> None:
    bob_job = site.jobs["bob"]["id"]
    with site.browser("alice") as alice, site.browser("root") as root:
        for path in (f"/jobs/{bob_job}", f"/jobs/{bob_job}/dashboard", "/jobs/zz", "/jobs/0123456789ab"):
            answer = alice.get(path)
            assert answer.status_code == 404 and "not yours to see" in answer.text, path
            assert answer.headers["content-type"].startswith("text/html")
        assert root.get(f"/jobs/{bob_job}").status_code == 200
        assert "bob-job" in root.get("/").text and "alice-job" in root.get("/").text
        dashboard = root.get(f"/jobs/{bob_job}/dashboard")
        assert dashboard.status_code == 303 and dashboard.headers["location"] == f"/dashboard/studies/{site.study_ids['bob']}"


def test_the_dashboard_shows_a_user_only_the_studies_of_their_own_jobs(site: Site) -> None:
    names = {user: job["study_name"] for user, job in site.jobs.items()}
    ids = site.study_ids
    with site.browser("alice") as alice, site.browser("bob") as bob, site.bearer("root") as root:
        listed = {
            who: [s["study_name"] for s in client.get("/api/studies").json()["study_summaries"]]
            for who, client in (("alice", alice), ("bob", bob), ("root", root))
        }
        assert listed == {"alice": [names["alice"]], "bob": [names["bob"]], "root": [names["alice"], names["bob"]]}
        assert alice.get(f"/api/studies/{ids['alice']}").json()["name"] == names["alice"]
        head = alice.head("/api/studies")  # not even the length of the whole list
        assert head.status_code == 200 and int(head.headers["content-length"]) == len(alice.get("/api/studies").content)
        # Another's study is answered exactly as a study that does not exist.
        theirs, none = alice.get(f"/api/studies/{ids['bob']}"), alice.get("/api/studies/999")
        assert theirs.status_code == none.status_code == 404
        assert theirs.json()["reason"] == f"study_id={ids['bob']} is not found"
        for path in (
            f"/api/studies/{ids['bob']}/param_importances",
            f"/api/studies/{ids['bob']}/plot/history",
            f"/csv/{ids['bob']}",
            f"/artifacts/{ids['bob']}/0/abc-123",
        ):
            assert alice.get(path).status_code == 404, path
        page = alice.get(f"/dashboard/studies/{ids['bob']}/analytics")
        assert page.status_code == 404 and "not yours to see" in page.text
        assert alice.get(f"/dashboard/studies/{ids['alice']}").status_code == 200
        assert root.get(f"/api/studies/{ids['bob']}").status_code == 200, "an admin sees every study"
        assert alice.get(f"/csv/{ids['alice']}").status_code == 200
        # The dashboard's page and script are the server's own (no internet needed).
        assert "/static/bundle.js" in alice.get("/dashboard/").text
        bundle = alice.get("/static/bundle.js")
        assert bundle.status_code == 200 and len(bundle.content) > 1_000_000


def test_the_dashboard_is_read_only(site: Site) -> None:
    study = site.study_ids["alice"]
    with site.browser("alice") as alice, site.bearer("root") as root:
        for client in (alice, root):
            for method, path, body in (
                ("POST", "/api/studies", {"study_name": "made-here", "directions": ["minimize"]}),
                ("POST", f"/api/studies/{study}/rename", {"study_name": "renamed"}),
                ("DELETE", f"/api/studies/{study}", {}),
                ("PUT", f"/api/studies/{study}/note", {"version": 1, "body": "x"}),
            ):
                answer = client.request(method, path, json=body, headers={"Origin": site.url})
                assert answer.status_code == 405 and "read-only" in answer.json()["reason"], (method, path)
        assert [s["study_name"] for s in root.get("/api/studies").json()["study_summaries"]] == [
            site.jobs["alice"]["study_name"],
            site.jobs["bob"]["study_name"],
        ], "nothing was created, renamed or deleted"
