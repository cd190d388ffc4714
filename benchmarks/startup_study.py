"""The start-up study (issue 14): TPE's and GP's random first trials, sized by a job's trial budget or not.

Reached through ``benchmarks/sample_efficiency.py --startup-budgets B,B`` (with ``--startup-resume``,
``--startup-variants``, ``--startup-mlp-variants``; ``--report-only`` on its JSON prints its tables
again). Random search, TPE and GP with Optuna's 10 start-up trials, and TPE and GP with a start-up of
``startup_by_budget(B)`` trials (and that many drawn from a Sobol sequence, ``*_budget_qmc``), each
run at budgets of B trials, paired by seed, every one with the service's default scheduler (ASHA).
Per budget and variant: the median score over seeds, and seed by seed against the same sampler
with Optuna's 10 (wins, losses, a two-sided sign test).

Here: the variants and the rule, the ``tpe+qmc``/``gp+qmc`` samplers registered for this process
only, one seed's runs, the summary, the tables and the run. The tasks, the service calls and the
budget cut are the main study's (``efficiency_tasks``, ``efficiency_runs``, ``efficiency_curves``).

What must stay true: a variant with Optuna's default start-up does not know the budget, so it
runs once at the largest budget and is cut at the smaller ones (its first B trials); the others
run once per budget. The JSON (``benchmark: sample_efficiency_startup``) is written after every
seed, so a stopped run keeps what it measured and ``--startup-resume`` runs only the rest; its
default path is not the main study's.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
from efficiency_curves import better, summarise
from efficiency_runs import TaskRun, retrain
from efficiency_tasks import KINDS, MLP_DATASET, MLP_TASK, SYNTHETIC, kind

STARTUP_DEFAULT = 10  # Optuna's n_startup_trials for TPE and GP
# name -> (label, sampler, start-up). Every variant runs the service's default scheduler (ASHA), so only
# the sampler differs. "default": Optuna's 10 random start-up draws (the variant does not know the budget,
# so one run at the largest budget is cut at the smaller ones); "budget": startup_by_budget(trials) random
# draws; "budget_qmc": as many points of a scrambled Sobol sequence (Optuna's QMCSampler), then the model.
STARTUP_VARIANTS: dict[str, tuple[str, str, str]] = {
    "random": ("random search", "random", "default"),
    "tpe": ("TPE, 10 random start-up (Optuna's default)", "tpe", "default"),
    "tpe_budget": ("TPE, start-up by budget", "tpe", "budget"),
    "tpe_budget_qmc": ("TPE, start-up by budget, Sobol", "tpe", "budget_qmc"),
    "gp": ("GP, 10 random start-up (Optuna's default)", "gp", "default"),
    "gp_budget": ("GP, start-up by budget", "gp", "budget"),
    "gp_budget_qmc": ("GP, start-up by budget, Sobol", "gp", "budget_qmc"),
}
STARTUP_SYNTHETIC_VARIANTS = ("random", "tpe", "tpe_budget", "tpe_budget_qmc", "gp", "gp_budget")
STARTUP_MLP_VARIANTS = ("random", "tpe", "tpe_budget", "gp", "gp_budget")


def startup_by_budget(trials: int) -> int:
    """The candidate rule: a quarter of the budget, at least 2 and at most Optuna's 10."""
    return max(2, min(STARTUP_DEFAULT, trials // 4))


def startup_baseline(variant: str) -> str | None:
    """What a variant is compared with, seed by seed: the same sampler with Optuna's default start-up."""
    return variant.split("_")[0] if "_" in variant else None


def register_qmc_start() -> None:
    """Make ``tpe+qmc`` and ``gp+qmc`` known to the sampler registry, in this process only: the sampler's
    own proposals after ``n_startup_trials`` points of Optuna's QMCSampler (scrambled Sobol, the job seed).

    The start-up lasts while the trials the sampler itself counts are fewer than ``n_startup_trials``:
    COMPLETE and PRUNED ones for TPE, COMPLETE ones only for GP (as Optuna's samplers count them)."""
    from optuna.samplers import BaseSampler, QMCSampler
    from optuna.trial import TrialState

    from automl.engine.samplers import SAMPLERS, SamplerRequest

    class QmcStart(BaseSampler):
        def __init__(self, main: Any, n_startup: int, states: tuple[Any, ...], seed: int) -> None:
            self.main, self.n_startup, self.states = main, n_startup, states
            self.qmc = QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False)

        def _which(self, study: Any) -> Any:
            return self.qmc if len(study.get_trials(deepcopy=False, states=self.states)) < self.n_startup else self.main

        def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
            return self._which(study).infer_relative_search_space(study, trial)

        def sample_relative(self, study: Any, trial: Any, search_space: Any) -> Any:
            return self._which(study).sample_relative(study, trial, search_space)

        def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
            return self._which(study).sample_independent(study, trial, name, distribution)

        def before_trial(self, study: Any, trial: Any) -> None:
            self.main.before_trial(study, trial)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            self.main.after_trial(study, trial, state, values)

    def factory(base: str, states: tuple[Any, ...]) -> Callable[[SamplerRequest], Any]:
        def build(req: SamplerRequest) -> Any:
            return QmcStart(SAMPLERS[base](req), int(req.options["n_startup_trials"]), states, req.seed)

        return build

    SAMPLERS["tpe+qmc"] = factory("tpe", (TrialState.COMPLETE, TrialState.PRUNED))
    SAMPLERS["gp+qmc"] = factory("gp", (TrialState.COMPLETE,))


def startup_sampler(variant: str, trials: int) -> tuple[str, dict[str, Any]]:
    """The registry name and options a variant runs with at a budget of ``trials`` (the count always explicit)."""
    _, sampler, startup = STARTUP_VARIANTS[variant]
    if sampler == "random":
        return "random", {}
    n = STARTUP_DEFAULT if startup == "default" else startup_by_budget(trials)
    return (f"{sampler}+qmc" if startup == "budget_qmc" else sampler), {"n_startup_trials": n}


def startup_runs(
    variant: str, budgets: list[int], run: Callable[[str, dict[str, Any], int], list[dict[str, Any]]]
) -> dict[int, list[dict[str, Any]]]:
    """A variant's trials at every budget: one run cut at each budget when it does not depend on it."""
    if STARTUP_VARIANTS[variant][2] == "default":
        sampler, options = startup_sampler(variant, max(budgets))
        trials = run(sampler, options, max(budgets))
        return {b: trials[:b] for b in budgets}
    return {b: run(*startup_sampler(variant, b), b) for b in budgets}


def startup_seed(run: TaskRun, budgets: list[int], variants: tuple[str, ...], reeval_repeats: int = 0) -> dict[str, Any]:
    """One seed of a task: each variant's score after each budget of trials (regret, or best val_accuracy), and
    (MLP, ``reeval_repeats``) its final pick's mean over that many fresh trainer seeds (``reeval_score``)."""

    def search(sampler: str, options: dict[str, Any], n: int) -> list[dict[str, Any]]:
        return run.search(sampler, "asha", n, options)[1]

    out: dict[str, Any] = {}
    picks: dict[str, dict[str, Any]] = {}
    for variant in variants:
        for b, trials in startup_runs(variant, budgets, search).items():
            r = summarise(trials, 10**9, run.mode, 0.0, shift=run.shift)
            out.setdefault(str(b), {})[variant] = {
                "score": r["score"],
                "complete": r["complete_in_budget"],
                "trials": len(trials),
            }
            if r["incumbents"]:
                picks[f"{b}/{variant}"] = r["incumbents"][-1]
    if reeval_repeats and picks:
        keys = list(picks)
        scores = retrain(
            [picks[k] for k in keys], repeats=reeval_repeats, max_steps=run.max_steps, job_seed=run.seed, workdir=run.workdir
        )
        for key, values in zip(keys, scores, strict=True):
            b, variant = key.split("/")
            good = [v for v in values if v is not None]
            out[b][variant]["reeval_score"] = statistics.fmean(good) if good else None
    return out


def sign_test_p(wins: int, losses: int) -> float | None:
    """Two-sided sign test: the chance of a split at least this uneven if neither side were better (ties left out)."""
    n = wins + losses
    if n == 0:
        return None
    k = min(wins, losses)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def startup_summary(seeds: list[dict[str, Any]], mode: str, score: str = "score") -> dict[str, Any]:
    """Per budget and variant: the median score and quartiles over seeds, and seed by seed against its baseline
    (wins, losses, the sign test, and the median ratio of regrets (min) or difference of accuracies (max))."""
    out: dict[str, Any] = {}
    for b in seeds[0]["runs"]:
        rows: dict[str, Any] = {}
        for variant in seeds[0]["runs"][b]:
            values = [s["runs"][b][variant].get(score) for s in seeds]
            good = sorted(v for v in values if v is not None)
            row: dict[str, Any] = {
                "median": C.median(good) if good else None,
                "seeds": len(good),
                "q1": statistics.quantiles(good, n=4)[0] if len(good) > 1 else None,
                "q3": statistics.quantiles(good, n=4)[2] if len(good) > 1 else None,
                "median_complete": C.median([s["runs"][b][variant]["complete"] for s in seeds]),
            }
            base = startup_baseline(variant)
            if base in seeds[0]["runs"][b]:
                pairs = [(v, s["runs"][b][base].get(score)) for v, s in zip(values, seeds, strict=True)]
                pairs = [(v, w) for v, w in pairs if v is not None and w is not None]
                wins = sum(better(v, w, mode) and v != w for v, w in pairs)
                losses = sum(better(w, v, mode) and v != w for v, w in pairs)
                row.update(
                    {
                        "baseline": base,
                        "wins": wins,
                        "losses": losses,
                        "ties": len(pairs) - wins - losses,
                        "sign_test_p": sign_test_p(wins, losses),
                    }
                )
                if mode == "min":
                    ratios = [v / w for v, w in pairs if w > 0]
                    row["median_ratio_to_baseline"] = C.median(ratios) if ratios else None
                else:
                    row["median_difference_to_baseline"] = C.median([v - w for v, w in pairs]) if pairs else None
            rows[variant] = row
        out[b] = rows
    return out


def print_startup_report(out: Any, payload: dict[str, Any]) -> None:
    """One table per task: every budget and variant, the medians and the paired comparison with the baseline."""
    for name, task in payload["tasks"].items():
        views = [("score", task["summary"])] + (
            [("reeval_score", task["summary_reevaluated"])] if "summary_reevaluated" in task else []
        )
        for key, summary in views:
            rows = []
            for b, variants in summary.items():
                for variant, r in variants.items():
                    paired = r.get("median_ratio_to_baseline", r.get("median_difference_to_baseline"))
                    rows.append(
                        [
                            b if variant == next(iter(variants)) else "",
                            STARTUP_VARIANTS[variant][0],
                            task["startup_trials"][b].get(variant),
                            r["median"],
                            r["q1"],
                            r["q3"],
                            r["median_complete"],
                            r.get("baseline", ""),
                            f"{r['wins']}/{r['losses']}/{r['ties']}" if "wins" in r else "",
                            r.get("sign_test_p"),
                            paired,
                        ]
                    )
            out.print(
                C.table(
                    f"{name}: {task['score']}{' (re-evaluated)' if key == 'reeval_score' else ''} after B trials, "
                    f"{len(task['seeds'])} seeds",
                    [
                        "B",
                        "variant",
                        "start-up",
                        "median",
                        "q1",
                        "q3",
                        "complete",
                        "vs",
                        "better/worse/tie",
                        "sign p",
                        "median ratio" if task["score_mode"] == "min" else "median diff",
                    ],
                    rows,
                    caption="every variant with the service's default scheduler (ASHA) and 2 trials at once; start-up: "
                    "n_startup_trials given to the sampler; better/worse/tie: seeds where the variant beat / lost to its "
                    "baseline (the same sampler with 10 start-up trials); sign p: two-sided sign test; median ratio: of "
                    "regrets, variant / baseline (< 1 better); median diff: of accuracies, variant - baseline (> 0 better)",
                )
            )


def run_startup_study(args: Any, out: Any) -> int:
    """``--startup-budgets``: each variant's score after B trials, side by side, per task and seed."""
    budgets = sorted({int(b) for b in args.startup_budgets.split(",") if b.strip()})
    chosen = [t.strip() for t in args.tasks.split(",") if t.strip()]
    synth_variants = tuple(
        v.strip() for v in (args.startup_variants or ",".join(STARTUP_SYNTHETIC_VARIANTS)).split(",") if v.strip()
    )
    mlp_variants = tuple(v.strip() for v in (args.startup_mlp_variants or ",".join(STARTUP_MLP_VARIANTS)).split(",") if v.strip())
    unknown = sorted({*synth_variants, *mlp_variants} - set(STARTUP_VARIANTS))
    if unknown:
        raise SystemExit(f"--startup-variants: unknown {', '.join(unknown)}; known: {', '.join(STARTUP_VARIANTS)}")
    n_seeds = args.seeds or (1 if args.smoke else 20)
    mlp_seeds = args.mlp_seeds or (1 if args.smoke else 10)
    max_steps = 4 if args.smoke else args.max_steps
    mlp_steps = 2 if args.smoke else args.mlp_max_steps
    reeval_repeats = args.reeval_seeds if args.reeval_seeds is not None else (0 if args.smoke else 3)
    C.quiet_logging()
    info = C.machine()
    tasks: dict[str, Any] = {}
    started = time.perf_counter()
    # Not over the epoch comparison's JSON, the --out default.
    path = args.out if args.out != C.RESULTS_DIR / "sample_efficiency.json" else C.RESULTS_DIR / "sample_efficiency_startup.json"

    def payload(partial: dict[str, Any]) -> dict[str, Any]:
        for task in partial.values():
            task["startup_trials"] = {
                str(b): {v: startup_sampler(v, b)[1].get("n_startup_trials") for v in task["seeds"][0]["runs"][str(b)]}
                for b in budgets
            }
        return {
            "benchmark": "sample_efficiency_startup",
            "smoke": args.smoke,
            "machine": info,
            "settings": {
                "budgets_trials": budgets,
                "seeds_synthetic": n_seeds,
                "seeds_mlp": mlp_seeds,
                "max_steps_synthetic": max_steps,
                "max_steps_mlp": mlp_steps,
                "reeval_seeds": reeval_repeats,
                "variants": {v: STARTUP_VARIANTS[v][0] for v in STARTUP_VARIANTS},
                "rule": "startup_by_budget(trials) = max(2, min(10, trials // 4))",
                "runs": "automl.search (synthetic) / automl.run_spec (MLP), scheduler asha (rf 2, grace 1), max_concurrent 2, "
                "the task seed as job seed; a variant with Optuna's default start-up runs once at the largest budget and is "
                "cut at the smaller ones (its first B trials in trial-number order); the others run once per budget",
                "score": "synthetic: regret of the best COMPLETE trial among the B trials (best f(x) - f*); MLP: best COMPLETE "
                "val_accuracy, and its configuration's mean over reeval_seeds fresh trainer seeds (reeval_score)",
            },
            "tasks": partial,
            "total_wall_s": time.perf_counter() - started,
        }

    def summarised(name: str, seeds: list[dict[str, Any]], steps: int) -> dict[str, Any]:
        facts = KINDS[kind(name)]
        task = {
            "kind": kind(name),
            "score": facts["score"],
            "score_mode": facts["mode"],
            "max_steps": steps,
            "seeds": seeds,
            "summary": startup_summary(seeds, facts["mode"]),
        }
        if kind(name) == "mlp" and reeval_repeats:
            task["summary_reevaluated"] = startup_summary(seeds, facts["mode"], "reeval_score")
        return task

    # Per task: seeds, steps a trial, variants, re-evaluations (the synthetic functions' scores have no noise).
    plan = [(name, n_seeds, max_steps, synth_variants, 0) for name in SYNTHETIC if name in chosen]
    plan += [(MLP_TASK, mlp_seeds, mlp_steps, mlp_variants, reeval_repeats)] if MLP_TASK in chosen else []
    with tempfile.TemporaryDirectory(prefix="automl-bench-startup-") as tmp:
        home = Path(tmp) / "automl-home"
        C.init_ray()
        register_qmc_start()
        # --startup-resume: the seeds an earlier run of the same command wrote to the JSON stay; the rest run.
        earlier = json.loads(path.read_text())["tasks"] if args.startup_resume and path.exists() else {}
        for name, count, steps, variants, repeats in plan:
            seeds: list[dict[str, Any]] = earlier.get(name, {}).get("seeds", [])[:count]
            label = f"mlp {MLP_DATASET}" if name == MLP_TASK else name
            for seed in range(len(seeds), count):
                with out.status(f"start-up, {label}: seed {seed + 1}/{count}"):
                    run = TaskRun(name, seed, steps, home, Path(tmp) / "tune", plots=False)
                    seeds.append({"seed": seed, "runs": startup_seed(run, budgets, variants, repeats)})
                tasks[name] = summarised(name, seeds, steps)
                C.write_json(path, payload(tasks))  # after every seed: a long run that stops keeps what it measured
    result = payload(tasks)
    if earlier:
        result["settings"]["resumed"] = (
            "--startup-resume: seeds from an earlier run of the same command kept; total_wall_s is this run's"
        )
    C.write_json(path, result)
    print_startup_report(out, result)
    out.print(f"JSON: {path}  ({result['total_wall_s']:.0f} s)")
    return 0
