"""How much the sample-efficiency MLP task's score moves with the trainer's seed alone.

The sample-efficiency benchmark compares searches by the best validation accuracy a trial
scored. This measures the noise under that score: the service default (TPE + ASHA) and random
search each search the task once (the same job spec as ``sample_efficiency.py``'s MLP task,
one job seed); then each best configuration is trained again K times, identical but for the
trainer's seed (one per repeat, see ``efficiency_runs.retrain``), on the same train/validation split. If the two
bests' spreads overlap as much as the gaps between the methods' best scores, the top of the
task is noise and a best-score comparison there says little about the searches.

    .venv/bin/python benchmarks/seed_noise.py [--smoke] [--repeats K] [--job-seed S] [--out PATH]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import efficiency_tasks as T
from efficiency_runs import retrain

# method -> (sampler, scheduler, trials in the search: the same budget of epochs as sample_efficiency's E = 256)
SEARCHES = {"service": ("tpe", "asha", 64), "random": ("random", "fifo", 16)}


def main() -> int:
    def extra(p: Any) -> None:
        p.add_argument("--repeats", type=int, help="trainings of each best configuration (default 10; smoke 2)")
        p.add_argument("--job-seed", type=int, default=1, help="the searches' job seed (default 1)")

    args = C.parse_args("seed_noise", "The MLP task's score spread over trainer seeds, for the best configurations.", extra)
    repeats = args.repeats or (2 if args.smoke else 10)
    max_steps = 2 if args.smoke else 16
    # The smoke: one round of trials each (2 at a time), and no end-of-job plots (seconds of CPU, no figure needs them).
    trials = {method: 2 if args.smoke else n for method, (_, _, n) in SEARCHES.items()}
    plots = not args.smoke
    out = C.console()
    C.quiet_logging()
    info = C.machine()
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="automl-bench-seed-noise-") as tmp:
        home = Path(tmp) / "automl-home"
        C.init_ray()
        import automl

        results = {}
        for method, (sampler, scheduler, _) in SEARCHES.items():
            fields = T.mlp_spec(sampler, scheduler, trials[method], max_steps, args.job_seed)
            spec = automl.JobSpec.model_validate({**fields, "tracking": {**fields["tracking"], "plots": plots}})
            with out.status(f"{method}: searching"), C.service_env(home):
                results[method] = automl.run_spec(spec)
        # Both bests in one Tune run: repeat k of each uses the same trainer seed, as in a run of its own.
        with out.status(f"each search's best configuration, {repeats} trainer seeds"):
            retrained = retrain(
                [result.best_params for result in results.values()],
                repeats=repeats,
                max_steps=max_steps,
                job_seed=args.job_seed,
                workdir=Path(tmp) / "tune-retrain",
            )
        for (method, result), found in zip(results.items(), retrained, strict=True):
            scores = sorted(v for v in found if v is not None)
            rows[method] = {
                "search_best": result.best_value,
                "params": dict(result.best_params),
                "scores": scores,
                "median": statistics.median(scores),
                "min": scores[0],
                "max": scores[-1],
                "range": scores[-1] - scores[0],
            }
    gap = abs(rows["service"]["median"] - rows["random"]["median"])
    payload = {
        "benchmark": "seed_noise",
        "smoke": args.smoke,
        "machine": info,
        "settings": {
            "task": f"sample_efficiency's MLP: {T.MLP_DATASET}, validation fraction {T.MLP_VAL_FRACTION}, space "
            f"{T.MLP_SPACE}, {max_steps} epochs",
            "searches": {k: f"sampler {v[0]}, scheduler {v[1]}, {trials[k]} trials" for k, v in SEARCHES.items()},
            "plots": plots,
            "job_seed": args.job_seed,
            "repeats": repeats,
        },
        "methods": rows,
        "median_gap": gap,
        "median_gap_over_range": C.ratio(gap, max(rows["service"]["range"], rows["random"]["range"]) or None),
    }
    C.write_json(args.out, payload)
    out.print(
        C.table(
            f"Best configuration of each search, trained {repeats} times with different trainer seeds",
            ["search", "best in the search", "median", "min", "max", "range"],
            [[k, v["search_best"], v["median"], v["min"], v["max"], v["range"]] for k, v in rows.items()],
            caption="validation accuracy at the last epoch; same split and configuration, only the trainer's seed differs",
        )
    )
    out.print(f"gap between the medians {gap:.4f}; JSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
