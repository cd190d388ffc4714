"""Sample efficiency at equal compute: the service default (TPE + ASHA) against random search.

Three methods, each given the same budget of E trained epochs (steps), not trials:

(1) service: ``automl.search(..., sampler="tpe", scheduler="asha")`` / ``automl.run_spec`` (the
    service default; ASHA reduction factor 2, grace period 1);
(2) random: the same calls with ``sampler="random", scheduler="fifo"``: random search, no early stopping;
(3) tune: plain ``tune.Tuner`` with Tune's default search (``BasicVariantGenerator``, random
    sampling from the equivalent ``tune.uniform/loguniform/choice`` space, seeded) and its
    default FIFO scheduler; ``reuse_actors=True``, loggers off, ``verbose=0``.

Epochs are counted from what each trial reported: for the service paths, the steps of every
trial in the Optuna study (``len(trial.intermediate_values)``); for Tune, each trial's last
``training_iteration``. FIFO trials cost ``max_steps`` epochs each, so (2) and (3) run
``E / max_steps`` trials. The service (1) is asked for more trials than it can afford; then,
reading its study in trial-number order, only the trials whose cumulative epochs fit in E are
kept. A method's *best-so-far curve* is, at each epoch count e <= E, the best COMPLETE final
value among the kept trials that had ended by e (a PRUNED trial's value is from an earlier step
and is not compared; its epochs count).

Tasks:
(a) synthetic functions with known optima (Branin, and a shifted 4-D Rosenbrock), reported as a
    learning curve ``f(x) + c / step``: the final value is ``f(x) + c / max_steps`` and
    regret = best final value - (f* + c / max_steps) = best f(x) - f*. (Idealised: at any step
    the ranking of trials is exactly their final ranking, so early stopping has a perfect signal.)
(b) the built-in MLP trainer through ``automl.run_spec`` on scikit-learn's bundled ``digits``
    (64 pixel features, 10 classes) with a hard split: 25 % of the rows train, 75 % validate
    (1,348 rows, so one example is 0.07 %), over the ``mlp`` preset (learning rate 1e-4..1e-1,
    batch size, dropout, L1, L2, width, depth), 16 epochs a trial. Random configurations score
    from 0.1 to 0.96 there: the hyperparameters matter and the top does not saturate at 1.0,
    unlike ``wine``. The Tune path runs the same trainer code (``workers.trainable.run_trial``)
    on the same split.

Per task, over seeds: the median best-so-far curve of each method (the median over seeds at
every epoch count), and from it the headline figures:
- the target: random search's final best (its median curve at E);
- the epochs each method's median curve needs to first reach that target;
- ratio = epochs random search's median curve needs / epochs the method's needs (the issue's
  "a third of the epochs of random search" is ratio >= 3), and ratio to the budget = E / epochs
  the method needs (random search spent all of E to find its best).
Per seed the same ratio is also given (epochs random search needed to reach its own final best
in that seed / epochs the method needed; not reached within E counts 0), with its median.
Targets (the issue): on the MLP, ratio >= 3; on the synthetic functions, a lower median regret
than random search. A PNG of the curves (per seed thin, median bold) is written beside the JSON.

The MLP's best score is one training's, and on this task one configuration's accuracy moves by
about 0.9 % with the trainer's seed alone (``seed_noise.py``): more than the top configurations
differ. So the MLP is also scored without that luck (``--reeval-seeds K``, default 5): every
incumbent (each trial that improved its search's best) is trained again K times with fresh trainer
seeds, the same K seeds for every configuration, outside every budget, and the best-so-far curve
is valued at the incumbent's mean: what a user would get from the configuration the search picked
at that point. The same figures are computed on those curves (``summary.reevaluated``).
And the other way round (``--random-budget-multiple M``, default 3): random search runs M x E
epochs, and the benchmark reports how many its median curve needs to reach the service's median
best at E, over the epochs the service needed (``summary.matching``).
The same figures at smaller budgets B come free (``summary.by_budget``): a run's first B epochs are
a run with budget B, since random search draws the same configurations in the same order and TPE
and ASHA do not know the budget; so one run at E = 1600 also shows how the ratio grows with B.

    .venv/bin/python benchmarks/sample_efficiency.py [--smoke] [--seeds N] [--mlp-seeds N] [--reeval-seeds K]
        [--random-budget-multiple M] [--mlp-budget-trials N] [--tasks A,B] [--out PATH]
    .venv/bin/python benchmarks/sample_efficiency.py --tasks mlp_digits --variants [A,B]   # + other ASHA/TPE settings
    .venv/bin/python benchmarks/sample_efficiency.py --report-only PATH.json         # tables and PNG again from a JSON

The code: this file is the command line; ``efficiency_tasks`` holds the tasks, ``efficiency_runs``
runs the searches, ``efficiency_curves`` the budget and curve arithmetic, ``efficiency_report``
the figure and the tables, and ``startup_study`` the start-up study (``--startup-budgets``).

Latest figures and what they show: benchmarks/README.md, section "Sample efficiency".
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import startup_study
from efficiency_curves import add_budget_sweep, aggregate, aggregate_matching, aggregate_reevaluated, targets
from efficiency_report import plot, print_report
from efficiency_runs import METHODS, REEVAL_NUMBER_BASE, VARIANTS, TaskRun, run_seed
from efficiency_tasks import CURVE_C, KINDS, MLP_DATASET, MLP_SPACE, MLP_TASK, MLP_VAL_FRACTION, SYNTHETIC, TASKS, kind

BY_BUDGET_NOTE = (
    "MLP: summary.by_budget (and summary.reevaluated.by_budget): the ratio at budgets B < E, from the same "
    "runs' curves cut at B (a run's first B epochs are a run with budget B)"
)


def parse_args() -> Any:
    def extra(p: Any) -> None:
        p.add_argument("--seeds", type=int, help="seeds per synthetic function (default 5; smoke 1)")
        p.add_argument("--mlp-seeds", type=int, help="seeds of the MLP task (default 15; smoke 1)")
        p.add_argument("--max-steps", type=int, default=8, help="steps per trial of the synthetic functions (default 8)")
        p.add_argument("--mlp-max-steps", type=int, default=16, help="epochs per trial of the MLP (default 16)")
        p.add_argument(
            "--mlp-budget-trials",
            type=int,
            default=16,
            help="the MLP budget E in full trials: E = this x --mlp-max-steps epochs (default 16)",
        )
        p.add_argument("--tasks", default=",".join(TASKS), help="which tasks, comma-separated (default all)")
        p.add_argument(
            "--variants",
            nargs="?",
            const=",".join(VARIANTS),
            default="",
            help=f"also run other settings of the service's search on the MLP: some or all (no value) of {', '.join(VARIANTS)}",
        )
        p.add_argument(
            "--reeval-seeds",
            type=int,
            help="train every MLP incumbent again with this many trainer seeds and score it by their mean "
            "(the noise-aware figures; default 5, smoke 2; 0: off)",
        )
        p.add_argument(
            "--random-budget-multiple",
            type=int,
            help="MLP: random search also runs this many times E, to see how many epochs it needs to match "
            "the service's best at E (default 3, smoke 2; 1: off)",
        )
        p.add_argument(
            "--startup-budgets",
            metavar="B,B",
            help="run the start-up study instead: TPE's and GP's start-up trials at these budgets of trials "
            "(e.g. 8,16,32), every variant side by side (seeds: --seeds, default 20; --mlp-seeds, default 10; "
            "--reeval-seeds, default 3)",
        )
        p.add_argument(
            "--startup-resume",
            action="store_true",
            help="start-up study: keep the seeds already in the --out JSON (a run that was stopped) and run the rest",
        )
        p.add_argument(
            "--startup-variants",
            help=f"start-up study, synthetic tasks: which of {', '.join(startup_study.STARTUP_VARIANTS)} "
            f"(default {','.join(startup_study.STARTUP_SYNTHETIC_VARIANTS)})",
        )
        p.add_argument(
            "--startup-mlp-variants",
            help=f"start-up study, MLP: which variants (default {','.join(startup_study.STARTUP_MLP_VARIANTS)})",
        )
        p.add_argument(
            "--report-only",
            type=Path,
            metavar="JSON",
            help="run nothing: print the tables and draw the PNG again from an earlier run's JSON (adding the "
            "budget sweep, computed from its own curves, if it has none)",
        )

    return C.parse_args(
        "sample_efficiency", "Sample efficiency at equal epochs: TPE+ASHA vs random search vs Tune's default.", extra
    )


def report_only(path: Path) -> int:
    """``--report-only``: an earlier run's tables (and PNG) again; an MLP task without a budget sweep gets one."""
    payload = json.loads(path.read_text())
    if payload["benchmark"] == "sample_efficiency_startup":
        startup_study.print_startup_report(C.console(), payload)
        return 0
    swept = [add_budget_sweep(task) for task in payload["tasks"].values() if task["kind"] == "mlp"]  # every task, not the first
    if any(swept):
        payload["settings"]["by_budget"] = BY_BUDGET_NOTE + " (added afterwards by --report-only)"
        C.write_json(path, payload)
    print_report(C.console(), payload, plot(payload["tasks"], path.with_suffix(".png")))
    return 0


def run_task(
    name: str,
    *,
    n_seeds: int,
    max_steps: int,
    budget: int,
    service_trials: int,
    methods: tuple[str, ...],
    home: Path,
    workdir: Path,
    out: Any,
    reeval_repeats: int = 0,
    random_multiple: int = 1,
    plots: bool = True,
) -> dict[str, Any]:
    """Every seed of one task (``efficiency_runs.run_seed``), and the task's summary over seeds.

    ``plots``: the service's end-of-job plots of each search, as by default (the smoke leaves them out)."""
    label = f"mlp {MLP_DATASET}" if name == MLP_TASK else name
    seeds = []
    for seed in range(n_seeds):
        with out.status(f"{label}: seed {seed + 1}/{n_seeds}"):
            run = TaskRun(name, seed, max_steps, home, workdir, plots=plots)
            seeds.append({"seed": seed, **run_seed(run, budget, service_trials, methods, reeval_repeats, random_multiple)})
    facts = KINDS[kind(name)]
    task = {
        "kind": kind(name),
        "mode": facts["mode"],
        "metric": facts["metric"],
        "score": facts["score"],
        "score_mode": facts["mode"],
        **({"optimum": SYNTHETIC[name]["optimum"]} if name in SYNTHETIC else {}),
        "max_steps": max_steps,
        "budget_epochs": budget,
        "seeds": seeds,
        "summary": aggregate(seeds, budget, facts["mode"]),
    }
    if kind(name) == "mlp":
        if reeval_repeats:
            task["summary"]["reevaluated"] = aggregate_reevaluated(seeds, budget)
        add_budget_sweep(task)
        if random_multiple > 1:
            curves = {"one_training": "curve", **({"reevaluated": "reeval_curve"} if reeval_repeats else {})}
            task["summary"]["matching"] = {
                key: aggregate_matching(seeds, budget, budget * random_multiple, curve) for key, curve in curves.items()
            }
    return task


def main() -> int:
    args = parse_args()
    if args.report_only is not None:
        return report_only(args.report_only)
    if args.startup_budgets:
        return startup_study.run_startup_study(args, C.console())
    n_seeds = args.seeds or (1 if args.smoke else 5)
    mlp_seeds = args.mlp_seeds or (1 if args.smoke else 15)
    max_steps = 4 if args.smoke else args.max_steps
    mlp_steps = 2 if args.smoke else args.mlp_max_steps
    reeval_repeats = args.reeval_seeds if args.reeval_seeds is not None else (2 if args.smoke else 5)
    random_multiple = args.random_budget_multiple or (2 if args.smoke else 3)
    # The budget E in epochs: FIFO methods run E / max_steps trials. The service is asked for
    # more trials than E can pay for, then cut at E: measured, its trials cost 4 to 6 epochs
    # each (asynchronous ASHA promotes more than the 1/2 per rung of synchronous halving, and
    # more as TPE's later trials improve), so E / 3 and E / 4 trials are plenty; the JSON's
    # epochs_spent says whether a run used its whole budget.
    synth_budget = max_steps * (4 if args.smoke else 24)
    mlp_budget = mlp_steps * (3 if args.smoke else args.mlp_budget_trials)
    synth_service_trials = max(6, synth_budget // 3)
    mlp_service_trials = max(4, mlp_budget // 4)
    chosen = [t.strip() for t in args.tasks.split(",") if t.strip()]
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    if set(variants) - set(VARIANTS):
        raise SystemExit(f"--variants: unknown {', '.join(sorted(set(variants) - set(VARIANTS)))}; known: {', '.join(VARIANTS)}")
    unknown = sorted(set(chosen) - set(TASKS))
    if unknown:
        raise SystemExit(f"--tasks: unknown task(s) {', '.join(unknown)}; known: {', '.join(TASKS)}")
    functions = [name for name in SYNTHETIC if name in chosen and (name == "branin" or not args.smoke)]
    # Every search call costs seconds to start: the smoke leaves out the synthetic Tune run (the
    # MLP task runs the same run_tune), to stay short.
    synth_methods = ("service", "random") if args.smoke else METHODS
    sizes: dict[str, dict[str, Any]] = {
        "synthetic": {
            "n_seeds": n_seeds,
            "max_steps": max_steps,
            "budget": synth_budget,
            "service_trials": synth_service_trials,
            "methods": synth_methods,
        },
        "mlp": {
            "n_seeds": mlp_seeds,
            "max_steps": mlp_steps,
            "budget": mlp_budget,
            "service_trials": mlp_service_trials,
            "methods": (*METHODS, *variants),
            "reeval_repeats": reeval_repeats,
            "random_multiple": random_multiple,
        },
    }
    out = C.console()
    C.quiet_logging()
    info = C.machine()

    tasks: dict[str, Any] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="automl-bench-sample-eff-") as tmp:
        # The smoke's searches draw no end-of-job plots: seconds of CPU each, and no figure needs them.
        where = {"home": Path(tmp) / "automl-home", "workdir": Path(tmp) / "tune", "plots": not args.smoke}
        C.init_ray()
        import automl  # noqa: F401

        for name in [*functions, *([MLP_TASK] if MLP_TASK in chosen else [])]:
            tasks[name] = run_task(name, out=out, **sizes[kind(name)], **where)
    total_s = time.perf_counter() - started

    png = plot(tasks, Path(args.out).with_suffix(".png"))
    payload = {
        "benchmark": "sample_efficiency",
        "smoke": args.smoke,
        "machine": info,
        "settings": {
            "seeds_synthetic": n_seeds,
            "seeds_mlp": mlp_seeds,
            "max_steps_synthetic": max_steps,
            "max_steps_mlp": mlp_steps,
            "budget_epochs_synthetic": synth_budget,
            "budget_epochs_mlp": mlp_budget,
            "service_trials_requested": {"synthetic": synth_service_trials, "mlp": mlp_service_trials},
            "fifo_trials": {"synthetic": synth_budget // max_steps, "mlp": mlp_budget // mlp_steps},
            "mlp": {
                "dataset": MLP_DATASET,
                "space": MLP_SPACE,
                "val_fraction": MLP_VAL_FRACTION,
                "metric": "val_accuracy",
                "split_seed": "the seed (the same split for the three methods of a seed)",
            },
            "curve": f"synthetic: report at step s = f(x) + {CURVE_C}/s; regret = best final value - (f* + {CURVE_C}/max_steps)",
            "methods": {
                "service": "automl.search / run_spec, sampler tpe (multivariate, constant liar), scheduler asha (rf 2, grace 1), max_concurrent 2",
                "random": "automl.search / run_spec, sampler random, scheduler fifo, max_concurrent 2",
                "tune": "tune.Tuner, BasicVariantGenerator(random_state=seed), FIFO, max_concurrent_trials 2, reuse_actors, "
                "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1, verbose 0",
                **(
                    {
                        name: f"MLP only (--variants): run_spec, sampler {v[1]} {v[2] or ''}, scheduler {v[3]} {v[4] or ''}"
                        for name, v in VARIANTS.items()
                        if name in variants
                    }
                ),
            },
            "epochs": "service paths: len(intermediate_values) per Optuna trial; Tune: last training_iteration per trial; "
            "trials kept in trial-number order while cumulative epochs <= budget; best = best COMPLETE value among them",
            "curves": "per seed: [epochs, best so far] at each improvement; median_curve: median_low over seeds at every "
            "epoch count (a seed with no COMPLETE trial yet counts as worst)",
            "ratio": "summary: epochs random search's median curve needs to reach its final value (the target) / epochs the "
            "method's median curve needs (0: never within E); ratio_vs_budget: E / epochs the method needs. Per seed: epochs "
            "random search needed to reach its own final best / epochs the method needed (not reached within E -> 0)",
            "reevaluation": f"MLP, when reeval_seeds > 0: every incumbent (each trial that improved its search's best) "
            f"trained again reeval_seeds times, trainer seeds from trial numbers {REEVAL_NUMBER_BASE} + k (the same k for every "
            "configuration), not counted in any budget; reeval_curve: the best-so-far curve's steps valued at the incumbent's "
            "mean; summary.reevaluated: the same figures as summary on those curves",
            "reeval_seeds": reeval_repeats,
            "random_budget_multiple": random_multiple,
            "matching": "MLP, when random_budget_multiple > 1: random search runs random_budget_multiple x E epochs (its "
            "first E are the run every other figure uses); summary.matching: epochs its median curve needs to reach the "
            "service's median curve at E, over the epochs the service's needs (ratio; ratio_at_least when it never does); "
            "random search's wall_s then covers its whole extended run",
            "by_budget": BY_BUDGET_NOTE,
            "ray_init": "ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False), once",
            "plots": "the service's end-of-job plots drawn, as by default" if not args.smoke else "no end-of-job plots (smoke)",
        },
        "tasks": tasks,
        "targets": targets(tasks),
        "plot": str(png) if png else None,
        "total_wall_s": total_s,
    }
    C.write_json(args.out, payload)
    print_report(out, payload, png)
    out.print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
