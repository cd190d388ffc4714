"""The peer benchmark's tables and PNG, from a results JSON's ``scores`` (``peers.py`` writes both).

    .venv/bin/python benchmarks/peer_report.py benchmarks/results/peers_NAME.json [--png PATH]

Tables: per task, each method's median normalised regret [IQR] at 4 epoch budgets and 4 second
budgets, its final 95 % interval, the epochs it needs to reach the best peer's final median and
that against the best peer's, its rank, and how it compares with the service's default (a
difference only where the Mann-Whitney test calls it); then the mean ranks (tuning tasks,
held-out tasks), the default against the best peer at every budget (issue 19's goal), and every
run that did not run or failed, with why. The PNG: one column per task, anytime curves in epochs
(top) and seconds (bottom), median and IQR band per method.

What must stay true: this file only renders; every figure comes from ``peer_score``.
"""

from __future__ import annotations

import gzip
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C


def escape(text: str) -> str:
    """``text`` safe from rich's markup (a reason naming ``'.[peers]'`` would lose its brackets)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _cell(summary: dict[str, Any]) -> str:
    """``median [q25, q75]``; ``-`` when no seed has an incumbent yet, ``inf (k/n)`` when only k of n have one."""
    if summary["median"] is None:
        return "-" if summary["with_incumbent"] == 0 else f"inf ({summary['with_incumbent']}/{summary['seeds']})"
    q75 = C.fmt(summary["q75"]) if summary["q75"] is not None else "inf"
    return escape(f"{C.fmt(summary['median'])} [{C.fmt(summary['q25'])}, {q75}]")


def _seconds(t: float) -> str:
    return f"{t:.3g} s"


def _versus(scores: dict[str, Any], method: str) -> str:
    if method == scores["spread"].get("reference"):
        return "reference"
    rows = scores["spread"].get("vs_reference", {}).get(method)
    if not rows:
        return "-"
    last = rows[-1]
    return f"{last['verdict']} (p {last['p']:.2g})"


def task_tables(name: str, task: dict[str, Any], scores: dict[str, Any]) -> list[Any]:
    """The task's table in epochs (with the target, ranks and the comparison with the default) and in seconds."""
    held = "held out" if task["held_out"] else "tuning"
    head = f"{name} ({task['kind']}, {held}): normalised regret, median [IQR] over seeds, lower is better"
    columns = [
        "method",
        *(f"{b} ep" for b in scores["epoch_budgets"]),
        "final 95% CI",
        "ep to target",
        "vs best peer",
        "rank",
        "vs default",
    ]
    rows = []
    for method, row in scores["methods"].items():
        ci = row["final_ci95"]
        rows.append(
            [
                method,
                *(_cell(s) for s in row["by_epochs"]),
                f"{C.fmt(ci[0])}..{C.fmt(ci[1]) if ci[1] is not None else 'inf'}",
                row["epochs_to_target"] if row["epochs_to_target"] is not None else "not reached",
                row["speedup_vs_best_peer"],
                row["rank"],
                _versus(scores, method),
            ]
        )
    caption = (
        f"budget {task['budget_epochs']} epochs ({task['max_epochs']} a full training); regret = (value - "
        f"{C.fmt(scores['reference'])}) / {C.fmt(scores['scale'])}; target = the best peer's final median, "
        f"{C.fmt(scores['target'])} ({scores['best_peer'] or 'no peer ran'}); vs best peer = its epochs to target / the "
        "method's; vs default: Mann-Whitney at the full budget"
    )
    by_epochs = C.table(head, columns, rows, caption=caption)
    seconds = [["method", *(_seconds(t) for t in scores["second_budgets"]), "median wall s"]]
    seconds += [[m, *(_cell(s) for s in row["by_seconds"]), row["wall_s_median"]] for m, row in scores["methods"].items()]
    by_seconds = C.table(
        f"{name}: the same against wall-clock seconds since each run began",
        seconds[0],
        seconds[1:],
        caption=f"budgets: fractions of {C.fmt(scores['reference_seconds'])} s, the slowest method's median time to spend its epochs",
    )
    return [by_epochs, by_seconds]


def read_results(path: Path) -> dict[str, Any]:
    """A results JSON, plain or gzip-compressed (``.json.gz``: how a large one is kept in the repository)."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return json.loads(data)


def results_bytes(path: Path, text: str) -> bytes:
    """What :func:`read_results` reads back from ``path``: ``text``, gzip-compressed for a ``.gz`` path."""
    return gzip.compress(text.encode(), mtime=0) if path.suffix == ".gz" else text.encode()


def png_beside(path: Path) -> Path:
    """``x.png`` beside ``x.json`` or ``x.json.gz``."""
    return path.with_name(path.name.removesuffix(".gz")).with_suffix(".png")


def print_tables(payload: dict[str, Any]) -> None:
    console = C.console()
    scores = payload.get("scores") or {}
    tasks = payload["settings"]["tasks"]
    missing = []  # (task, method, why) of every run that did not run or failed, counted
    for name, task in tasks.items():
        runs = [r for r in payload["runs"] if r["task"] == name]
        for method in payload["methods"]:
            bad = Counter(r["status"] for r in runs if r["method"] == method and r["status"] != "ok")
            missing += [[name, method, escape(f"{status} (x{n})")] for status, n in bad.items()]
        if name in scores.get("tasks", {}):
            for table in task_tables(name, task, scores["tasks"][name]):
                console.print(table)
        else:
            console.print(f"{name}: no run finished")
    if missing:
        console.print(C.table("Not run, or failed (never left out)", ["task", "method", "why (runs)"], missing))
    ranks = scores.get("ranks", {})
    groups = [g for g in ("tuning", "held_out", "all") if ranks.get(g)]
    methods = sorted({m for g in groups for m in ranks[g]}, key=lambda m: ranks.get("all", {}).get(m, {}).get("mean_rank", 99))
    rows = [[m, *(_rank(ranks[g].get(m)) for g in groups)] for m in methods]
    console.print(C.table("Mean rank across tasks (by final median; lower is better)", ["method", *groups], rows))
    by_task = scores.get("tasks", {})
    ours = [m for m in methods if m.startswith("service:")]
    if ours and by_task:
        # Each service method is ranked against the peers alone (the other service methods left out).
        n_peers = {n: sum(1 for m in t["methods"] if not m.startswith("service:")) for n, t in by_task.items()}
        cells = []
        for method in ours:
            row = [method]
            for name, task_scores in by_task.items():
                got = task_scores["methods"].get(method)
                row.append("-" if got is None else f"{got.get('rank_among_peers', got['rank']):g} of {n_peers[name] + 1}")
            mean = ranks.get("all", {}).get(method, {}).get("mean_rank_among_peers")
            row.append("-" if mean is None else f"{mean:.2f}")
            cells.append(row)
        heads = [f"{n}{' (held out)' if tasks.get(n, {}).get('held_out') else ''}" for n in by_task]
        console.print(
            C.table(
                "The service's rank against the peers alone, per task (by final median)",
                ["method", *heads, "mean"],
                cells,
            )
        )
    goal_rows = []
    for name, task_scores in scores.get("tasks", {}).items():
        for g in task_scores["spread"].get("default_vs_best_peer", []):
            budget = f"{g['budget']} ep" if g["axis"] == "epochs" else _seconds(g["budget"])
            held = "held out" if tasks[name]["held_out"] else "tuning"
            goal_rows.append([name, held, budget, g["best_peer"], g["median"], g["other_median"], g["p"], g["verdict"]])
    if goal_rows:
        console.print(
            C.table(
                "The default against the best peer at each budget (issue 19's goal: never worse beyond the spread)",
                ["task", "set", "budget", "best peer", "default median", "peer median", "p (Mann-Whitney)", "default is"],
                goal_rows,
            )
        )
    if payload.get("settings", {}).get("adapters") not in (None, "loaded"):
        console.print(f"[yellow]peer adapters: {payload['settings']['adapters']}[/yellow]")


def _rank(row: dict[str, Any] | None) -> str:
    return "-" if row is None else f"{row['mean_rank']:.2f} ({row['tasks']} tasks)"


def plot(payload: dict[str, Any], path: Path) -> Path:
    """One column per task: median normalised regret and its IQR against epochs (top) and seconds (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = payload.get("scores", {}).get("tasks", {})
    names = list(scores) or ["(none)"]
    fig, axes = plt.subplots(2, len(names), figsize=(max(9.0, 4.2 * len(names)), 7.5), squeeze=False)
    colours = plt.get_cmap("tab10")
    methods = list(payload["methods"])
    for col, name in enumerate(names):
        for row, (key, label) in enumerate((("curve_epochs", "epochs"), ("curve_seconds", "seconds"))):
            ax = axes[row][col]
            for i, method in enumerate(methods):
                data = scores.get(name, {}).get("methods", {}).get(method)
                if not data or not data[key]:
                    continue
                pts = [p for p in data[key] if p[2] is not None]
                if not pts:
                    continue
                x = [p[0] for p in pts]
                style = {
                    "color": colours(i % 10),
                    "lw": 2.4 if method == "service:default" else 1.2,
                    "ls": "-" if method.startswith("service:") else "--",
                }
                ax.plot(x, [p[2] for p in pts], label=method, drawstyle="steps-post", **style)
                ax.fill_between(
                    x,
                    [p[1] for p in pts],
                    [p[3] if p[3] is not None else p[2] for p in pts],
                    alpha=0.12,
                    color=style["color"],
                    step="post",
                )
            ax.set_yscale("symlog", linthresh=1e-3)
            if key == "curve_seconds":
                ax.set_xscale("log")
                # a panel spanning under a decade gets a label at every minor tick, drawn over each other
                ax.xaxis.set_minor_formatter(plt.NullFormatter())
            ax.set_xlabel(label)
            held = " (held out)" if payload["settings"]["tasks"].get(name, {}).get("held_out") else ""
            ax.set_title(f"{name}{held}", fontsize=9)
            if col == 0:
                ax.set_ylabel("normalised regret")
    legend: dict[str, Any] = {}  # every method drawn on any panel (one may not run on the first task)
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    handles, labels = list(legend.values()), list(legend)
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), fontsize=8)
    fig.tight_layout(rect=(0, 0.03 * (1 + len(handles) // 5), 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="benchmarks/peer_report.py", description="the peer benchmark's tables and PNG from its JSON"
    )
    parser.add_argument("json", type=Path)
    parser.add_argument("--png", type=Path, help="where the PNG goes (default beside the JSON)")
    args = parser.parse_args()
    payload = read_results(args.json)
    if "scores" not in payload:
        import peer_score

        payload["scores"] = peer_score.score(payload)
    print_tables(payload)
    print(f"PNG: {plot(payload, args.png or png_beside(args.json))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
