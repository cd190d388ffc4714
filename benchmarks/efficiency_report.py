"""The sample-efficiency benchmark's output: the figure and the printed tables, from a run's JSON payload.

``plot`` draws each task's best-so-far curves against epochs (per seed thin, the median over
seeds bold; the MLP's re-evaluated curves in a panel of their own) as one PNG; ``print_report``
prints the summary table, the budget sweep, the other way round (``matching``) and the targets.
Both read only the payload (``tasks``, ``settings``, ``targets``, ``total_wall_s``), so
``--report-only`` gives them again from an earlier run's JSON.

What must stay true: nothing here computes a figure the JSON does not hold (the medians, targets
and ratios are ``efficiency_curves``'s, stored in the payload); the labels and colours name every
method and variant a JSON can hold (``efficiency_runs.METHODS`` and ``VARIANTS``).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
from efficiency_curves import RATIO_TARGET, curve_at
from efficiency_runs import VARIANTS

LABELS = {
    "service": "(1) TPE+ASHA",
    "random": "(2) random+FIFO",
    "tune": "(3) Tune default",
}
COLOURS = {"service": "tab:blue", "random": "tab:orange", "tune": "tab:green"}
VARIANT_COLOURS = ("tab:purple", "tab:red", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray", "gold", "lime")
for _i, (_name, _variant) in enumerate(VARIANTS.items()):
    LABELS[_name] = _variant[0]
    COLOURS[_name] = VARIANT_COLOURS[_i % len(VARIANT_COLOURS)]


def panels(tasks: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any], str, dict[str, Any] | None]]:
    """What to draw: (title, task, summary, curve key, matching) per task, plus the MLP's re-evaluated curves."""
    out = []
    for name, task in tasks.items():
        matching = task["summary"].get("matching", {})
        out.append((name, task, task["summary"], "curve", matching.get("one_training")))
        if "reevaluated" in task["summary"]:
            out.append(
                (
                    f"{name}, incumbents re-evaluated",
                    task,
                    task["summary"]["reevaluated"],
                    "reeval_curve",
                    matching.get("reevaluated"),
                )
            )
    return out


def plot(tasks: dict[str, Any], path: Path) -> Path | None:
    """Best-so-far against epochs per method (per seed thin, median bold), one panel per task, as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    drawn = panels(tasks)
    fig, axes = plt.subplots(1, len(drawn), figsize=(5.2 * len(drawn), 4.2), squeeze=False)
    for ax, (name, task, s, key, matching) in zip(axes[0], drawn, strict=True):
        budget, mode = task["budget_epochs"], task["score_mode"]
        xs = list(range(1, budget + 1))
        methods = list(task["seeds"][0]["methods"])
        for method in methods:
            for seed in task["seeds"]:
                ax.step(
                    xs,
                    [math.nan if v is None else v for v in curve_at(seed["methods"][method][key], budget)],
                    where="post",
                    color=COLOURS[method],
                    alpha=0.18,
                    linewidth=0.8,
                )
            median = curve_at(s[method]["median_curve"], budget)
            ax.step(
                xs,
                [math.nan if v is None else v for v in median],
                where="post",
                color=COLOURS[method],
                linewidth=2.2,
                label=f"{LABELS[method]} (reaches target at {s[method]['epochs_to_target'] or '-'})",
            )
        if matching:
            extended = matching["random_budget_epochs"]
            ax.step(
                range(1, extended + 1),
                [math.nan if v is None else v for v in curve_at(matching["random_median_curve"], extended)],
                where="post",
                color=COLOURS["random"],
                linewidth=1.4,
                linestyle="--",
                label=f"{LABELS['random']} given {extended} epochs (reaches the service's best at "
                f"{matching['random_epochs'] or '-'})",
            )
            ax.axhline(
                matching["target"], color=COLOURS["service"], linestyle=":", linewidth=1, label="the service's best at E (median)"
            )
            ax.axvline(budget, color="black", linewidth=0.6)
        if s["target"] is not None:
            ax.axhline(
                s["target"], color="grey", linestyle="--", linewidth=1, label="target: random search's final best (median)"
            )
        if s["random_epochs_to_target"]:
            ax.axvline(
                s["random_epochs_to_target"] / RATIO_TARGET,
                color="grey",
                linestyle=":",
                linewidth=1,
                label=f"1/{RATIO_TARGET:g} of random search's epochs to it",
            )
        if mode == "min":
            ax.set_yscale("log", nonpositive="mask")
            ax.set_ylabel("regret of the best complete trial (lower is better)")
        else:
            # Zoom on where the question is decided: around the target, not the first poor trials.
            values = [v for m in methods for v in curve_at(s[m]["median_curve"], budget) if v is not None]
            values += [v for _, v in matching["random_median_curve"]] if matching else []
            if values and s["target"] is not None:
                top = max(values) + 0.004
                ax.set_ylim(max(0.0, s["target"] - max(0.03, 2 * (top - s["target"]))), min(1.0, top))
            metric = task.get("metric", "score")
            ax.set_ylabel(
                f"incumbent's {metric}, mean over seeds" if key == "reeval_curve" else f"best {metric} (higher is better)"
            )
        ax.set_xlabel("epochs trained (all trials, in trial order)")
        ax.set_title(f"{name}\n{len(task['seeds'])} seed(s), E = {budget} epochs", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right" if mode == "max" else "upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summary_rows(title: str, task: dict[str, Any], s: dict[str, Any], *, verdict: bool) -> list[list[Any]]:
    """One table row per method of a task's summary (or of its re-evaluated summary, which has no trial counts)."""
    rows = []
    for method in task["seeds"][0]["methods"]:
        m = s[method]
        rows.append(
            [
                title if method == "service" else "",
                LABELS[method],
                m["median_score"],
                s["target"] if method == "random" else "",
                m["epochs_to_target"],
                m["ratio_vs_random"],
                m["ratio_vs_budget"],
                C.verdict(m["ratio_vs_random"], RATIO_TARGET, at_most=False) if method == "service" and verdict else "",
                f"{m['seeds_reaching_target']}/{m['seeds']}",
                m["per_seed_median_ratio"],
                num(m.get("median_trials_in_budget")),
                num(m.get("median_complete_in_budget")),
                m.get("wall_s", ""),
            ]
        )
    return rows


def num(value: float | None) -> float | int | None:
    """A median of counts: shown as an integer when it is one."""
    return int(value) if value is not None and float(value).is_integer() else value


def print_report(out: Any, payload: dict[str, Any], png: Path | None) -> None:
    """The tables of a run (or of an earlier run's JSON): the summary, the budget sweep, the other way round, the targets."""
    tasks, settings = payload["tasks"], payload["settings"]
    n_seeds, mlp_seeds = settings["seeds_synthetic"], settings["seeds_mlp"]
    max_steps, mlp_steps = settings["max_steps_synthetic"], settings["max_steps_mlp"]
    reeval_repeats, random_multiple = settings.get("reeval_seeds", 0), settings.get("random_budget_multiple", 1)
    targets, total_s = payload["targets"], payload["total_wall_s"]
    rows = []
    for name, task in tasks.items():
        s = task["summary"]
        rows += summary_rows(f"{name} (E={task['budget_epochs']})", task, s, verdict=task["kind"] == "mlp")
        if "reevaluated" in s:
            rows += summary_rows(f"{name}, re-evaluated ({reeval_repeats} seeds)", task, s["reevaluated"], verdict=True)
    out.print(
        C.table(
            f"Sample efficiency at equal epochs ({n_seeds} seed(s) synthetic, max_steps {max_steps}; {mlp_seeds} MLP, "
            f"{mlp_steps} epochs; 2 CPUs)",
            [
                "task",
                "method",
                "score",
                "target",
                "to target",
                "ratio",
                "E / to",
                "target ≥ 3",
                "seeds reach",
                "per seed",
                "trials",
                "complete",
                "wall s",
            ],
            rows,
            caption="score: median over seeds of the best COMPLETE final value within E (regret on the synthetic functions, "
            "val_accuracy on the MLP). target: random search's final best (its median curve at E). to target: epochs the "
            "method's median best-so-far curve needs to reach it. ratio = random search's epochs to target / the method's "
            "(0: never within E). E / to: the budget over the method's epochs. seeds reach: seeds whose own curve reaches it. "
            "per seed: median over seeds of (epochs random needed for its own best / epochs the method needed). trials, "
            "complete: median kept within E. Synthetic curves f(x) + c/step rank trials exactly at every step (idealised). "
            "re-evaluated: the same, each incumbent valued at its mean over fresh trainer seeds instead of its one training.",
        )
    )
    for name, task in tasks.items():
        s = task["summary"]
        if "by_budget" not in s:
            continue
        again = s.get("reevaluated", {}).get("by_budget", [None] * len(s["by_budget"]))
        out.print(
            C.table(
                f"{name}: the ratio at smaller budgets, read off the same runs (E = {task['budget_epochs']})",
                [
                    "budget (epochs)",
                    "full trainings",
                    "target",
                    "random to it",
                    "service to it",
                    "ratio",
                    "ratio ≥ 3",
                    "re-evaluated target",
                    "random to it",
                    "service to it",
                    "ratio",
                ],
                [
                    [
                        row["budget_epochs"],
                        row["budget_epochs"] // task["max_steps"],
                        row["target"],
                        row["random_epochs_to_target"],
                        row["service"]["epochs_to_target"],
                        row["service"]["ratio_vs_random"],
                        C.verdict(row["service"]["ratio_vs_random"], RATIO_TARGET, at_most=False),
                        *(
                            [
                                r["target"],
                                r["random_epochs_to_target"],
                                r["service"]["epochs_to_target"],
                                r["service"]["ratio_vs_random"],
                            ]
                            if r
                            else ["-"] * 4
                        ),
                    ]
                    for row, r in zip(s["by_budget"], again, strict=False)
                ],
                caption="a run's first B epochs are a run with budget B: random search draws the same configurations in "
                "the same order, TPE and ASHA do not know the budget. target: random search's median best at B; the "
                "service's epochs to reach it on its median curve; ratio = random's / the service's (0: not within B).",
            )
        )
    for name, task in tasks.items():
        matching = task["summary"].get("matching")
        if not matching:
            continue
        out.print(
            C.table(
                f"{name}: epochs random search needs to match the service's best at E = {task['budget_epochs']}",
                [
                    "scored by",
                    "service's best at E",
                    "service epochs to it",
                    "random search epochs to it",
                    "ratio",
                    f"random's best at {random_multiple} E",
                    "ratio ≥ 3",
                ],
                [
                    [
                        {"one_training": "one training", "reevaluated": "re-evaluated"}[key],
                        m["target"],
                        m["service_epochs"],
                        m["random_epochs"] if m["random_epochs"] is not None else f"never in {m['random_budget_epochs']}",
                        m["ratio"] if m["ratio"] is not None else f"> {m['ratio_at_least']:.2f}",
                        m["random_final"],
                        C.verdict(m["ratio"] if m["ratio"] is not None else m["ratio_at_least"], RATIO_TARGET, at_most=False),
                    ]
                    for key, m in matching.items()
                ],
                caption="the other way round from the table above: the service's median best-so-far curve at E is the "
                "target; random search, given more epochs, needs this many to reach it (medians over seeds). re-evaluated: "
                "each incumbent at its mean over fresh trainer seeds.",
            )
        )
    out.print(C.table("Targets", ["target", "met"], [[k, v] for k, v in targets.items()], caption=f"total {total_s:.0f} s"))
    if png:
        out.print(f"Plot: {png}")
