"""The peer benchmark's scoring (issue 19): pure arithmetic on ledger rows, nothing run.

Input: each run's ledger rows (``peer_protocol.Ledger.rows``: ``[trial, epoch, loss, seconds,
spent, config]`` in the order of their seconds, ``spent`` the cumulative epochs) and, for a
synthetic task, the noise-free loss of each row's config (``exact``, aligned with the rows,
``None`` where unknown). Output (``score``): per task and method, the normalised regret's median
and interquartile range over seeds at 4 budgets in epochs and 4 in seconds, dense anytime curves
for the plot, the epochs each method needs to reach the best peer's final median, ranks across
tasks, and the run-to-run spread with the differences it allows to be called.

Definitions (what must stay true; tests/benchmarks/test_peer_score.py checks them by hand):

- **incumbent at budget B** (epochs): among a run's rows with ``spent <= B`` at ``epoch ==
  max_epochs``, the one with the lowest loss (the first of equals); at a budget of T seconds,
  the same among rows with ``seconds <= T`` (and ``spent <=`` the run's epoch budget). Its
  **value** is its exact loss where the task gives one, else its loss. Before a run's first
  full-fidelity row there is no incumbent: its regret is +inf, the worst (a median may then be
  inf; the JSON writes ``None``);
- **normalised regret** = (value - reference) / scale: for a synthetic task the reference is the
  known optimum and the scale the task's own (median regret of uniform random configurations);
  for a training task the reference is the lowest full-fidelity loss any run of any method
  recorded within budget, and the scale the median of random search's full-fidelity losses
  (every method's when random search did not run) minus that reference;
- **peers** are the methods whose name does not start with ``service:``; the **target** is the
  best (lowest) final median among the peers; a method's **epochs to target** is the first whole
  epoch at which its median curve is at or under the target; ``speedup_vs_best_peer`` = the best
  peer's epochs to target / the method's (> 1: it needs fewer epochs);
- **ranks** per task by final median (ties share the mean rank), averaged over the tasks a method
  ran on, separately for the tuning tasks and the held-out ones; ``rank_among_peers`` is a
  method's rank among itself and the peers only (the service's other variants left out);
- **spread**: a 95 % bootstrap interval of each final median (``BOOTSTRAP`` resamples, seeded),
  and a two-sided Mann-Whitney U test (normal approximation with tie and continuity corrections)
  of each method against the reference method and of the reference against the best peer at
  every budget; a difference is called only when p < ``ALPHA``, else "within the spread".
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

EPOCH_FRACTIONS = (0.125, 0.25, 0.5, 1.0)  # the table's budgets, as fractions of the epoch budget
SECOND_FRACTIONS = (0.125, 0.25, 0.5, 1.0)  # and of the task's reference seconds (``reference_seconds``)
CURVE_POINTS = 64  # points of the plotted anytime curves
BOOTSTRAP = 2000
BOOTSTRAP_SEED = 0
ALPHA = 0.05
REFERENCE_METHOD = "service:default"
INF = math.inf

Steps = list[tuple[int, float, float]]  # (spent epochs, seconds, incumbent value), one per new incumbent


# ---------------------------------------------------------------- one run


def incumbent_steps(
    rows: Sequence[Sequence[Any]], max_epochs: int, budget: int, exact: Sequence[float | None] | None = None
) -> Steps:
    """The run's incumbents in order: a step each time a full-fidelity row within ``budget`` beats the best loss so far."""
    steps: Steps = []
    best = INF
    for i, row in enumerate(rows):
        _trial, epoch, loss, seconds, spent = row[:5]
        if spent > budget:
            break
        if epoch != max_epochs or loss is None or not loss < best:
            continue
        best = float(loss)
        known = exact[i] if exact is not None else None
        steps.append((int(spent), float(seconds), best if known is None else float(known)))
    return steps


def value_at(steps: Steps, x: float, axis: str = "epochs") -> float:
    """The incumbent's value at ``x`` epochs (or seconds); +inf before the first."""
    k = 0 if axis == "epochs" else 1
    value = INF
    for step in steps:
        if step[k] > x:
            break
        value = step[2]
    return value


def end_seconds(rows: Sequence[Sequence[Any]], budget: int) -> float | None:
    """When the run had spent its budget (the seconds of its last row within it)."""
    within = [row[3] for row in rows if row[4] <= budget]
    return float(within[-1]) if within else None


# ---------------------------------------------------------------- statistics


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default), +inf-aware: inf once an inf neighbour has weight."""
    xs = sorted(values)
    if not xs:
        return math.nan
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    frac = pos - lo
    if frac == 0 or xs[lo] == xs[hi]:
        return xs[lo]
    if math.isinf(xs[hi]) or math.isinf(xs[lo]):
        return INF
    return xs[lo] + frac * (xs[hi] - xs[lo])


def median(values: Sequence[float]) -> float:
    return quantile(values, 0.5)


def bootstrap_median_ci(
    values: Sequence[float], n: int = BOOTSTRAP, seed: int = BOOTSTRAP_SEED, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the median (seeded: the same values give the same interval)."""
    if not values:
        return (math.nan, math.nan)
    rng = random.Random(seed)
    k = len(values)
    meds = sorted(median([values[rng.randrange(k)] for _ in range(k)]) for _ in range(n))
    tail = (1 - level) / 2
    return quantile(meds, tail), quantile(meds, 1 - tail)


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test: ``(U of a, p)``; normal approximation with tie and continuity corrections.

    ``U`` counts the pairs where ``a`` is larger (ties a half); p = 1 when either sample is empty or all values tie.
    """
    n1, n2 = len(a), len(b)
    if not n1 or not n2:
        return (math.nan, 1.0)
    r = ranks([*a, *b])
    u1 = sum(r[:n1]) - n1 * (n1 + 1) / 2
    n = n1 + n2
    ties = _tie_counts([*a, *b])
    var = n1 * n2 / 12 * ((n + 1) - sum(t**3 - t for t in ties) / (n * (n - 1)))
    if var <= 0:
        return (u1, 1.0)
    z = (abs(u1 - n1 * n2 / 2) - 0.5) / math.sqrt(var)
    return (u1, min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2))))


def _tie_counts(values: Iterable[float]) -> list[int]:
    counts: dict[float, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return [c for c in counts.values() if c > 1]


def compare(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> dict[str, Any]:
    """``a`` against ``b`` (regrets: lower is better): medians, their difference, p, and the verdict."""
    _, p = mann_whitney(a, b)
    ma, mb = median(a), median(b)
    verdict = ("better" if ma < mb else "worse" if ma > mb else "different") if p < alpha else "within the spread"
    return {"median": finite(ma), "other_median": finite(mb), "p": p, "verdict": verdict}


def finite(x: float | None) -> float | None:
    """``x`` for the JSON: ``None`` unless a finite number."""
    return float(x) if x is not None and math.isfinite(x) else None


# ---------------------------------------------------------------- a task


def reference_and_scale(task: Mapping[str, Any], runs: Sequence[Mapping[str, Any]]) -> tuple[float, float]:
    """What a task's regret is measured from and in: the optimum and the task's scale (synthetic),
    or the best full-fidelity loss seen in any run and the median random-search loss above it (training)."""
    if task.get("optimum") is not None and task.get("scale"):
        return float(task["optimum"]), float(task["scale"])
    max_epochs, budget = int(task["max_epochs"]), int(task["budget_epochs"])
    full: dict[str, list[float]] = {}
    for run in runs:
        for row in run.get("rows") or []:
            if row[4] <= budget and row[1] == max_epochs and row[2] is not None:
                full.setdefault(run["method"], []).append(float(row[2]))
    everything = [v for values in full.values() for v in values]
    if not everything:
        return (0.0, 1.0)
    best = min(everything)
    typical = median(full.get("random") or everything) - best
    return best, typical if typical > 0 else 1.0


def reference_seconds(runs: Sequence[Mapping[str, Any]], budget: int) -> float | None:
    """The task's seconds axis: the slowest method's median (over its runs) of when each run spent its epoch budget.

    The slowest, so that every method's whole run is on the axis: on a synthetic task plain Optuna
    spends its epochs in milliseconds and the service in seconds (its trials start in Ray's workers).
    """
    ends: dict[str, list[float]] = {}
    for run in runs:
        end = end_seconds(run.get("rows") or [], budget)
        if end is not None:
            ends.setdefault(run["method"], []).append(end)
    return max((median(v) for v in ends.values()), default=None)


def score_task(task: Mapping[str, Any], runs: Sequence[Mapping[str, Any]], methods: Sequence[str]) -> dict[str, Any]:
    """Every figure of one task from its runs (``{"method", "seed", "status", "rows", "exact"}``; only "ok" runs count)."""
    ok = [r for r in runs if r.get("status") == "ok"]
    budget, max_epochs = int(task["budget_epochs"]), int(task["max_epochs"])
    ref, scale = reference_and_scale(task, ok)
    t_ref = reference_seconds(ok, budget)
    epoch_budgets = [max(1, round(budget * f)) for f in EPOCH_FRACTIONS]
    second_budgets = [t_ref * f for f in SECOND_FRACTIONS] if t_ref else []
    epoch_grid = sorted({max(1, round(budget * (i + 1) / CURVE_POINTS)) for i in range(CURVE_POINTS)})
    # the plotted seconds: geometric from the earliest first epoch to the latest end (from ms to tens of seconds)
    t_max = max((end_seconds(r["rows"], budget) or 0.0 for r in ok), default=0.0)
    t_min = min((float(r["rows"][0][3]) for r in ok if r["rows"] and r["rows"][0][3] > 0), default=t_max)
    ratio = (t_max / t_min) ** (1 / (CURVE_POINTS - 1)) if t_min and t_max > t_min else 1.0
    second_grid = [t_min * ratio**i for i in range(CURVE_POINTS)] if t_max else []

    per_method: dict[str, dict[str, Any]] = {}
    regrets: dict[str, dict[str, list[list[float]]]] = {}
    for method in methods:
        mruns = sorted((r for r in ok if r["method"] == method), key=lambda r: r["seed"])
        if not mruns:
            continue
        steps = [incumbent_steps(r["rows"], max_epochs, budget, r.get("exact")) for r in mruns]

        def norm(v: float) -> float:
            return (v - ref) / scale if math.isfinite(v) else INF

        by_epochs = [[norm(value_at(s, b)) for s in steps] for b in epoch_budgets]
        by_seconds = [[norm(value_at(s, t, "seconds")) for s in steps] for t in second_budgets]
        every_epoch = [[norm(value_at(s, e)) for s in steps] for e in range(1, budget + 1)]
        regrets[method] = {"epochs": by_epochs, "seconds": by_seconds, "every_epoch": every_epoch}
        final = by_epochs[-1]
        low, high = bootstrap_median_ci(final)
        per_method[method] = {
            "seeds": [r["seed"] for r in mruns],
            "final_regrets": [finite(v) for v in final],
            "final_median": finite(median(final)),
            "final_ci95": [finite(low), finite(high)],
            "by_epochs": [_summary(b, v) for b, v in zip(epoch_budgets, by_epochs, strict=True)],
            "by_seconds": [_summary(t, v) for t, v in zip(second_budgets, by_seconds, strict=True)],
            "curve_epochs": [
                [e, *(finite(quantile([norm(value_at(s, e)) for s in steps], q)) for q in (0.25, 0.5, 0.75))] for e in epoch_grid
            ],
            "curve_seconds": [
                [t, *(finite(quantile([norm(value_at(s, t, "seconds")) for s in steps], q)) for q in (0.25, 0.5, 0.75))]
                for t in second_grid
            ],
            "wall_s_median": finite(median([float(r.get("wall_s") or 0.0) for r in mruns])),
            "epochs_spent_median": finite(median([float(min(budget, len(r["rows"]))) for r in mruns])),
        }

    # the best peer's final median, and the epochs each method needs to reach it
    peers = [m for m in per_method if not m.startswith("service:")]
    finals = {m: median(regrets[m]["epochs"][-1]) for m in per_method}
    target = min((finals[m] for m in peers), default=INF)
    best_peer = min(peers, key=lambda m: finals[m]) if peers else None
    for method, row in per_method.items():
        row["epochs_to_target"] = _first_reach([median(v) for v in regrets[method]["every_epoch"]], target)
    peer_epochs = per_method[best_peer]["epochs_to_target"] if best_peer else None
    for row in per_method.values():
        row["speedup_vs_best_peer"] = peer_epochs / row["epochs_to_target"] if peer_epochs and row["epochs_to_target"] else None

    final_values = [finals[m] for m in per_method]
    for method, rank in zip(per_method, ranks(final_values), strict=True):
        per_method[method]["rank"] = rank
    # each method's rank against the peers alone: the service's variants do not push the peers down
    for method, row in per_method.items():
        field = [finals[method], *(finals[p] for p in peers if p != method)]
        row["rank_among_peers"] = ranks(field)[0]

    spread: dict[str, Any] = {}
    if REFERENCE_METHOD in regrets:
        base = regrets[REFERENCE_METHOD]
        spread["reference"] = REFERENCE_METHOD
        spread["vs_reference"] = {
            m: [compare(regrets[m]["epochs"][i], base["epochs"][i]) for i in range(len(epoch_budgets))]
            for m in per_method
            if m != REFERENCE_METHOD
        }
        # the goal (issue 19, item 4): the default against the best peer at every budget, epochs and seconds
        goal = []
        for axis, budgets in (("epochs", epoch_budgets), ("seconds", second_budgets)):
            for i, b in enumerate(budgets):
                if not peers:
                    break
                best = min(peers, key=lambda m: median(regrets[m][axis][i]))
                goal.append({"axis": axis, "budget": b, "best_peer": best, **compare(base[axis][i], regrets[best][axis][i])})
        spread["default_vs_best_peer"] = goal

    return {
        "reference": ref,
        "scale": scale,
        "reference_seconds": t_ref,
        "epoch_budgets": epoch_budgets,
        "second_budgets": second_budgets,
        "target": finite(target),
        "best_peer": best_peer,
        "methods": per_method,
        "spread": spread,
    }


def _summary(budget: float, values: Sequence[float]) -> dict[str, Any]:
    return {
        "budget": budget,
        "median": finite(median(values)),
        "q25": finite(quantile(values, 0.25)),
        "q75": finite(quantile(values, 0.75)),
        "with_incumbent": sum(math.isfinite(v) for v in values),
        "seeds": len(values),
    }


def _first_reach(curve: Sequence[float], target: float) -> int | None:
    """The first epoch (1-based) at which ``curve`` is at or under ``target``; ``None`` if never (or no target)."""
    if not math.isfinite(target):
        return None
    for epoch, value in enumerate(curve, start=1):
        if value <= target:
            return epoch
    return None


# ---------------------------------------------------------------- every task


def mean_ranks(tasks: Mapping[str, Mapping[str, Any]], scores: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Each method's mean rank over the tuning tasks, the held-out ones, and all (with how many tasks each counts)."""
    out: dict[str, Any] = {}
    for group, keep in (("tuning", lambda t: not t["held_out"]), ("held_out", lambda t: t["held_out"]), ("all", lambda t: True)):
        collected: dict[str, list[float]] = {}
        for name, task in tasks.items():
            if name not in scores or not keep(task):
                continue
            for method, row in scores[name]["methods"].items():
                collected.setdefault(method, []).append((row["rank"], row.get("rank_among_peers", row["rank"])))
        out[group] = {
            m: {
                "mean_rank": sum(r for r, _ in ranked) / len(ranked),
                "mean_rank_among_peers": sum(p for _, p in ranked) / len(ranked),
                "tasks": len(ranked),
            }
            for m, ranked in sorted(collected.items())
        }
    return out


def score(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The scores of a results JSON (``settings.tasks``, ``methods``, ``runs``): per task, then ranks across tasks."""
    tasks = payload["settings"]["tasks"]
    methods = list(payload["methods"])
    per_task = {}
    for name, task in tasks.items():
        runs = [r for r in payload["runs"] if r["task"] == name]
        if any(r.get("status") == "ok" for r in runs):
            per_task[name] = score_task(task, runs, methods)
    return {"tasks": per_task, "ranks": mean_ranks(tasks, per_task)}
