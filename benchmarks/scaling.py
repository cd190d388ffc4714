"""Scaling: throughput of CPU-bound trials through the service at 1 and 2 trials at once, and,
on a machine with a CUDA GPU, trials per hour with 1, 2 and 4 trials packed per GPU.

CPU: every trial does the same real CPU work (float32 256x256 matmuls on one thread, the
count calibrated here to take ``--work-s`` seconds, 1 s by default) through
``automl.search(..., max_concurrent=1 | 2, cpus_per_trial=1, scheduler="fifo")``, the same trial
count at each setting, on one ``ray.init(num_cpus=2)``. Throughput is given two ways: over the
whole search call (trials / wall, the figure a user sees, with the per-job start-up in it) and
over the trials' own span (first trial start to last trial end, as the trials logged them:
steady-state throughput). The issue's target is >= 1.7x for 2 trials at once.

GPU (only when ``torch.cuda.is_available()``; otherwise the JSON says "skipped: no CUDA GPU"):
trials that each train a small MLP for a fixed number of steps on ``ctx.device``, with
``gpus_per_trial`` 1, 0.5 and 0.25 (1, 2, 4 trials packed per GPU), trials per hour against one
trial per GPU. ``--fake-gpus N`` gives Ray N GPUs that do not exist, to exercise that code
path on a machine without one (trials then run on the CPU; the figures mean nothing).

    .venv/bin/python benchmarks/scaling.py [--smoke] [--out PATH]
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

MATRIX = 256


def calibrate(work_s: float, *, rounds: int = 3) -> dict[str, float]:
    """How many one-thread matmuls take ``work_s`` seconds here (best of ``rounds`` short runs)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = torch.randn(MATRIX, MATRIX)
        for _ in range(20):
            a @ a
        rates = []
        for _ in range(rounds):
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < 0.3:
                for _ in range(10):
                    a @ a
                n += 10
            rates.append(n / (time.perf_counter() - start))
    finally:
        torch.set_num_threads(threads)
    rate = max(rates)
    return {"matmuls_per_s": rate, "iters": max(1, round(rate * work_s)), "work_s": work_s}


def make_cpu_objective(iters: int, log_dir: str) -> Any:
    def cpu_trial(params: dict[str, Any]) -> float:
        import torch

        torch.set_num_threads(1)
        start = time.time()
        a = torch.randn(MATRIX, MATRIX)
        for _ in range(iters):
            a @ a
        end = time.time()
        with open(os.path.join(log_dir, f"{uuid.uuid4().hex}.txt"), "w") as handle:
            handle.write(f"{os.getpid()} {start} {end}\n")
        return float(params["x"]) ** 2

    return cpu_trial


def make_gpu_objective(steps: int, log_dir: str) -> Any:
    def gpu_trial(params: dict[str, Any], ctx: Any) -> float:
        import torch
        from torch import nn

        torch.manual_seed(ctx.seed)
        device = ctx.device
        model = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=float(params["x"]) * 1e-3 + 1e-4)
        x = torch.randn(512, 512, device=device)
        y = torch.randint(0, 10, (512,), device=device)
        start = time.time()
        loss = torch.tensor(0.0)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        value = float(loss.item())  # waits for the GPU
        end = time.time()
        with open(os.path.join(log_dir, f"{uuid.uuid4().hex}.txt"), "w") as handle:
            handle.write(f"{os.getpid()} {start} {end} {device}\n")
        return value

    return gpu_trial


def read_logs(log_dir: Path) -> dict[str, Any]:
    rows = [line.split() for f in log_dir.glob("*.txt") for line in f.read_text().splitlines() if line.strip()]
    if not rows:
        return {"trials_logged": 0}
    starts = [float(r[1]) for r in rows]
    ends = [float(r[2]) for r in rows]
    durations = [e - s for s, e in zip(starts, ends, strict=True)]
    return {
        "trials_logged": len(rows),
        "span_s": max(ends) - min(starts),
        "mean_trial_s": sum(durations) / len(durations),
        "max_trial_s": max(durations),
        "worker_pids": len({r[0] for r in rows}),
        "devices": sorted({r[3] for r in rows if len(r) > 3}),
    }


def run_search(
    objective: Any,
    n: int,
    *,
    concurrency: int,
    home: Path,
    log_dir: Path,
    name: str,
    cpus: float = 1.0,
    gpus: float = 0.0,
    max_steps: int = 1,
    plots: bool = True,
) -> dict[str, Any]:
    import automl

    log_dir.mkdir(parents=True, exist_ok=True)
    with C.env(AUTOML_HOME=str(home), AUTOML_STORAGE_URL=None, AUTOML_DB_URL=None, MLFLOW_TRACKING_URI=None, RAY_ADDRESS=None):
        wall, result = C.timed(
            lambda: automl.search(
                objective,
                {"x": {"type": "float", "low": -1.0, "high": 1.0}},
                n_trials=n,
                metric="loss",
                mode="min",
                max_steps=max_steps,
                scheduler="fifo",
                max_concurrent=concurrency,
                cpus_per_trial=cpus,
                gpus_per_trial=gpus,
                name=name,
                plots=plots,
            )
        )
    logs = read_logs(log_dir)
    row = {
        "trials": n,
        "concurrent": concurrency,
        "wall_s": wall,
        "complete": result.state_counts.get("COMPLETE", 0),
        **logs,
    }
    row["trials_per_min"] = 60 * n / wall
    row["trials_per_min_span"] = 60 * n / logs["span_s"] if logs.get("span_s") else None
    return row


def main() -> int:
    def extra(p: Any) -> None:
        p.add_argument("--trials", type=int, help="CPU trials per setting (default 24; smoke 2)")
        p.add_argument("--work-s", type=float, help="CPU work per trial, seconds (default 1.0; smoke 0.3)")
        p.add_argument("--repeats", type=int, default=1, help="run the pair of settings this many times (alternating)")
        p.add_argument("--gpu-trials", type=int, help="GPU trials per setting (default 16; smoke 4)")
        p.add_argument("--gpu-steps", type=int, help="training steps per GPU trial (default 2000; smoke 50)")
        p.add_argument("--fake-gpus", type=int, default=0, help="pretend Ray has N GPUs (code-path test; figures meaningless)")

    args = C.parse_args("scaling", "Throughput at 1 vs 2 concurrent CPU trials; GPU packing when there is a GPU.", extra)
    n = args.trials or (2 if args.smoke else 24)
    work_s = args.work_s or (0.3 if args.smoke else 1.0)
    plots = not args.smoke  # the searches' end-of-job plots, as by default; the smoke leaves them out (seconds of CPU)
    out = C.console()
    C.quiet_logging()
    info = C.machine()

    import torch

    cuda = torch.cuda.is_available()
    n_gpus = torch.cuda.device_count() if cuda else args.fake_gpus
    cal = calibrate(work_s, rounds=1 if args.smoke else 3)

    import ray

    cpus = 2 if not n_gpus else max(2, os.cpu_count() or 2)
    t0 = time.perf_counter()
    ray.init(
        address="local",
        num_cpus=cpus,
        num_gpus=n_gpus or None,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
    )
    ray_init_s = time.perf_counter() - t0
    import automl  # noqa: F401

    cpu_rows: list[dict[str, Any]] = []
    gpu: dict[str, Any]
    with tempfile.TemporaryDirectory(prefix="automl-bench-scaling-") as tmp:
        home = Path(tmp) / "home"
        if not args.smoke:
            with out.status("warm-up: 2 short trials"):
                warm_dir = Path(tmp) / "warm"
                run_search(
                    make_cpu_objective(1, str(warm_dir)), 2, concurrency=2, home=home, log_dir=warm_dir, name="scaling-warmup"
                )
        for rep in range(args.repeats):
            order = (1, 2) if rep % 2 == 0 else (2, 1)
            for conc in order:
                with out.status(f"CPU: {n} trials of {work_s:g} s, {conc} at once"):
                    log_dir = Path(tmp) / f"cpu-{rep}-{conc}"
                    row = run_search(
                        make_cpu_objective(cal["iters"], str(log_dir)),
                        n,
                        concurrency=conc,
                        home=home,
                        log_dir=log_dir,
                        name=f"scaling-c{conc}",
                        plots=plots,
                    )
                    row["repeat"] = rep
                    cpu_rows.append(row)

        if n_gpus:
            gpu_n = args.gpu_trials or (4 if args.smoke else 16)
            steps = args.gpu_steps or (50 if args.smoke else 2000)
            gpu = {
                "gpus": n_gpus,
                "fake": not cuda,
                "device_name": info["gpu"],
                "trials": gpu_n,
                "steps_per_trial": steps,
                "rows": [],
            }
            for per_trial in (1.0, 0.5, 0.25):
                packed = round(1 / per_trial)
                concurrency = packed * n_gpus
                cpus_per_trial = min(1.0, cpus / concurrency)
                with out.status(f"GPU: {gpu_n} trials, gpus_per_trial={per_trial:g}"):
                    log_dir = Path(tmp) / f"gpu-{per_trial:g}"
                    row = run_search(
                        make_gpu_objective(steps, str(log_dir)),
                        gpu_n,
                        concurrency=concurrency,
                        home=home,
                        log_dir=log_dir,
                        name=f"scaling-gpu-{packed}",
                        plots=plots,
                        cpus=cpus_per_trial,
                        gpus=per_trial,
                    )
                row.update(gpus_per_trial=per_trial, trials_per_gpu=packed, cpus_per_trial=cpus_per_trial)
                row["trials_per_hour"] = 3600 * gpu_n / row["wall_s"]
                row["trials_per_hour_span"] = 3600 * gpu_n / row["span_s"] if row.get("span_s") else None
                gpu["rows"].append(row)
            base = gpu["rows"][0]
            for row in gpu["rows"]:
                row["vs_one_per_gpu"] = C.ratio(row["trials_per_hour"], base["trials_per_hour"])
                row["vs_one_per_gpu_span"] = C.ratio(row["trials_per_hour_span"], base["trials_per_hour_span"])
        else:
            gpu = {"skipped": "skipped: no CUDA GPU"}

    def mean(rows: list[dict[str, Any]], key: str) -> float | None:
        values = [r[key] for r in rows if r.get(key) is not None]
        return sum(values) / len(values) if values else None

    by_c = {c: [r for r in cpu_rows if r["concurrent"] == c] for c in (1, 2)}
    summary = {
        "trials_per_min_1": mean(by_c[1], "trials_per_min"),
        "trials_per_min_2": mean(by_c[2], "trials_per_min"),
        "trials_per_min_span_1": mean(by_c[1], "trials_per_min_span"),
        "trials_per_min_span_2": mean(by_c[2], "trials_per_min_span"),
    }
    summary["speedup"] = C.ratio(summary["trials_per_min_2"], summary["trials_per_min_1"])
    summary["speedup_span"] = C.ratio(summary["trials_per_min_span_2"], summary["trials_per_min_span_1"])
    summary["target_at_least"] = 1.7
    summary["target_met"] = summary["speedup"] is not None and summary["speedup"] >= 1.7
    summary["target_met_span"] = summary["speedup_span"] is not None and summary["speedup_span"] >= 1.7

    payload = {
        "benchmark": "scaling",
        "smoke": args.smoke,
        "machine": info,
        "settings": {
            "trials": n,
            "work_s": work_s,
            "calibration": cal,
            "work": f"{cal['iters']} float32 {MATRIX}x{MATRIX} matmuls on 1 thread per trial (calibrated in the driver)",
            "ray_init": f"ray.init(num_cpus={cpus}, num_gpus={n_gpus or None})",
            "ray_init_s": ray_init_s,
            "service": "automl.search(n_trials=N, max_steps=1, scheduler='fifo', cpus_per_trial=1, max_concurrent=1|2), TPE",
            "repeats": args.repeats,
            "plots": plots,
        },
        "cpu": {"rows": cpu_rows, **summary},
        "gpu": gpu,
    }
    C.write_json(args.out, payload)

    out.print(
        C.table(
            f"CPU-bound trials through the service ({n} trials of ~{work_s:g} s CPU each, 2 CPUs)",
            [
                "trials at once",
                "wall s",
                "trials / min",
                "span s",
                "trials / min (span)",
                "mean trial s",
                "worker pids",
                "complete",
            ],
            [
                [
                    r["concurrent"],
                    r["wall_s"],
                    r["trials_per_min"],
                    r.get("span_s"),
                    r["trials_per_min_span"],
                    r.get("mean_trial_s"),
                    r.get("worker_pids"),
                    r["complete"],
                ]
                for r in cpu_rows
            ],
            caption="span: first trial start to last trial end, as the trials logged them (steady state, "
            "without the job's start-up and wind-down). mean trial s: each trial's own time, above the calibrated work when trials shared the CPUs.",
        )
    )
    out.print(
        C.table(
            "Speed-up of 2 trials at once over 1",
            ["measure", "value", "target"],
            [
                ["trials / min over the whole call", summary["speedup"], C.verdict(summary["speedup"], 1.7, at_most=False)],
                [
                    "trials / min over the trials' span",
                    summary["speedup_span"],
                    C.verdict(summary["speedup_span"], 1.7, at_most=False),
                ],
            ],
        )
    )
    if "rows" in gpu:
        out.print(
            C.table(
                f"GPU packing ({gpu['trials']} trials of {gpu['steps_per_trial']} MLP steps, {gpu['gpus']} GPU(s)"
                + (", FAKE: figures meaningless" if gpu["fake"] else "")
                + ")",
                [
                    "gpus_per_trial",
                    "trials / GPU",
                    "wall s",
                    "trials / hour",
                    "vs 1 per GPU",
                    "vs 1 per GPU (span)",
                    "mean trial s",
                    "devices",
                ],
                [
                    [
                        r["gpus_per_trial"],
                        r["trials_per_gpu"],
                        r["wall_s"],
                        r["trials_per_hour"],
                        r["vs_one_per_gpu"],
                        r["vs_one_per_gpu_span"],
                        r.get("mean_trial_s"),
                        ",".join(r.get("devices", [])),
                    ]
                    for r in gpu["rows"]
                ],
            )
        )
    else:
        out.print(f"GPU packing: {gpu['skipped']}")
    out.print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
