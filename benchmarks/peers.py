"""The peer benchmark (issue 19): the service's strategies against the strongest peers, same tasks, same budget.

Every method (``peer_methods``: the service's default and its sampler x scheduler pairs, plain
Optuna with TPE and Hyperband, random search; ``peer_adapters``: Syne Tune, SMAC3, DEHB, when
that module imports) searches every task (``peer_tasks``) at every seed with the same epoch
budget and ``--workers`` trials at once, and charges every epoch it trains to a
``peer_protocol.Ledger``. The scoring (``peer_score``) reads only those ledgers: normalised
regret at 4 budgets in epochs and 4 in seconds (median and IQR over seeds), epochs to the best
peer's final median, ranks across tasks (the held-out tasks apart), and the run-to-run spread.

    .venv/bin/python benchmarks/peers.py [--tasks A,B] [--methods M,N] [--seeds 10] [--budget EPOCHS]
        [--workers 2] [--out PATH] [--resume [--rerun]] [--smoke]
    .venv/bin/python benchmarks/peers.py --report-only PATH.json   # score again, tables and PNG from a JSON

``--methods`` takes names or shell patterns (``'service:*'``). A method whose ``available()``
says why it cannot run here, or that does not suit a task (GP on a space with categories), is
in the JSON and the tables as "not run: <why>", never left out. The JSON is written after
every (task, method, seed) run, with every ledger's rows, so a long run can be followed and,
with ``--resume``, continued or built up in pieces: every finished run already in ``--out``
is kept when the tasks asked for now have the settings they had there (other tasks, methods and
seeds are added beside them); ``--rerun`` runs what is asked for again even where it finished
(a new version of a method, a quieter machine), and drops the runs it replaces.

What must stay true: the methods are charged the same way (``peer_protocol``); the scores
come only from the ledgers' rows in the JSON (``--report-only`` gives the same figures); the
JSON records the machine, the settings of every task (what the results mean) and every run,
failed ones with their error.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C
import peer_report
import peer_score
import peer_tasks
from peer_methods import METHODS as OUR_METHODS
from peer_protocol import Ledger, Method

NAME = "peers"
BUDGET_TRAININGS = 25  # the default budget: this many full trainings' epochs
EXPECTED_PEERS = ("syne_tune", "smac3", "dehb")  # what peer_adapters should bring
SMOKE: dict[str, Any] = {
    "tasks": ("mf_branin", "mlp_breast_cancer"),
    "methods": ("service:default", "optuna:tpe+hyperband", "random"),
    "budget_trainings": 2,
    # one service search only (each costs seconds to start: Ray Tune, its trial actors): on the training task, whose
    # trial code (torch, the task's data) is what must reach Ray's workers
    "service_task": "mlp_breast_cancer",
}


def load_methods() -> tuple[list[Method], str | None]:
    """Ours and the peers' (``peer_adapters.METHODS``); when that module does not import, why."""
    methods: list[Method] = list(OUR_METHODS)
    try:
        import peer_adapters
    except ModuleNotFoundError as exc:
        if exc.name != "peer_adapters":
            return methods, f"peer_adapters does not import: {exc}"
        return methods, "benchmarks/peer_adapters.py is not there"
    except Exception as exc:  # noqa: BLE001 - any failure of the adapters is reported, not fatal
        return methods, f"peer_adapters does not import: {type(exc).__name__}: {exc}"
    methods += list(getattr(peer_adapters, "METHODS", []))
    return methods, None


def select(names: list[str], patterns: str | None) -> list[str]:
    if not patterns:
        return names
    chosen = []
    for pattern in patterns.split(","):
        pattern = pattern.strip()
        hits = [pattern] if pattern in names else [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise SystemExit(f"--methods/--tasks: {pattern!r} matches nothing (known: {', '.join(names)})")
        chosen += [h for h in hits if h not in chosen]
    return chosen


def exact_values(task: Any, rows: list[list[Any]]) -> list[float | None] | None:
    """The noise-free loss of each full-fidelity row's config, where the task knows it (synthetic tasks)."""
    if task.kind != "synthetic":
        return None
    return [task.exact(row[5]) if row[1] == task.max_epochs else None for row in rows]


def compact(rows: list[list[Any]]) -> tuple[list[list[Any]], dict[str, Any]]:
    """Rows without their configs (``[trial, epoch, loss, seconds, spent]``), and each trial's config once; floats
    to 7 significant digits (a full run holds about a million rows)."""
    configs: dict[str, Any] = {}
    for row in rows:
        configs.setdefault(str(row[0]), {k: _short(v) for k, v in row[5].items()})
    return [[str(r[0]), r[1], _short(r[2]), r[3], r[4]] for r in rows], configs


def _short(value: Any) -> Any:
    return float(f"{value:.7g}") if isinstance(value, float) else value


def run_one(method: Method, task: Any, seed: int, budget: int, workers: int) -> dict[str, Any]:
    """One method on one task at one seed: its ledger's rows and what became of it."""
    entry: dict[str, Any] = {"task": task.name, "method": method.name, "seed": seed}
    # When and under what load it ran: a file built up in pieces mixes both, and seconds depend on them.
    entry["started_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with contextlib.suppress(OSError):
        entry["load_at_start"] = round(os.getloadavg()[0], 2)
    why = method.available() or (getattr(method, "unsuited", None) and method.unsuited(task))  # type: ignore[attr-defined]
    if why:
        return {**entry, "status": f"not run: {why}", "rows": [], "configs": {}, "exact": None, "wall_s": None}
    if hasattr(method, "last_info"):
        method.last_info = None
    ledger = Ledger(budget)
    error = None
    try:
        with C.quiet_fds():
            method.run(task, seed, ledger, workers)
        status = "ok"
    except Exception as exc:  # noqa: BLE001 - one method failing is a result, not the end of the benchmark
        status, error = f"failed: {type(exc).__name__}: {exc}", traceback.format_exc()
    wall = time.perf_counter() - ledger.started
    rows = ledger.rows()
    status = "failed: it recorded no epoch" if status == "ok" and not rows else status
    short, configs = compact(rows)
    return {
        **entry,
        "status": status,
        "error": error,
        "wall_s": wall,
        "epochs_spent": len(rows),
        "rows": short,
        "configs": configs,
        "exact": exact_values(task, rows),
        "info": getattr(method, "last_info", None),  # what the method says of its run (the service: phases, strategy)
    }


def warm_up(task: Any) -> None:
    """One epoch of the task in this process, untimed: the imports (torch) and the data load are paid before any method."""
    next(iter(task.curve(peer_tasks.sample_config(task.space, random.Random(0)), 0)))


def dumps(payload: dict[str, Any]) -> str:
    """The JSON: indented, but each run on one line (thousands of rows each)."""
    head = json.dumps({k: v for k, v in payload.items() if k != "runs"}, indent=2, default=str)
    runs = ",\n".join("    " + json.dumps(r, separators=(",", ":"), default=str) for r in payload.get("runs", []))
    return head[:-2] + ',\n  "runs": [\n' + runs + "\n  ]\n}\n"


def write(path: Path, payload: dict[str, Any], *, ran: bool = True) -> None:
    """The JSON, atomically; ``ran``: this process ran the runs, so the load average now is the run's end's."""
    if ran:
        with contextlib.suppress(OSError):
            payload["machine"]["load_avg_at_end"] = os.getloadavg()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(peer_report.results_bytes(path, dumps(payload)))
    tmp.replace(path)


def parse_args() -> argparse.Namespace:
    def extra(p: argparse.ArgumentParser) -> None:
        p.add_argument("--tasks", help=f"comma-separated names or patterns (default all: {', '.join(peer_tasks.TASKS)})")
        p.add_argument("--methods", help="comma-separated names or patterns, e.g. 'service:*,random' (default all)")
        p.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
        p.add_argument("--budget", type=int, help=f"epochs per run (default {BUDGET_TRAININGS} x each task's max_epochs)")
        p.add_argument("--workers", type=int, default=2, help="trials at once (default 2)")
        p.add_argument(
            "--resume",
            action="store_true",
            help="keep every finished run already in --out (its tasks' settings must match) and add what is asked for",
        )
        p.add_argument(
            "--rerun",
            action="store_true",
            help="with --resume: run what is asked for again even where --out has it, dropping those runs "
            "(the file's earlier version keeps them: commit it first)",
        )
        p.add_argument("--report-only", type=Path, metavar="JSON", help="score a results JSON again; tables and PNG")

    return C.parse_args(NAME, __doc__.split("\n\n")[0], extra)


def main() -> int:
    args = parse_args()
    if args.rerun and not args.resume:
        print("--rerun works with --resume (it says which runs of --out to run again); add --resume", file=sys.stderr)
        return 2
    C.quiet_logging()
    if args.report_only:
        done_run = peer_report.read_results(args.report_only)
        done_run["scores"] = peer_score.score(done_run)
        done_run["plot"] = str(peer_report.plot(done_run, peer_report.png_beside(args.report_only)))
        write(args.report_only, done_run, ran=False)  # the machine facts stay the run's
        peer_report.print_tables(done_run)
        print(f"JSON: {args.report_only}")
        return 0

    methods, adapters_note = load_methods()
    by_name = {m.name: m for m in methods}
    smoke_peers_not_run: dict[str, str] = {}
    if args.smoke:
        task_names, method_names, seeds = list(SMOKE["tasks"]), list(SMOKE["methods"]), [0]
        # Every peer too where it can run (its own venv, .venv-peers); where not (CI's venv), the JSON says why.
        ours = {m.name for m in OUR_METHODS}
        for peer in (m for m in methods if m.name not in ours):
            why = peer.available()
            if why is None:
                method_names.append(peer.name)
            else:
                smoke_peers_not_run[peer.name] = why
    else:
        task_names = select(list(peer_tasks.TASKS), args.tasks)
        method_names = select(list(by_name), args.methods)
        seeds = list(range(args.seeds))
    if adapters_note and not args.smoke and not args.methods:
        # the peers could not even be listed: each stands in the results as not run, with the reason
        method_names += [peer for peer in EXPECTED_PEERS if peer not in by_name]
    tasks = {name: peer_tasks.get(name) for name in task_names}
    budgets = {
        name: args.budget or (SMOKE["budget_trainings"] if args.smoke else BUDGET_TRAININGS) * task.max_epochs
        for name, task in tasks.items()
    }
    settings = {
        "tasks": {name: {**task.describe(), "budget_epochs": budgets[name]} for name, task in tasks.items()},
        "seeds": seeds,
        "workers": args.workers,
        "budget_note": "epochs per run; the service's searches stop live once their epochs reach it (peer_methods)",
        "adapters": adapters_note or "loaded",
    }
    if args.smoke:
        settings["smoke_peers_not_run"] = smoke_peers_not_run
    availability = {
        name: (by_name[name].available() if name in by_name else f"not loaded: {adapters_note}") for name in method_names
    }
    payload: dict[str, Any] = {
        "benchmark": NAME,
        "smoke": args.smoke,
        "machine": C.machine(),
        "settings": settings,
        "methods": availability,
        "runs": [],
    }
    if args.resume and args.out.exists():
        old = peer_report.read_results(args.out)
        old_tasks = old.get("settings", {}).get("tasks", {})
        new_tasks = json.loads(json.dumps(settings["tasks"]))
        differs = [
            f"{name}'s {key} {old_tasks[name].get(key)!r} there, {value!r} here"
            for name, task in new_tasks.items()
            if name in old_tasks
            for key, value in task.items()
            if old_tasks[name].get(key) != value
        ]
        if old.get("settings", {}).get("workers") != args.workers:
            differs.append(f"workers {old.get('settings', {}).get('workers')!r} there, {args.workers} here")
        if differs:
            # Refused, not started afresh: a long benchmark's file is not overwritten by a slip of --budget.
            print(
                f"--resume: {args.out} was made with other settings ({'; '.join(differs)}); "
                "pass the same --budget and --workers, or another --out",
                file=sys.stderr,
            )
            return 2
        # Every finished run is kept, asked for now or not, so a long benchmark is built up in pieces
        # (other tasks, methods, seeds); one asked for that did not run is tried again (it may run now).
        wanted = {(t, m, s) for t in task_names for m in method_names for s in seeds}
        # --rerun: one asked for is run again even if it finished (a new version of a method, a quieter machine).
        payload["runs"] = [
            r
            for r in old["runs"]
            if (r["task"], r["method"], r["seed"]) not in wanted or (r["status"] == "ok" and not args.rerun)
        ]
        settings["tasks"] = {**old_tasks, **new_tasks}
        settings["seeds"] = sorted({*old.get("settings", {}).get("seeds", []), *seeds})
        payload["methods"] = {**old.get("methods", {}), **availability}
        print(f"resuming: {len(payload['runs'])} runs kept from {args.out}")
    done = {(r["task"], r["method"], r["seed"]) for r in payload["runs"]}

    if any(n.startswith("service:") and availability[n] is None for n in method_names):
        import ray

        if not ray.is_initialized():  # one local Ray for every service call (as a user's running cluster)
            import logging

            ray.init(
                address="local",
                num_cpus=max(2, args.workers),
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
            )
    todo = [(t, m, s) for s in seeds for t in task_names for m in method_names if (t, m, s) not in done]
    started = time.perf_counter()
    warm = set()
    for i, (task_name, method_name, seed) in enumerate(todo, start=1):
        task = tasks[task_name]
        if task_name not in warm:
            warm_up(task)
            warm.add(task_name)
        if args.smoke and method_name.startswith("service:") and task_name != SMOKE["service_task"]:
            entry = {"task": task_name, "method": method_name, "seed": seed, "rows": [], "configs": {}, "exact": None}
            entry.update(status=f"not run: --smoke runs the service on {SMOKE['service_task']} only", wall_s=None)
        elif method_name in by_name:
            entry = run_one(by_name[method_name], task, seed, budgets[task_name], args.workers)
        else:
            entry = {"task": task_name, "method": method_name, "seed": seed, "status": f"not run: {availability[method_name]}"}
            entry.update(rows=[], configs={}, exact=None, wall_s=None)
        payload["runs"].append(entry)
        write(args.out, payload)
        wall = f"{entry['wall_s']:.1f} s" if entry.get("wall_s") is not None else "-"
        print(
            f"[{i}/{len(todo)} {time.perf_counter() - started:.0f} s] {task_name} seed {seed} {method_name}: "
            f"{entry['status']}, {entry.get('epochs_spent', 0)} epochs, {wall}",
            flush=True,
        )
    payload["scores"] = peer_score.score(payload)
    payload["plot"] = str(peer_report.plot(payload, peer_report.png_beside(args.out)))
    write(args.out, payload)
    peer_report.print_tables(payload)
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
