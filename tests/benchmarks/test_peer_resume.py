"""``benchmarks/peers.py --resume`` builds one results JSON up in pieces: other tasks, methods and
seeds are added beside the runs already there, and the scores cover them all. The JSON here is
gzip-compressed (``.json.gz``), as a large one is kept in the repository."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from peer_report import read_results as read  # noqa: E402


def peers(out: Path, *args: str, budget: int = 54, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "peers.py"), "--budget", str(budget), "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=check,
    )


def test_resume_adds_tasks_methods_and_seeds_beside_the_runs_kept(tmp_path: Path) -> None:
    out = tmp_path / "peers.json.gz"
    peers(out, "--tasks", "mf_branin", "--methods", "random", "--seeds", "1")
    first = read(out)
    kept_rows = first["runs"][0]["rows"]

    done = peers(out, "--tasks", "mf_hartmann3,mf_branin", "--methods", "optuna:tpe+hyperband", "--seeds", "2", "--resume")
    assert "resuming: 1 runs kept" in done.stdout
    data = read(out)
    runs = {(r["task"], r["method"], r["seed"]): r for r in data["runs"]}
    assert set(runs) == {
        ("mf_branin", "random", 0),
        *((task, "optuna:tpe+hyperband", seed) for task in ("mf_branin", "mf_hartmann3") for seed in (0, 1)),
    }
    assert runs["mf_branin", "random", 0]["rows"] == kept_rows  # kept, not run again
    assert set(data["settings"]["tasks"]) == {"mf_branin", "mf_hartmann3"} and data["settings"]["seeds"] == [0, 1]
    branin = data["scores"]["tasks"]["mf_branin"]["methods"]
    assert set(branin) == {"random", "optuna:tpe+hyperband"}
    assert branin["random"]["rank_among_peers"] in (1, 1.5, 2)
    assert (tmp_path / "peers.png").exists()

    # --rerun: what is asked for runs again though it finished (the others are kept as they are)
    done = peers(out, "--tasks", "mf_branin", "--methods", "random", "--seeds", "1", "--resume", "--rerun")
    assert "resuming: 4 runs kept" in done.stdout and "[1/1" in done.stdout and "mf_branin seed 0 random: ok" in done.stdout
    rerun = read(out)
    assert len(rerun["runs"]) == 5 and [r["method"] for r in rerun["runs"]].count("random") == 1
    assert rerun["runs"][-1]["method"] == "random" and "load_at_start" in rerun["runs"][-1]

    # a task asked for with other settings (another budget) is refused: the file is neither mixed nor overwritten
    before = out.read_bytes()
    refused = peers(out, "--tasks", "mf_branin", "--methods", "random", "--seeds", "1", "--resume", budget=27, check=False)
    assert refused.returncode == 2 and "mf_branin's budget_epochs 54 there, 27 here" in refused.stderr
    assert "[1/" not in refused.stdout and out.read_bytes() == before
    # --rerun alone would say nothing of which file's runs to run again: refused
    alone = peers(out, "--tasks", "mf_branin", "--methods", "random", "--seeds", "1", "--rerun", check=False)
    assert alone.returncode == 2 and "add --resume" in alone.stderr and out.read_bytes() == before
