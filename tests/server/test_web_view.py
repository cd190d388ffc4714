"""The web view of ``automl server`` in a real headless Chromium: what a person sees there.

Alice logs in with her token, watches her job really run (a runner on the server's job store, in
a thread, runs a small objective that takes a fraction of a second per step) and its count go up
on the job page, cancels it there and sees it end cancelled; bob's job page is refused (404); the
studies' dashboard lists her study, labelled with its metric, and not bob's. Playwright drives
Debian's Chromium (:mod:`browser`); the screenshots are kept under ``$AUTOML_TEST_ARTIFACTS/web-view``
(default ``test-artifacts/web-view`` in the repository).
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import optuna
import pytest
from browser import launch, require_browser, screenshots  # tests/, on sys.path by its conftest
from server_fixture import start_server  # tests/server/, on sys.path by its conftest

pytestmark = pytest.mark.slow

OBJECTIVE = """
import time

def objective(params, ctx):
    for step in range(1, ctx.max_epochs + 1):
        time.sleep(0.2)
        ctx.report(loss=(params["x"] - 0.3) ** 2 + 1.0 / step, step=step)
"""
TRIALS = 60  # far more than run before the cancel: the job is still running when it comes
MLFLOW_UI = "http://mlflow.test:5000"  # only the link to it is checked
WAIT_MS = 30_000


def spec(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "objective": "web_objective:objective",
        "space": {"x": {"type": "float", "low": 0, "high": 1}},
        "metric": "loss",
        "mode": "min",
        "sampler": {"name": "random"},
        "scheduler": {"name": "fifo"},
        "budget": {"trials": TRIALS, "max_epochs": 2},
        "resources": {"max_concurrent": 1},
        "seed": 7,
    }


def finished(page: Any) -> int:
    """The finished-trial count the job page shows (``3/60`` -> 3)."""
    return int(page.locator("#progress-text").inner_text().split("/")[0])


def test_alice_watches_her_job_run_cancels_it_and_sees_only_her_own(tmp_path: Path, automl_home: Path, ray_session: None) -> None:
    require_browser("the web view test")
    from playwright.sync_api import expect, sync_playwright

    from automl.service import open_job_store
    from automl.service.runner import Runner
    from automl.settings import resolve_settings

    started = time.monotonic()
    shots = screenshots("web-view")
    (tmp_path / "web_objective.py").write_text(OBJECTIVE)
    live = start_server(config_overrides={"mlflow_ui_url": MLFLOW_UI})
    settings = resolve_settings()
    store = open_job_store(settings)
    jobs: dict[str, dict[str, Any]] = {}
    for user in ("alice", "bob"):
        body = {"plan_json": json.dumps({"spec": spec(f"{user}-search")}), "base_dir": str(tmp_path)}
        answer = httpx.post(f"{live.url}/api/v1/jobs", json=body, headers={"Authorization": f"Bearer {live.tokens[user]}"})
        assert answer.status_code == 201, answer.text
        jobs[user] = answer.json()
    alice, bob = jobs["alice"], jobs["bob"]
    store.cancel(bob["id"])  # bob's job never runs here; its study exists all the same
    optuna.create_study(study_name=bob["study_name"], storage=settings.storage_url)
    runner = Runner(store, settings, runner_id="web-view-test", poll_s=0.2)
    running = threading.Thread(target=runner.run, kwargs={"job_id": alice["id"]}, name="web-view-runner", daemon=True)
    running.start()
    try:
        with sync_playwright() as playwright:
            context = launch(playwright, tmp_path / "chromium-profile", viewport={"width": 1280, "height": 900})
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(WAIT_MS)
            expect.set_options(timeout=WAIT_MS)
            page.on("dialog", lambda dialog: dialog.accept())  # Cancel asks "are you sure?"
            try:
                # Not logged in: the job list sends the browser to the login form.
                page.goto(f"{live.url}/")
                expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))
                page.get_by_label("Token").fill("not-a-token")
                page.get_by_role("button", name="Log in").click()
                expect(page.locator("#login-error")).to_contain_text("That token is not valid")
                page.get_by_label("Token").fill(live.tokens["alice"])
                page.get_by_role("button", name="Log in").click()
                expect(page).to_have_url(f"{live.url}/")
                assert "token" not in page.url and live.tokens["alice"] not in page.content()
                cookie = next(c for c in context.cookies() if c["name"] == "automl_token")
                assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
                assert page.evaluate("document.cookie") == "", "scripts cannot read the token"

                # The job list: her job, not bob's; it refreshes itself as the job starts.
                row = page.locator(f'tr[data-job-id="{alice["id"]}"]')
                expect(row).to_have_attribute("data-state", "running")
                expect(page.locator(f'tr[data-job-id="{bob["id"]}"]')).to_have_count(0)
                expect(page.locator("#who")).to_have_text("alice")
                page.screenshot(path=str(shots / "jobs.png"))

                # Her job's page: the count goes up while she watches, from the job's stream.
                row.get_by_role("link", name=alice["id"]).click()
                expect(page).to_have_url(f"{live.url}/jobs/{alice['id']}")
                expect(page.locator("#state")).to_have_text("running")
                page.wait_for_function("() => parseInt(document.getElementById('progress-text').textContent) >= 1")
                first = finished(page)
                page.wait_for_function("n => parseInt(document.getElementById('progress-text').textContent) >= n + 2", arg=first)
                assert finished(page) >= first + 2
                expect(page.locator("#top tbody tr").first).to_contain_text("#")
                expect(page.locator("#top thead")).to_contain_text("loss")
                expect(page.locator("#events li").first).to_be_visible()
                assert int(page.locator("#chart").get_attribute("data-points") or 0) >= 3, "the chart grew point by point"
                expect(page.locator("#chart path.line.finished")).to_have_count(1)
                expect(page.locator("#chart path.line.best")).to_have_count(1)
                job = store.get(alice["id"])
                expect(page.locator("#mlflow-link")).to_have_attribute(
                    "href", f"{MLFLOW_UI}/#/experiments/{job.experiment_id}/runs/{job.mlflow_run_id}"
                )
                page.screenshot(path=str(shots / "job-running.png"), full_page=True)

                # Cancel: the job ends cancelled, and the page says so without a reload.
                page.get_by_role("button", name="Cancel job").click()
                expect(page.locator("#state")).to_have_text("cancelled")
                expect(page.get_by_role("button", name="Cancel job")).to_be_hidden()
                page.screenshot(path=str(shots / "job-cancelled.png"), full_page=True)
                ended = store.get(alice["id"])
                assert ended.state == "cancelled" and 3 <= ended.trials_finished < TRIALS, ended
                assert "cancel_requested" in [e.kind for e in store.events(alice["id"], limit=100)]

                # Bob's job is not hers: 404, as if it did not exist.
                refused = page.goto(f"{live.url}/jobs/{bob['id']}")
                assert refused is not None and refused.status == 404
                expect(page.locator("#not-found")).to_contain_text("not yours to see")
                page.screenshot(path=str(shots / "bob-job-refused.png"))

                # The studies' dashboard: hers, with its metric's name; not bob's.
                page.goto(f"{live.url}/dashboard/")
                expect(page.get_by_text(alice["study_name"])).to_be_visible()
                expect(page.get_by_text(bob["study_name"])).to_have_count(0)
                page.screenshot(path=str(shots / "dashboard.png"))
                study_id = optuna.load_study(study_name=alice["study_name"], storage=settings.storage_url)._study_id
                detail = page.request.get(f"{live.url}/api/studies/{study_id}")
                assert detail.ok and detail.json()["objective_names"] == ["loss"]
                page.goto(f"{live.url}/dashboard/studies/{study_id}")
                expect(page.locator("svg text", has_text=re.compile(r"^loss$")).first).to_be_attached()
                page.screenshot(path=str(shots / "dashboard-study.png"))
            except Exception:
                page.screenshot(path=str(shots / "failure.png"))  # what the browser showed when it failed
                raise
            finally:
                context.close()
    finally:
        if not store.get(alice["id"]).is_final:
            store.cancel(alice["id"])
        running.join(timeout=60)
        live.stop()
    assert not running.is_alive(), "the runner returned once the job ended"
    print(f"web view: {time.monotonic() - started:.1f} s; screenshots: {shots}")
