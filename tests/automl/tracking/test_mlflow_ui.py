"""The MLflow UI on a finished job, in a real headless Chromium: what a person sees there.

A small real search runs through ``automl run``; MLflow's own UI server serves its store on a
loopback port; Playwright drives Debian's Chromium (:mod:`browser`) through the experiment, the
job's run, a pruned trial's run and the plots, with every request off the machine refused (the
plots must render offline). The screenshots it takes are kept under
``$AUTOML_TEST_ARTIFACTS/mlflow-ui`` (default ``test-artifacts/mlflow-ui`` in the repository), for
CI to keep as artifacts.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from browser import launch, require_browser, screenshots  # tests/, on sys.path by its conftest
from mlflow import MlflowClient
from typer.testing import CliRunner

from automl.cli import app

pytestmark = pytest.mark.slow

TRIALS = 5
PLOTS = ("optimization_history", "parallel_coordinate", "param_importances", "learning_curves")
SERVER_START_S = 120  # mlflow ui imports a lot; on a loaded 2-core machine it takes a while
UI_WAIT_MS = 30_000


@pytest.fixture(scope="module")
def browser_ready() -> None:
    """Fail on CI when the browser is missing (CI must run this test); skip, saying why, elsewhere."""
    require_browser("the MLflow UI test")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def mlflow_ui(automl_home: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """MLflow's UI server on the job store, started before the job runs so its start overlaps it."""
    automl_home.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{automl_home / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).search_experiments()  # the schema exists before two processes open it
    port = _free_port()
    log = (tmp_path / "mlflow-ui.log").open("w")
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--default-artifact-root",
        (automl_home / "artifacts").as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",  # one user: four workers only start four times slower
    ]
    # The UI needs no background job runner (MLflow's GenAI jobs); it is a dozen processes less.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        yield {"url": f"http://127.0.0.1:{port}", "process": server, "log": tmp_path / "mlflow-ui.log"}
    finally:
        _stop(server)
        log.close()


def _stop(process: subprocess.Popen[Any]) -> None:
    """Stop the server and every worker it started (its own process group)."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _wait_for_server(ui: dict[str, Any]) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if ui["process"].poll() is not None:
            pytest.fail(f"mlflow ui exited with {ui['process'].returncode}:\n{ui['log'].read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{ui['url']}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"mlflow ui did not answer within {SERVER_START_S} s:\n{ui['log'].read_text()[-3000:]}")


OBJECTIVE = """
def objective(params, ctx):
    if ctx.trial_number == FAILING_TRIAL:
        raise RuntimeError("diverged: the loss went to infinity")
    # Each trial better than the ones before it (one at a time), so ASHA lets it go on; but the
    # pruned one, far worse than those: ASHA stops it after its first step.
    base = 1000.0 if ctx.trial_number == PRUNED_TRIAL else 10.0 / (ctx.trial_number + 1)
    bowl = (params["x"] - 2) ** 2 + (params["y"] + 1) ** 2
    for step in range(1, ctx.max_epochs + 1):
        ctx.report(loss=base + 0.001 * bowl + 1 / step, step=step)
"""
FAILING_TRIAL = 1
PRUNED_TRIAL = 3


def _run_job(tmp_path: Path) -> None:
    """A small real job: our own objective (fast, and one trial fails on purpose), run by ``automl run``."""
    (tmp_path / "ui_objective.py").write_text(f"FAILING_TRIAL = {FAILING_TRIAL}\nPRUNED_TRIAL = {PRUNED_TRIAL}\n{OBJECTIVE}")
    job = tmp_path / "quadratic.yaml"
    job.write_text(
        yaml.safe_dump(
            {
                "name": "quadratic-ui",
                "description": "A quadratic bowl with a learning curve; trial 1 fails and trial 3 is pruned, on purpose.",
                "objective": "ui_objective:objective",
                "space": {"x": {"type": "float", "low": -5, "high": 5}, "y": {"type": "float", "low": -5, "high": 5}},
                "metric": "loss",
                "mode": "min",
                "scheduler": {"name": "asha", "grace_period": 1},
                "budget": {"trials": TRIALS, "max_epochs": 3},
                "resources": {"cpus_per_trial": 1, "max_concurrent": 1},
                "seed": 3,
            }
        )
    )
    result = CliRunner().invoke(app, ["run", str(job), "--no-progress"])
    assert result.exit_code == 0, result.output
    # `automl run` in its own process waits for its plots as it exits; in this one, wait here.
    from automl.engine.write_behind import shared_plotter

    shared_plotter().barrier()


def test_mlflow_ui_shows_the_job_its_trials_and_its_plots(
    tmp_path: Path, automl_home: Path, ray_session: None, browser_ready: None, mlflow_ui: dict[str, Any]
) -> None:
    from playwright.sync_api import expect, sync_playwright

    started = time.monotonic()
    _run_job(tmp_path)
    print(f"job: {time.monotonic() - started:.1f} s")

    # What the UI must show, read from the study and the store themselves.
    storage = f"sqlite:///{automl_home / 'studies.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).get_trials()
    assert len(trials) == TRIALS
    states = {t.number: t.state.name for t in trials}
    assert states == {n: {FAILING_TRIAL: "FAIL", PRUNED_TRIAL: "PRUNED"}.get(n, "COMPLETE") for n in range(TRIALS)}
    client = MlflowClient(tracking_uri=f"sqlite:///{automl_home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("quadratic-ui")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`automl.kind` = 'job'")
    parent_name = parent.info.run_name
    assert parent_name == summary.study_name
    job_id = parent_name.rsplit("-", 1)[1]
    best_value = parent.data.metrics["best_loss"]
    best_trial = int(parent.data.tags["automl.best_trial"])
    (pruned,) = client.search_runs([experiment.experiment_id], f"tags.`automl.trial_number` = '{PRUNED_TRIAL}'")
    assert pruned.info.status == "FINISHED" and pruned.data.tags["automl.state"] == "PRUNED"

    _wait_for_server(mlflow_ui)
    print(f"server up: {time.monotonic() - started:.1f} s")
    shots = screenshots("mlflow-ui")
    base = f"{mlflow_ui['url']}/#/experiments/{experiment.experiment_id}"
    # The UI opens in its GenAI view by default; the runs of a search read best in the ML one
    # (the links the jobs write carry it too).
    view = "?workflowType=machine_learning"
    with sync_playwright() as playwright:
        context = launch(playwright, tmp_path / "chromium-profile", viewport={"width": 1400, "height": 900})
        # Offline, as most of the service's machines are: every request off this machine is refused
        # (and noted), so a plot that needs a CDN shows blank here as it would there.
        refused: list[str] = []

        def refuse(route: Any) -> None:
            refused.append(route.request.url)
            route.abort()

        context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), refuse)
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(UI_WAIT_MS)
        expect.set_options(timeout=UI_WAIT_MS)  # assertions have their own timeout (5 s by default)
        try:
            # The experiment: the job's run, expanded, with one row per trial, named with the job's id.
            page.goto(f"{base}/runs{view}")
            expect(page.get_by_text(re.compile(rf"^{TRIALS + 1}\s+matching runs$"))).to_be_visible()
            _close_assistant(page)
            page.get_by_role("link", name=parent_name).wait_for()
            expand = page.locator('button[data-component-id$="runnamecellrenderer.tsx_46"]')
            expect(expand).to_have_count(1)  # only the job's run has children to expand
            expand.click()
            trial_links = page.get_by_role("link", name=re.compile(rf"^trial-\d{{3}}-{job_id}$"))
            expect(trial_links).to_have_count(TRIALS)
            names = sorted(trial_links.all_inner_texts())
            assert names == [f"trial-{t.number:03d}-{job_id}" for t in trials]
            page.screenshot(path=str(shots / "experiment.png"))

            # The description's first link opens the experiment's saved view: every run sorted by the
            # job's metric (best first, so the best trial on top), with it as a column.
            link = page.get_by_role("link", name=re.compile(r"^Every run by loss, lowest first$"))
            href = link.get_attribute("href") or ""  # the UI opens description links in a new tab
            assert href.startswith(f"#/experiments/{experiment.experiment_id}/runs?viewStateShareKey="), href
            page.goto(f"{mlflow_ui['url']}/{href}")
            expect(page.get_by_test_id("saved-views-trigger")).to_have_text("Trials by loss")
            expect(page.get_by_text(re.compile(rf"^{TRIALS + 1}\s+matching runs$"))).to_be_visible()
            _close_assistant(page)
            expect(page.locator('[role="columnheader"][col-id="metrics.`loss`"]')).to_be_visible()
            expect(page.get_by_role("link", name=re.compile(rf"^trial-\d{{3}}-{job_id}$")).first).to_have_text(
                f"trial-{best_trial:03d}-{job_id}"
            )
            page.screenshot(path=str(shots / "metric-view.png"))

            # Filtering by state finds exactly the failed trial; the UI lists its job's run with
            # it (collapsed), to keep the tree.
            page.get_by_role("button", name="Exit shared view").first.click()
            search = page.get_by_test_id("search-box")
            search.fill("tags.automl.state = 'FAIL'")
            search.press("Enter")
            expect(page.get_by_text(re.compile(r"^2\s+matching runs$"))).to_be_visible()
            if trial_links.count() != 1:
                expand.click()
            expect(trial_links).to_have_count(1)
            expect(trial_links).to_have_text(f"trial-{FAILING_TRIAL:03d}-{job_id}")
            page.screenshot(path=str(shots / "filtered.png"))

            # A pruned trial's run is not shown as a failure: Finished (not Killed, not Failed),
            # with its state PRUNED in its tags.
            page.goto(f"{base}/runs/{pruned.info.run_id}{view}")
            expect(page.get_by_text(f"trial-{PRUNED_TRIAL:03d}-{job_id}").first).to_be_visible()
            _close_assistant(page)
            expect(page.get_by_text("Finished", exact=True).first).to_be_visible()
            expect(page.get_by_text(re.compile(r"^(Killed|Failed)$"))).to_have_count(0)
            expect(page.get_by_role("status", name="automl.state")).to_have_text(re.compile(r"automl\.state\s*:\s*PRUNED"))
            page.screenshot(path=str(shots / "pruned-trial.png"), full_page=True)

            # The job's run: its description is the result.
            page.goto(f"{base}/runs/{parent.info.run_id}{view}")
            summary = f"{TRIALS} trials ({TRIALS - 2} complete, 1 pruned, 1 failed)"
            expect(page.get_by_text(summary)).to_be_visible()
            _close_assistant(page)
            expect(page.get_by_text(f"{best_value:.6g}", exact=True)).to_be_visible()
            page.screenshot(path=str(shots / "job-run.png"), full_page=True)

            # Its plots: every one listed; a PNG previews; an HTML plot renders interactively, offline.
            page.goto(f"{base}/runs/{parent.info.run_id}/artifacts/plots/optimization_history.png{view}")
            for name in PLOTS:
                for suffix in ("html", "png"):
                    expect(page.get_by_text(f"{name}.{suffix}", exact=True)).to_be_visible()
            image = page.locator('img[alt="plots/optimization_history.png"]')
            expect(image).to_be_visible()
            _close_assistant(page)
            page.wait_for_function("img => img.complete && img.naturalWidth > 300", arg=image.element_handle())
            page.screenshot(path=str(shots / "plots.png"))
            page.get_by_text("parallel_coordinate.html", exact=True).click()
            expect(page.get_by_text("plots/parallel_coordinate.html", exact=True)).to_be_visible()
            frame = page.frame_locator("iframe.mlflow-html-iframe")
            expect(frame.locator(".js-plotly-plot .main-svg").first).to_be_visible()
            expect(frame.get_by_text("quadratic-ui: hyperparameters of the completed trials")).to_be_visible()
            _close_assistant(page)
            page.screenshot(path=str(shots / "plot-html.png"))
            assert not [url for url in refused if "plot.ly" in url], refused  # plotly.js came with the file
        except Exception:
            page.screenshot(path=str(shots / "failure.png"))  # what the browser showed when it failed
            raise
        finally:
            context.close()
    print(f"browser done: {time.monotonic() - started:.1f} s; screenshots: {shots}; refused: {refused}")


def _close_assistant(page: Any) -> None:
    """MLflow 3 opens its assistant panel beside the runs; it only narrows the table here."""
    close = page.locator('button[data-component-id="mlflow.assistant.chat_panel.close"]')
    if close.count():
        close.click()
