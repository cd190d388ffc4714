"""The same CLI scenario, once on the embedded job store and once through ``automl server``: the same
output and the same exit codes, line for line (job ids, times and run ids aside).

Through the server the CLI holds only a URL and a token: its own state directory stays empty, so
every answer came from the server. A runner on the server's job store really runs the job (a
tiny iris search), so ``status`` and ``best`` of a finished job are compared too.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from automl.cli import app

pytestmark = pytest.mark.slow

TINY = {
    "name": "iris-both",
    "trainer": {"name": "mlp", "dataset": "iris"},
    "space": "mlp-small",
    "metric": "val_accuracy",
    "mode": "max",
    "sampler": {"name": "random"},
    "budget": {"trials": 2, "max_epochs": 1},
    "resources": {"max_concurrent": 1},
    "seed": 3,
    "tracking": {"plots": False},
}


def run_jobs() -> None:
    """A runner on the job store the environment names, until the queue is empty."""
    from automl.service import open_job_store
    from automl.service.runner import Runner
    from automl.settings import resolve_settings

    settings = resolve_settings()
    Runner(open_job_store(settings), settings, concurrency=1, poll_s=0.2).run(until_idle=True)


def scenario(cli: Any, files: Path) -> list[tuple[str, int, str, str]]:
    """What a user does, and what each command printed: (command, exit code, stdout, stderr)."""
    seen: list[tuple[str, int, str, str]] = []

    def do(*args: str) -> str:
        result = cli(*args)
        seen.append((" ".join(args), result.exit_code, result.stdout, result.stderr))
        return result.stdout.strip()

    good, bad = files / "tiny.yaml", files / "bad.yaml"
    first = do("submit", str(good))
    second = do("submit", str(good))
    do("cancel", second)
    do("cancel", second)  # exit 1: it already ended
    do("list")
    do("status", first)
    do("best", first)  # exit 1: no trial yet
    do("status", "zz")  # exit 2: not a job id
    do("status", "abcdef")  # exit 1: no such job
    do("submit", str(bad))  # exit 2: the field named
    do("list", "--state", "nope")  # exit 2
    run_jobs()
    # --wide: at a pipe's 80 columns the events' lines wrap where the figures' widths put them,
    # which differ from run to run (0.5 s against 12.3 s) before they are made placeholders.
    do("status", first, "--wide")
    do("status", first, "--json")
    do("best", first)
    do("best", first, "--json")
    do("list", "--json")
    third = do("rerun", first)
    do("cancel", third)
    do("list", "--state", "cancelled")
    return seen


def normalise(text: str, ids: dict[str, str]) -> str:
    """Ids, times, run ids and figures that differ from run to run, made placeholders."""
    for job_id in re.findall(r"\b[0-9a-f]{12}\b", text):
        ids.setdefault(job_id, f"<job{len(ids)}>")
    for job_id, name in ids.items():
        text = text.replace(job_id, name)
    text = re.sub(r"\b[0-9a-f]{32}\b", "<run>", text)
    text = re.sub(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?Z?", "<time>", text)
    text = re.sub(r"\b\d\d-\d\d \d\d:\d\d\b", "<time>", text)  # a list's "12-05 10:29": the two runs may straddle a minute
    text = re.sub(r'"owner": ("alice"|null)', '"owner": <owner>', text)
    text = re.sub(r"[\w.-]+:\d+:[0-9a-f]{6}\b", "<runner>", text)  # runner ids (host:pid:hex)
    text = re.sub(r"\d+\.\d+(e-?\d+)?", "<n>", text)
    # Column widths follow the figures' widths: compare the cells, not the padding.
    text = re.sub(r"─+", "─", text)
    return "\n".join(" ".join(line.split()) for line in text.splitlines()).strip()


@pytest.fixture
def files(tmp_path: Path) -> Path:
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    (folder / "bad.yaml").write_text(yaml.safe_dump({**TINY, "budget": {"trials": 0}}))
    return folder


def cli_for(env: dict[str, str]) -> Any:
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args), env={"COLUMNS": "200", **env})


def test_the_cli_prints_the_same_and_exits_the_same_with_and_without_a_server(
    files: Path, tmp_path: Path, automl_home: Path, ray_session: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server_fixture import start_server

    embedded = scenario(cli_for({"AUTOML_SERVER": "", "AUTOML_TOKEN": ""}), files)

    # A fresh job store for the server; the client's own state directory is another, empty one.
    monkeypatch.setenv("AUTOML_HOME", str(tmp_path / "server-home"))
    live = start_server()
    try:
        client_home = tmp_path / "client-home"
        served = scenario(cli_for({**live.env("alice"), "AUTOML_HOME": str(client_home)}), files)
        owners = {job.owner for job in live.store.list()}
    finally:
        live.stop()

    assert not client_home.exists() or not any(client_home.iterdir()), "the client opened a store of its own"
    assert owners == {"alice"}
    assert [code for _, code, _, _ in embedded] == [0, 0, 0, 1, 0, 0, 1, 2, 1, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0]
    ids_a: dict[str, str] = {}
    ids_b: dict[str, str] = {}
    for (command, code_a, out_a, err_a), (_, code_b, out_b, err_b) in zip(embedded, served, strict=True):
        assert code_a == code_b, (command, err_a, err_b)
        for a, b in ((normalise(out_a, ids_a), normalise(out_b, ids_b)), (normalise(err_a, ids_a), normalise(err_b, ids_b))):
            assert a == b, f"{command}:\n" + "\n".join(difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm=""))
    best = json.loads(served[14][2])
    assert best["state"] == "succeeded" and best["best_value"] is not None and best["model_uri"] == "models:/iris-both/1"
    assert all(live.tokens["alice"] not in out + err for _, _, out, err in served), "the token was printed"
    assert os.environ.get("AUTOML_TOKEN") is None
