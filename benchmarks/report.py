"""Markdown tables of the latest figures, from ``benchmarks/results/*.json``, for the README.

.venv/bin/python benchmarks/report.py [--results DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C


def md(columns: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" if i == 0 else "--:" for i in range(len(columns))) + "|"]
    lines += ["| " + " | ".join(C.fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(data: dict[str, Any]) -> str:
    m = data["machine"]
    v = m["versions"]
    git = m.get("git") or {}
    dirty = f", with uncommitted changes to {', '.join(git['modified'])}" if git.get("modified") else ""
    return (
        f"{m['date']}, {m['cpu_count']} CPUs ({m.get('cpu_model') or '?'}), GPU: {m.get('gpu') or 'none'}, "
        f"load average at start {', '.join(f'{x:.1f}' for x in (m.get('load_avg_at_start') or []))}; "
        f"ray {v.get('ray')}, optuna {v.get('optuna')}, mlflow {v.get('mlflow')}, torch {v.get('torch')}; "
        f"commit {str(git.get('commit'))[:10]}{dirty}"
    )


def overhead(data: dict[str, Any]) -> str:
    names = {
        "bare_optuna": "(a) bare Optuna, in memory",
        "bare_tune": "(b) bare Ray Tune",
        "handwired": "(c) hand-wired default",
        "service": "(d) the service",
        "service_inline": "(e) the service, writes in the driver",
    }
    p = data["paths"]
    r, mr = data["ratios"], data["marginal_ratios"]

    def ms(x: float | None) -> float | None:
        return None if x is None else 1000 * x

    out = [
        f"Measured {machine_line(data)}.",
        "",
        md(
            [
                "path",
                "trials",
                "wall s",
                "ms / trial",
                "marginal ms / trial",
                "fixed s / call",
                "machine CPU ms / trial",
                "SQL write txns / trial",
            ],
            [
                [
                    names[k],
                    v["trials"],
                    v["wall_s"],
                    ms(v["per_trial_s"]),
                    ms(v["marginal_per_trial_s"]),
                    v["fixed_per_call_s"],
                    ms(v.get("machine_cpu_per_trial_s")),
                    v["write_transactions_per_trial"],
                ]
                for k, v in p.items()
            ],
        ),
        "",
        md(
            ["ratio", "wall / trials", "marginal", "target"],
            [
                [
                    "service / bare Tune",
                    r["service_over_bare_tune"],
                    mr["service_over_bare_tune"],
                    f"≤ 1.5: {'met' if data['targets']['service_over_bare_tune_met'] else 'missed'}",
                ],
                [
                    "hand-wired / service",
                    r["handwired_over_service"],
                    mr["handwired_over_service"],
                    f"≥ 5: {'met' if data['targets']['handwired_over_service_met'] else 'missed'}",
                ],
                ["service / bare Optuna", r["service_over_bare_optuna"], mr["service_over_bare_optuna"], ""],
                *(
                    [["service, writes in the driver / service", r["service_inline_over_service"], None, ""]]
                    if r.get("service_inline_over_service") is not None
                    else []
                ),
            ],
        ),
    ]
    reps = data.get("ratios_per_repeat") or {}
    if len(reps.get("service_over_bare_tune") or []) > 1:
        out += [
            "",
            "Within each repeat (side by side in time): service / bare Tune "
            + ", ".join(C.fmt(x) for x in reps["service_over_bare_tune"])
            + "; hand-wired / service "
            + ", ".join(C.fmt(x) for x in reps["handwired_over_service"])
            + ".",
        ]
    prof = data.get("profile")
    if prof:
        hooks = prof["timed_hooks"]
        out += [
            "",
            f"Service driver hooks ({hooks['trials']} trials, perf_counter wrappers, no profiler):",
            "",
            md(
                ["call", "thread", "ms / trial"],
                [
                    [h["call"].strip(), h["thread"], h["ms_per_trial"]]
                    for h in hooks["calls"]
                    if h["calls"] and not h["call"].startswith(("Tuner", "TuneController", "JobStopper"))
                ],
            ),
            "",
            md(
                ["phase of one service call (" + str(hooks["trials"]) + " trials)", "s"],
                [[k.removesuffix("_s").replace("_", " "), v] for k, v in hooks["phases"].items()],
            ),
        ]
    return "\n".join(out)


def scaling(data: dict[str, Any]) -> str:
    cpu = data["cpu"]
    s = data["settings"]
    out = [
        f"Measured {machine_line(data)}.",
        "",
        md(
            ["trials at once", "trials", "wall s", "trials / min", "trials / min (span)", "mean trial s"],
            [
                [r["concurrent"], r["trials"], r["wall_s"], r["trials_per_min"], r["trials_per_min_span"], r.get("mean_trial_s")]
                for r in cpu["rows"]
            ],
        ),
        "",
        md(
            ["speed-up, 2 at once over 1", "value", "target"],
            [
                ["over the whole call", cpu["speedup"], f"≥ 1.7: {'met' if cpu['target_met'] else 'missed'}"],
                ["over the trials' span", cpu["speedup_span"], f"≥ 1.7: {'met' if cpu['target_met_span'] else 'missed'}"],
            ],
        ),
        "",
        f"Each trial: {s['work']} (~{s['work_s']:g} s).",
    ]
    gpu = data["gpu"]
    if "rows" in gpu:
        out += [
            "",
            md(
                ["gpus_per_trial", "trials / GPU", "trials / hour", "vs 1 per GPU", "vs 1 per GPU (span)"],
                [
                    [
                        r["gpus_per_trial"],
                        r["trials_per_gpu"],
                        r["trials_per_hour"],
                        r["vs_one_per_gpu"],
                        r["vs_one_per_gpu_span"],
                    ]
                    for r in gpu["rows"]
                ],
            ),
        ]
    else:
        out += ["", f"GPU packing: {gpu['skipped']}."]
    return "\n".join(out)


def growth(data: dict[str, Any]) -> str:
    rows = data["rows"]
    f = data["fits"]
    out = [
        f"Measured {machine_line(data)}.",
        "",
        md(
            [
                "trials",
                "TPE ask+tell ms",
                "random ask+tell ms",
                "TPE first ask ms",
                "status s (subprocess)",
                "status CPU s",
                "status ms (in-process)",
                "snapshot update µs / trial",
                "record_progress ms",
                "snapshot from the study ms",
            ],
            [
                [
                    r["size"],
                    r["tpe_ask_tell_ms"],
                    r["random_ask_tell_ms"],
                    r["tpe_first_ask_ms"],
                    r["status_subprocess_s"],
                    r.get("status_subprocess_cpu_s"),
                    r["status_in_process_ms"],
                    r.get("snapshot_update_us"),
                    r.get("record_progress_ms"),
                    r.get("study_snapshot_ms"),
                ]
                for r in rows
            ],
        ),
        "",
        md(
            ["fit over the sizes", "a (ms)", "b (ms per 1000 trials)", "k in t ~ n^k"],
            [[k, v["intercept_ms"], v["ms_per_1000_trials"], v["exponent"]] for k, v in f.items()],
        ),
        "",
        f"`automl status` of an unknown job (interpreter, imports, job store): {data['settings'].get('status_unknown_job_s', 0):.2f} s"
        + (
            f" ({data['settings']['status_unknown_job_cpu_s']:.2f} s CPU)"
            if "status_unknown_job_cpu_s" in data["settings"]
            else ""
        )
        + f"; under 1 s at {rows[-1]['size']} trials: {'yes' if data['status_under_1s_at_largest'] else 'no'}"
        + (
            f" (CPU time: {'yes' if data['status_cpu_under_1s_at_largest'] else 'no'})"
            if "status_cpu_under_1s_at_largest" in data
            else ""
        )
        + f"; dominant call in process: {data['status_dominant_call_at_largest']}.",
    ]
    out += ["", _growth_summary(rows, f)]
    return "\n".join(out)


def _growth_summary(rows: list[dict[str, Any]], fits: dict[str, Any]) -> str:
    """One sentence per figure: its value at the smallest and largest size, and how it grows."""

    def shape(k: float | None) -> str:
        if k is None:
            return "?"
        if k < 0.1:
            return "flat"  # a negative slope is noise on a shared machine
        return "sublinear" if k < 0.8 else "about linear" if k < 1.2 else "faster than linear"

    first, last = rows[0], rows[-1]
    parts = []
    for label, key, fit, unit in (
        ("TPE ask+tell", "tpe_ask_tell_ms", "tpe_ask_tell", "ms"),
        ("random ask+tell", "random_ask_tell_ms", "random_ask_tell", "ms"),
        ("`automl status` wall time", "status_subprocess_s", "status_subprocess", "s"),
        ("its CPU time", "status_subprocess_cpu_s", "status_subprocess_cpu", "s"),
        ("its calls in process", "status_in_process_ms", "status_in_process", "ms"),
        ("the runner's snapshot update per trial", "snapshot_update_us", "snapshot_update_per_trial", "µs"),
        ("the snapshot from the whole study (what status cost before)", "study_snapshot_ms", "snapshot_from_study", "ms"),
    ):
        if key not in first or fit not in fits:
            continue
        k = fits[fit]["exponent"]
        parts.append(f"{label} {C.fmt(first[key])} → {C.fmt(last[key])} {unit}, {shape(k)} (k = {C.fmt(k)})")
    return f"How each grows from {first['size']} to {last['size']} trials: " + "; ".join(parts) + "."


def main() -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/report.py", description=__doc__)
    parser.add_argument("--results", type=Path, default=C.RESULTS_DIR)
    args = parser.parse_args()
    for name, render in (("overhead", overhead), ("scaling", scaling), ("growth", growth)):
        path = args.results / f"{name}.json"
        if not path.exists():
            print(f"### {name}\n\n(no {path})\n")
            continue
        data = json.loads(path.read_text())
        print(f"### {name}{' (SMOKE: sizes too small to mean anything)' if data.get('smoke') else ''}\n\n{render(data)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
