"""Each benchmark's smoke run (tiny sizes) works end to end and writes the JSON it promises.

Benchmarks are not tests: their figures are not checked against targets here, only that each
script runs, finishes, and reports positive numbers under the keys the README documents.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
# The scripts start their own local Ray and state directories; nothing of the caller's may leak in.
DROP_ENV = ("AUTOML_HOME", "AUTOML_DB_URL", "AUTOML_STORAGE_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS")


def smoke_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROP_ENV}
    env["COLUMNS"] = "120"
    return env


def run_smoke(name: str, tmp_path: Path, timeout: float = 300) -> dict[str, Any]:
    out = tmp_path / "x.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / f"{name}.py"), "--smoke", "--out", str(out)],
        cwd=tmp_path,
        env=smoke_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return checked(name, out, done.returncode, done.stdout, done.stderr)


def checked(name: str, out: Path, returncode: int, stdout: str, stderr: str) -> dict[str, Any]:
    """The smoke of ``benchmarks/NAME.py`` exited 0 and wrote the JSON it names at the end; its data."""
    assert returncode == 0, f"benchmarks/{name}.py --smoke failed:\n{stdout[-3000:]}\n{stderr[-5000:]}"
    assert out.exists(), stdout[-2000:]
    data = json.loads(out.read_text())
    assert data["benchmark"] == name and data["smoke"] is True
    assert data["machine"]["cpu_count"] >= 1 and data["machine"]["versions"]["optuna"]
    assert str(out) in stdout.replace("\n", "")  # the table ends by naming the JSON
    return data


# These smokes each start a local Ray: they run one after another in one interpreter
# (smoke_batch.py), each as ``python benchmarks/NAME.py --smoke`` would run it, in its own folder
# with its own output, so that Python's start, the imports and ray.init are paid once, not seven
# times (about 8 s each on 2 cores). Only the ones this pytest run selected are run.
BATCHED = ("overhead", "scaling", "code_shipping", "seed_noise", "growth", "sample_efficiency", "peers")


@pytest.fixture(scope="module")
def batch(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    selected = {item.name for item in request.session.items}
    names = [name for name in BATCHED if f"test_{name}_smoke" in selected]
    root = tmp_path_factory.mktemp("smokes")
    subprocess.run(
        [sys.executable, str(Path(__file__).with_name("smoke_batch.py")), str(root), *names],
        cwd=root,
        env=smoke_env(),
        timeout=300 * len(names),
        check=True,
    )
    return root


def batched_smoke(name: str, root: Path) -> tuple[dict[str, Any], Path]:
    """A smoke ``batch`` ran: its data (checked as :func:`run_smoke` checks it) and its folder."""
    folder = root / name
    code = folder / "exit_code"
    assert code.exists(), f"benchmarks/{name}.py --smoke never ran in the batch (smoke_batch.py)"
    data = checked(
        name,
        folder / "x.json",
        int(code.read_text()),
        (folder / "stdout.txt").read_text(errors="replace"),
        (folder / "stderr.txt").read_text(errors="replace"),
    )
    return data, folder


def positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def test_overhead_smoke(batch: Path) -> None:
    data, _ = batched_smoke("overhead", batch)
    for path in ("bare_optuna", "bare_tune", "handwired", "service", "service_inline"):
        run = data["paths"][path]
        assert positive(run["wall_s"]) and positive(run["per_trial_s"]) and positive(run["trials_per_s"]), (path, run)
        assert run["trials"] >= 1 and run["complete"] == run["trials"], (path, run)
        assert positive(run["machine_cpu_per_trial_s"]), (path, run)
    assert data["paths"]["service"]["tracking_errors"] == data["paths"]["service_inline"]["tracking_errors"] == 0
    for path in ("service", "service_inline"):  # the run's own phase times, in order, summing to under its wall time
        phases = data["paths"][path]["phases"]
        assert list(phases)[:2] == ["writer", "ray"] and list(phases)[-1] == "summary", phases
        assert positive(phases["trials"]) and sum(phases.values()) <= data["paths"][path]["wall_s"], phases
    # the durable paths write to SQLite; the in-memory ones do not; the service's trial writes are
    # made by its writer process, so this process sees fewer of them than with the writes inline
    assert positive(data["paths"]["service"]["write_transactions_per_trial"])
    assert positive(data["paths"]["handwired"]["write_transactions_per_trial"])
    service_txns = data["paths"]["service"]["write_transactions_per_trial"]
    assert data["paths"]["service_inline"]["write_transactions_per_trial"] > service_txns
    assert data["paths"]["bare_tune"]["write_transactions_per_trial"] == 0
    for key in ("service_over_bare_tune", "handwired_over_service", "service_over_bare_optuna", "service_inline_over_service"):
        assert positive(data["ratios"][key]), key
    assert set(data["targets"]) >= {"service_over_bare_tune_met", "handwired_over_service_met"}
    profile = data["profile"]
    calls = {row["call"]: row for row in profile["calls"]}
    assert positive(calls["Tuner.fit (the whole driver)"]["cum_s"])
    assert any(positive(row["ms_per_trial"]) for label, row in calls.items() if "Optuna" in label or "optuna" in label)
    assert Path(profile["text"]).exists()
    hooks = profile["timed_hooks"]
    assert positive(hooks["wall_s"]) and hooks["calls"]
    assert all(row["ms_per_trial"] >= 0 for row in hooks["calls"])
    assert set(hooks["phases"]) >= {"before_tune_s", "tune_start_to_first_trial_s", "first_trial_to_last_trial_s"}


def test_code_shipping_smoke(batch: Path) -> None:
    data, _ = batched_smoke("code_shipping", batch)
    sizes = [f"{size:g}" for size in data["settings"]["sizes_mb"]]
    assert len(sizes) == 1 and data["settings"]["repeats"] == 1  # one size: each job costs seconds
    for size in sizes:  # the package alone: as large as the folder (random filler), packed and unpacked
        packing = data["packing"][size]
        assert packing["files"] >= 2 and packing["unpacked_bytes"] >= data["settings"]["sizes_mb"][0] * 2**20
        assert packing["package_bytes"] >= packing["unpacked_bytes"] * 0.95, packing
        assert positive(packing["pack_median_s"]) and positive(packing["unpack_median_s"])
    runs = data["runs"]
    assert sorted((r["size_mb"], r["variant"]) for r in runs) == sorted(
        (size, variant) for size in data["settings"]["sizes_mb"] for variant in ("shipped", "not_shipped", "own_driver")
    )
    where = {"shipped": "runner's code cache", "not_shipped": "project folder", "own_driver": "ray working_dir"}
    for run in runs:
        assert run["imported_from"] == where[run["variant"]], run
        assert (run["code_sha256"] is None) == (run["variant"] == "not_shipped"), run
        assert run["driver_log"] is (run["variant"] == "own_driver"), run
        assert positive(run["submit_to_first_trial_s"]) and positive(run["submit_s"]) and positive(run["job_s"]), run
        for part in ("claim_to_search_start_s", "search_start_to_trial_created_s", "trial_created_to_objective_s"):
            assert isinstance(run[part], float), (part, run)
        assert positive(run["phases"]["trials"]), run
    assert len({r["code_sha256"] for r in runs if r["code_sha256"]}) == 2 * len(sizes), "a new package every submit"
    for size in sizes:
        row = data["summary"][size]
        for variant in ("shipped", "not_shipped", "own_driver"):
            assert positive(row[variant]["submit_to_first_trial_s"]["median"]), (size, variant)
        for variant in ("shipped", "own_driver"):  # a difference: either sign
            assert isinstance(row[variant]["added_s"]["median"], float), (size, variant)
    assert set(data["aim"]) >= {"added_shipped_median_s", "added_own_driver_median_s", "shipped_met", "own_driver_met"}


def test_server_load_smoke(tmp_path: Path) -> None:
    data = run_smoke("server_load", tmp_path, timeout=120)  # about 10 s: a server, no runner, 2 clients for 3 s
    assert data["no_errors"] is True, data["error_samples"]
    endpoints = data["endpoints"]
    assert set(endpoints) == {"list", "status", "get", "events", "whoami", "best"}
    for name, row in endpoints.items():
        assert row["requests"] >= 1 and row["errors"] == 0, (name, row)
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"] <= row["max_ms"], (name, row)
        assert positive(data["first_call_ms"][name]), name
    total = data["total"]
    assert total["requests"] == sum(r["requests"] for r in endpoints.values()) and positive(total["rate_per_s"])
    assert data["streams"]["connections"] == 1 and data["streams"]["errors"] == 0 and data["streams"]["messages"] >= 1
    assert positive(data["server"]["cpu_s"]) and positive(data["server"]["cpu_ms_per_request"])
    assert data["settings"]["job_store"] == "sqlite" and data["settings"]["jobs"]["running"] == 0  # no runner in the smoke


def test_seed_noise_smoke(batch: Path) -> None:
    data, _ = batched_smoke("seed_noise", batch)
    for method in ("service", "random"):
        row = data["methods"][method]
        assert len(row["scores"]) == data["settings"]["repeats"] == 2, row
        assert all(0 < s <= 1 for s in row["scores"]) and row["min"] <= row["median"] <= row["max"], row
        assert row["params"] and 0 < row["search_best"] <= 1, row
    assert data["median_gap"] >= 0


def test_scaling_smoke(batch: Path) -> None:
    data, _ = batched_smoke("scaling", batch)
    rows = data["cpu"]["rows"]
    assert sorted(r["concurrent"] for r in rows) == [1, 2]
    for row in rows:
        assert row["complete"] == row["trials"] == row["trials_logged"] >= 1, row
        assert positive(row["trials_per_min"]) and positive(row["wall_s"]) and positive(row["span_s"]), row
    assert positive(data["cpu"]["speedup"]) and positive(data["cpu"]["speedup_span"])
    assert positive(data["settings"]["calibration"]["iters"])
    gpu = data["gpu"]
    if "skipped" in gpu:
        assert gpu["skipped"] == "skipped: no CUDA GPU"
    else:
        assert [r["trials_per_gpu"] for r in gpu["rows"]] == [1, 2, 4]
        assert all(positive(r["trials_per_hour"]) for r in gpu["rows"])


def test_growth_smoke(batch: Path) -> None:
    data, _ = batched_smoke("growth", batch)
    rows = data["rows"]
    assert len(rows) >= 2 and rows[-1]["size"] >= data["settings"]["sizes"][-1]
    for row in rows:
        for key in ("tpe_ask_tell_ms", "random_ask_tell_ms", "status_subprocess_s", "status_in_process_ms"):
            assert positive(row[key]), (key, row)
        for key in ("store.get", "service.job_snapshot"):
            assert positive(row["status_in_process_parts_ms"][key]), (key, row)
        for key in ("snapshot_update_us", "record_progress_ms", "study_snapshot_ms"):
            assert positive(row[key]), (key, row)
        assert row["snapshot_agrees_with_study"] is True
    for fit in data["fits"].values():
        assert fit["ms_per_1000_trials"] is not None and fit["exponent"] is not None
    assert isinstance(data["status_under_1s_at_largest"], bool)


def test_sample_efficiency_smoke(batch: Path) -> None:
    data, folder = batched_smoke("sample_efficiency", batch)
    assert set(data["tasks"]) >= {"branin", "mlp_digits"}
    for name, task in data["tasks"].items():
        methods = ("service", "random", "tune") if name == "mlp_digits" else ("service", "random")  # smoke: no synthetic Tune run
        for seed in task["seeds"]:
            assert set(seed["methods"]) == set(methods), (name, list(seed["methods"]))
            for method in methods:
                run = seed["methods"][method]
                assert 0 < run["epochs_spent"] <= task["budget_epochs"], (name, method, run)
                assert run["complete_in_budget"] >= 1 and run["best"] is not None, (name, method, run)
                assert positive(run["wall_s"]), (name, method, run)
                # the best-so-far curve: its steps improve, within the budget, and end at the best
                epochs = [e for e, _ in run["curve"]]
                assert epochs == sorted(epochs) and 0 < epochs[-1] <= run["epochs_spent"], (name, method, run)
                assert run["curve"][-1][1] == run["score"], (name, method, run)
            assert seed["methods"]["random"]["ratio_vs_random"] == 1.0
        summary = task["summary"]
        assert summary["target"] is not None and 0 < summary["random_epochs_to_target"] <= task["budget_epochs"]
        assert summary["random"]["ratio_vs_random"] == 1.0
        for method in methods:
            assert summary[method]["ratio_vs_random"] >= 0 and summary[method]["median_curve"], (name, method)
    assert data["tasks"]["branin"]["summary"]["service"]["median_score"] > -1e-9  # regret
    assert 0 < data["tasks"]["mlp_digits"]["summary"]["service"]["median_score"] <= 1  # accuracy
    assert set(data["targets"]) >= {
        "branin_lower_regret_than_random",
        "mlp_digits_ratio_at_least_3",
        "mlp_digits_reevaluated_ratio_at_least_3",
    }
    # the MLP's incumbents, trained again over fresh trainer seeds: one mean per incumbent, in (0, 1]
    mlp = data["tasks"]["mlp_digits"]
    for seed in mlp["seeds"]:
        for method, run in seed["methods"].items():
            assert len(run["incumbent_scores"]) == len(run["incumbents"]) == len(run["curve"]) >= 1, (method, run)
            assert all(len(s) == data["settings"]["reeval_seeds"] == 2 for s in run["incumbent_scores"]), (method, run)
            assert [e for e, _ in run["reeval_curve"]] == [e for e, _ in run["curve"]], (method, run)
            assert 0 < run["reeval_score"] <= 1, (method, run)
    reevaluated = mlp["summary"]["reevaluated"]
    assert 0 < reevaluated["target"] <= 1 and reevaluated["random"]["ratio_vs_random"] == 1.0
    # the budget sweep ends at E with the summary's own figures
    for summary in (mlp["summary"], reevaluated):
        last = summary["by_budget"][-1]
        assert last["budget_epochs"] == mlp["budget_epochs"] and last["target"] == summary["target"], last
        assert last["service"]["ratio_vs_random"] == summary["service"]["ratio_vs_random"], last
    # random search given more epochs: its first E are the run above, then it goes on
    multiple = data["settings"]["random_budget_multiple"]
    for seed in mlp["seeds"]:
        extended, random = seed["random_extended"], seed["methods"]["random"]
        assert extended["epochs_spent"] == multiple * mlp["budget_epochs"], extended
        assert extended["curve"][: len(random["curve"])] == random["curve"], (extended, random)
    for key in ("one_training", "reevaluated"):
        matching = mlp["summary"]["matching"][key]
        assert matching["random_budget_epochs"] == multiple * mlp["budget_epochs"]
        assert 0 < matching["target"] <= 1 and 0 < matching["service_epochs"] <= mlp["budget_epochs"], matching
        assert (matching["ratio"] is None) == (matching["random_epochs"] is None) != (matching["ratio_at_least"] is None)
    png = Path(data["plot"])
    assert png == folder / "x.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_peers_smoke(batch: Path) -> None:
    data, folder = batched_smoke("peers", batch)
    tasks, workers = data["settings"]["tasks"], data["settings"]["workers"]
    assert set(tasks) == {"mf_branin", "mlp_breast_cancer"} and workers == 2
    assert tasks["mf_branin"]["kind"] == "synthetic" and positive(tasks["mf_branin"]["scale"])
    ours = ("service:default", "optuna:tpe+hyperband", "random")
    methods = list(data["methods"])  # ours, and the peers where they can run (their own venv)
    assert methods[:3] == list(ours) and all(why is None for why in data["methods"].values())
    assert sorted((r["task"], r["method"]) for r in data["runs"]) == sorted((t, m) for t in tasks for m in methods)
    skipped = ("mf_branin", "service:default")  # the smoke runs one service search only, on the training task
    for run in data["runs"]:
        if (run["task"], run["method"]) == skipped:
            assert run["status"].startswith("not run: --smoke") and run["rows"] == [], run["status"]
            continue
        budget, rows = tasks[run["task"]]["budget_epochs"], run["rows"]
        assert run["status"] == "ok" and positive(run["wall_s"]), run["status"]
        # every epoch charged once, in the order of its seconds; ours at most workers - 1 epochs past the budget (a
        # peer's trials in other processes a few more: Syne Tune's stop comes after the reports it counts)
        over = workers - 1 if run["method"] in ours else 2 * workers
        assert budget <= run["epochs_spent"] == len(rows) <= budget + over, (run["method"], run["epochs_spent"])
        assert [r[4] for r in rows] == list(range(1, len(rows) + 1)) and [r[3] for r in rows] == sorted(r[3] for r in rows)
        assert all(r[0] in run["configs"] and 1 <= r[1] <= tasks[run["task"]]["max_epochs"] for r in rows)
        assert all(math.isfinite(r[2]) and r[2] > -1e29 for r in rows)  # real losses: never the service's budget sentinel
        if run["task"] == "mf_branin":  # the exact value of every full-fidelity row
            assert len(run["exact"]) == len(rows) and all(
                (e is not None) == (r[1] == 27) for e, r in zip(run["exact"], rows, strict=True)
            )
    service = next(r for r in data["runs"] if r["method"] == "service:default" and r["status"] == "ok")
    assert service["info"]["sampler"] and service["info"]["scheduler"] and positive(service["info"]["phases"]["trials"])
    scores = data["scores"]["tasks"]
    runs = {(r["task"], r["method"]): r for r in data["runs"]}
    for name in tasks:
        task = scores[name]
        assert len(task["epoch_budgets"]) == len(task["second_budgets"]) == 4 and positive(task["reference_seconds"])
        ran = set(methods) - {skipped[1]} if name == skipped[0] else set(methods)
        assert set(task["methods"]) == ran
        for method in ran & {"service:default", "random"}:
            # A final value exactly when the run trained a configuration to the end within the budget: random
            # search always does; the service's ASHA may not in the smoke's 2 trainings' worth of epochs.
            row, run = task["methods"][method], runs[(name, method)]
            budget, top = tasks[name]["budget_epochs"], tasks[name]["max_epochs"]
            reached = any(r[1] == top and r[4] <= budget for r in run["rows"])
            assert reached or method != "random", (name, method)
            assert (row["final_median"] is not None) == reached, (name, method, row)
            assert len(row["curve_epochs"]) >= 4
            if reached:
                assert row["final_median"] >= 0 and row["rank"] >= 1, (name, method, row)
        # the default against the best peer at 4 epoch and 4 second budgets, where the default ran
        assert len(task["spread"].get("default_vs_best_peer", [])) == (0 if name == skipped[0] else 8)
    assert set(data["scores"]["ranks"]["all"]) == set(methods)
    png = Path(data["plot"])
    assert png == folder / "x.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
