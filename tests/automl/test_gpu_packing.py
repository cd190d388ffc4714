"""Fractional GPU requests reach Ray's scheduler: trials pack onto a GPU by their share of it.

Runs without a GPU: a separate Ray is started with one GPU it believes it has (``num_gpus=1``),
which is enough for Ray's resource accounting, the part this tests. Each trial logs when it
ran and the GPU ids Ray granted it; the search asks for more concurrent trials than the GPU
holds, so only the GPU request can keep them apart. (On a real GPU, tests/automl/test_gpu.py
checks that the tensors land on CUDA; benchmarks/scaling.py measures the packing's throughput.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json, logging, os, sys, time, uuid

    import ray

    import automl

    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)

    def logging_trial(log_dir):
        def trial(params, ctx):
            start = time.time()
            time.sleep(1.0)
            with open(os.path.join(log_dir, uuid.uuid4().hex + ".json"), "w") as handle:
                json.dump({"start": start, "end": time.time(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
                           "device": ctx.device}, handle)
            return float(params["x"])
        return trial

    root, counts = sys.argv[1], {}
    for share in sys.argv[2:]:  # one Ray start for every share
        log_dir = os.path.join(root, share)
        os.makedirs(log_dir)
        result = automl.search(
            logging_trial(log_dir), {"x": {"type": "float", "low": 0.0, "high": 1.0}}, n_trials=4, max_steps=1,
            metric="x", scheduler="fifo", max_concurrent=4, cpus_per_trial=0.25, gpus_per_trial=float(share),
            name="gpu-packing-" + share, plots=False,  # no plotter to wait for at exit: not what this tests
        )
        counts[share] = result.state_counts
    print(json.dumps(counts))
    """
)


def peak_overlap(spans: list[tuple[float, float]]) -> int:
    """The most intervals that hold one instant together."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda ev: (ev[0], ev[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def test_peak_overlap_counts_intervals_that_meet() -> None:
    assert peak_overlap([(0, 1), (1, 2)]) == 1  # one ends as the next starts
    assert peak_overlap([(0, 3), (1, 2), (1.5, 4)]) == 3
    assert peak_overlap([]) == 0


SHARES = ("1.0", "0.5")


@pytest.fixture(scope="module")
def packed_trials(tmp_path_factory: pytest.TempPathFactory) -> dict[float, list[dict]]:
    """Every share's 4 trials, as they logged themselves, from one subprocess and one Ray start."""
    root = tmp_path_factory.mktemp("gpu-packing")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "AUTOML_STORAGE_URL", "AUTOML_DB_URL")
    }
    env["AUTOML_HOME"] = str(root / "home")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(root / "trials"), *SHARES],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts == {share: {"COMPLETE": 4} for share in SHARES}, done.stdout[-2000:]
    return {float(share): [json.loads(f.read_text()) for f in (root / "trials" / share).glob("*.json")] for share in SHARES}


@pytest.mark.parametrize(("gpus_per_trial", "most_at_once"), [(1.0, 1), (0.5, 2)])
def test_gpu_share_limits_how_many_trials_run_at_once(
    gpus_per_trial: float, most_at_once: int, packed_trials: dict[float, list[dict]]
) -> None:
    trials = packed_trials[gpus_per_trial]
    assert len(trials) == 4
    # Ray granted every trial the one GPU (id 0), which tells the trial it has one; CUDA is
    # not there, so the trial's device falls back to the CPU instead of failing.
    assert all(t["gpu_ids"] == ["0"] for t in trials), trials
    assert all(t["device"] == "cpu" for t in trials) or all(t["device"] == "cuda" for t in trials), trials
    # 4 trials could run at once by their CPU share and the search's limit; the GPU share allows fewer.
    assert peak_overlap([(t["start"], t["end"]) for t in trials]) <= most_at_once, trials
