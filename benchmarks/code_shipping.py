"""Submit-to-first-trial time with code shipping and without (issue 16), side by side in one run.

A generated project of each size (1 MB and 50 MB; MB = 2**20 bytes): the objective's module plus
filler files of random bytes, which the zip cannot compress away. Each job is submitted as
``automl submit`` does it (``check_job_file``, ``check_tracking``, ``enqueue``; no interpreter
start) and run at once by a runner in this process (``Runner.run(job_id=...)``, as ``automl run``
does), one trial, on one local Ray shared by every job, three ways:

(a) shipped: the default; the folder is packed at submit and stored in the job store, the runner
    unpacks it and runs the job in its own process, the trial imports the objective from the package;
(b) not shipped: ``code: {ship: false}``; the trial gets the objective from the spec's folder;
(c) shipped to a cluster: the runner's ``RAY_ADDRESS`` is this local Ray's address, so the job runs
    in a Ray driver of its own (``automl.service.job_driver``) with the package as Ray's
    ``working_dir``, as on a cluster. A job that ships nothing runs in the runner's process on a
    cluster too, so (b) is its baseline as well.

Every submit writes a new objective module (a new name), so each package has a new hash: no runner
or Ray cache holds it, as when a user edits their code between submits. Submit-to-first-trial is
from the start of the submit call to the first trial's objective starting, read from the clock of
the objective itself (it appends ``time.time()`` to a file). The runner's share is split by the job
store's timestamps (the claim, the ``resources`` event when the search starts) and the job's
``phases`` event. Before the jobs, the pack and unpack of each project are timed alone.

    .venv/bin/python benchmarks/code_shipping.py [--smoke] [--out PATH] [--sizes 1,50] [--repeats 5]
"""

from __future__ import annotations

import json
import random
import re
import signal
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

MB = 1024 * 1024
CHUNK = 256 * 1024  # the filler's file size: a 50 MB project is 200 files
AIM_ADDED_S = 2.0  # the aim for a 1 MB project: shipping adds under 2 s
VARIANTS = {
    "shipped": "(a) shipped, runner's process",
    "not_shipped": "(b) not shipped (code.ship: false)",
    "own_driver": "(c) shipped, job's own driver (RAY_ADDRESS)",
}
OBJECTIVE = '''"""The benchmark's objective: notes when it starts and where it was imported from."""

import json
import os
import time

MARKS = {marks!r}


def objective(params):
    started = time.time()
    working_dir = None
    try:
        import ray

        working_dir = (ray.get_runtime_context().runtime_env or {{}}).get("working_dir")
    except Exception:  # noqa: BLE001 - a note, not the trial's business
        pass
    with open(MARKS, "a", encoding="utf-8") as marks:
        marks.write(json.dumps({{"t": started, "file": __file__, "working_dir": working_dir, "pid": os.getpid()}}) + "\\n")
    return float(params["x"]) ** 2
'''


# -- the project -------------------------------------------------------------------------------


def make_project(folder: Path, size_mb: float, seed: int) -> dict[str, Any]:
    """A project folder of ``size_mb``: filler files of random bytes (the objective is written per submit)."""
    rng = random.Random(seed)
    (folder / "filler").mkdir(parents=True)
    left, index = int(size_mb * MB), 0
    while left > 0:
        size = min(CHUNK, left)
        (folder / "filler" / f"blob_{index:04d}.bin").write_bytes(rng.randbytes(size))
        left -= size
        index += 1
    return {"size_mb": size_mb, "filler_files": index, "filler_bytes": int(size_mb * MB)}


def write_job(folder: Path, variant: str, marks: Path, tag: str) -> Path:
    """A new objective module (a new name: a new package hash) and the job's spec beside it."""
    import yaml

    for old in folder.glob("bench_objective_*.py"):
        old.unlink()
    module = f"bench_objective_{uuid.uuid4().hex[:10]}"
    (folder / f"{module}.py").write_text(OBJECTIVE.format(marks=str(marks)), encoding="utf-8")
    spec: dict[str, Any] = {
        "name": tag,
        "objective": f"{module}:objective",
        "metric": "loss",
        "mode": "min",
        "space": {"x": {"type": "float", "low": -1.0, "high": 1.0}},
        "sampler": {"name": "random"},
        "scheduler": {"name": "fifo"},
        "budget": {"trials": 1, "max_epochs": 1},
        "tracking": {"register_model": False, "plots": False},
    }
    if variant == "not_shipped":
        spec["code"] = {"ship": False}
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def time_pack(folder: Path, repeats: int, workdir: Path) -> dict[str, Any]:
    """``pack_folder`` and ``unpack`` of the project alone, ``repeats`` times each."""
    from automl.shipping.code import pack_folder, unpack

    packs: list[float] = []
    unpacks: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        package = pack_folder(folder)
        packs.append(time.perf_counter() - start)
        start = time.perf_counter()
        unpack(package.content, package.sha256, workdir / f"unpack-{uuid.uuid4().hex[:8]}")  # a cache of its own: no hit
        unpacks.append(time.perf_counter() - start)
    return {
        "files": len(package.files),
        "unpacked_bytes": package.size,
        "package_bytes": len(package.content),
        "package_over_unpacked": len(package.content) / package.size,
        "pack_s": packs,
        "pack_median_s": C.median(packs),
        "unpack_s": unpacks,
        "unpack_median_s": C.median(unpacks),
    }


# -- one job -----------------------------------------------------------------------------------

PHASE = re.compile(r"([\w-]+) (\d+(?:\.\d+)?) s(?: \([^)]*\))?")


def parse_phases(line: str) -> dict[str, float]:
    """The job's ``phases`` event (engine/phases.py) as ``{phase: seconds}`` (written to 0.1 s)."""
    return {m.group(1): float(m.group(2)) for m in PHASE.finditer(line.rsplit(";", 1)[0])}


def trial_created(storage_url: str, study_name: str) -> float:
    """When the job's first trial was created (Optuna's ask, as Tune asked the searcher for it), as ``time.time()``."""
    import optuna

    study = optuna.load_study(study_name=study_name, storage=storage_url)
    return min(t.datetime_start for t in study.get_trials(deepcopy=False) if t.datetime_start).timestamp()  # local time


def epoch(at: datetime | None) -> float | None:
    """The job store's naive-UTC timestamps as ``time.time()`` seconds."""
    return None if at is None else at.replace(tzinfo=UTC).timestamp()


def run_job(store: Any, settings: Any, project: Path, variant: str, marks: Path, tag: str) -> dict[str, Any]:
    """Submit one job as ``automl submit`` does, run it here at once, and time its way to the first trial."""
    from automl.service import check_job_file, check_tracking, enqueue
    from automl.service.runner import Runner

    spec_path = write_job(project, variant, marks, tag)
    t0 = time.time()
    checked = check_job_file(spec_path)  # the spec checked and planned; the folder packed (a), (c)
    check_tracking(checked.spec)
    t_checked = time.time()
    job = enqueue(store, checked)  # the package stored in the job store, the job queued
    t_submitted = time.time()
    # A runner that is waiting for work claims it at once (a worker polls every 2 s by default: left out).
    runner = Runner(store, settings, concurrency=1, poll_s=0.2)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        runner.run(job_id=job.id)
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    t_done = time.time()
    final = store.get(job.id)
    if final.state != "succeeded":
        raise RuntimeError(f"{tag}: job {job.id} ended {final.state}: {final.error}")
    events = store.events(job.id, limit=100)
    started = [e for e in events if e.kind == "resources"]
    phases_line = next((e.message for e in reversed(events) if e.kind == "phases"), "")
    created = trial_created(settings.storage_url, final.study_name)
    seen = [json.loads(line) for line in marks.read_text(encoding="utf-8").splitlines() if line.strip()]
    first = min(seen, key=lambda m: m["t"])
    claimed = epoch(final.started_at)
    search_start = epoch(started[0].at) if started else None
    where = imported_from(first, project, settings.home)
    expected = {"shipped": "runner's code cache", "not_shipped": "project folder", "own_driver": "ray working_dir"}[variant]
    if where != expected:
        raise RuntimeError(f"{tag}: the trial imported its objective from {where} ({first}), not from the {expected}")
    return {
        "variant": variant,
        "job_id": job.id,
        "code_sha256": final.code_sha256,
        "submit_to_first_trial_s": first["t"] - t0,
        "submit_s": t_submitted - t0,
        "check_s": t_checked - t0,
        "enqueue_s": t_submitted - t_checked,
        "queue_s": None if claimed is None else claimed - t_submitted,
        "claim_to_search_start_s": None if claimed is None or search_start is None else search_start - claimed,
        "search_start_to_trial_created_s": None if search_start is None else created - search_start,
        "trial_created_to_objective_s": first["t"] - created,
        "job_s": t_done - t0,
        "phases": parse_phases(phases_line),
        "phases_line": phases_line,
        "imported_from": where,
        "objective_file": first["file"],
        "working_dir": first["working_dir"],
        "driver_log": (settings.home / "drivers" / f"{job.id}.log").is_file(),
    }


def imported_from(mark: dict[str, Any], project: Path, home: Path) -> str:
    """Where the trial got the objective: the project folder, the runner's unpacked package, or a runtime_env with
    the package as working_dir (c; on one machine its trial imports the driver's unpacked copy, first on its path)."""
    if mark.get("working_dir"):
        return "ray working_dir"
    file = Path(mark["file"]).resolve()
    if file.is_relative_to(project.resolve()):
        return "project folder"
    if file.is_relative_to((home / "code").resolve()):
        return "runner's code cache"
    return f"elsewhere: {file}"


# -- summary -----------------------------------------------------------------------------------


def spread(values: list[float]) -> dict[str, Any]:
    return {"values": values, "median": C.median(values), "min": min(values), "max": max(values)}


PARTS = ("submit_s", "queue_s", "claim_to_search_start_s", "search_start_to_trial_created_s", "trial_created_to_objective_s")


def summarize(runs: list[dict[str, Any]], sizes: list[float]) -> dict[str, Any]:
    """Per size and variant: submit-to-first-trial and its parts (median, min, max over the repeats),
    and what shipping adds over (b), paired within each repeat."""
    summary: dict[str, Any] = {}
    for size in sizes:
        by = {v: [r for r in runs if r["size_mb"] == size and r["variant"] == v] for v in VARIANTS}
        row: dict[str, Any] = {}
        for variant, rows in by.items():
            row[variant] = {"submit_to_first_trial_s": spread([r["submit_to_first_trial_s"] for r in rows])}
            for part in PARTS:
                values = [r[part] for r in rows if r[part] is not None]
                row[variant][part] = spread(values) if values else None
            if variant != "not_shipped":
                row[variant]["added_s"] = spread(
                    [
                        a["submit_to_first_trial_s"] - b["submit_to_first_trial_s"]
                        for a, b in zip(rows, by["not_shipped"], strict=True)
                    ]
                )
        summary[f"{size:g}"] = row
    return summary


# -- main --------------------------------------------------------------------------------------


def main() -> int:
    def extra(p: Any) -> None:
        p.add_argument("--sizes", help="project sizes in MB (2**20 bytes), comma-separated (default 1,50; smoke 0.1)")
        p.add_argument("--repeats", type=int, help="jobs per variant and size, the variants alternating (default 5; smoke 1)")
        p.add_argument("--seed", type=int, default=0, help="the filler's random bytes")

    args = C.parse_args("code_shipping", "Submit-to-first-trial time with code shipping and without (issue 16).", extra)
    sizes = [float(s) for s in (args.sizes or ("0.1" if args.smoke else "1,50")).split(",")]
    repeats = args.repeats or (1 if args.smoke else 5)
    warm = not args.smoke
    out = C.console()
    C.quiet_logging()
    info = C.machine()

    with tempfile.TemporaryDirectory(prefix="automl-bench-shipping-") as tmp:
        workdir = Path(tmp)
        home = workdir / "automl-home"
        t_ray = time.perf_counter()
        C.init_ray()
        ray_init_s = time.perf_counter() - t_ray
        import ray

        from automl.service import open_job_store
        from automl.settings import resolve_settings

        gcs_address = ray.get_runtime_context().gcs_address
        marks_dir = workdir / "marks"
        marks_dir.mkdir()
        projects: dict[str, Path] = {}
        packing: dict[str, Any] = {}
        for i, size in enumerate(sizes):
            key = f"{size:g}"
            projects[key] = workdir / f"project-{key}mb"
            with out.status(f"project of {key} MB: generated, packed and unpacked alone"):
                made = make_project(projects[key], size, args.seed + i)
                write_job(projects[key], "shipped", marks_dir / "unused.jsonl", "pack")  # the project as a job ships it
                packing[key] = {**made, **time_pack(projects[key], repeats, workdir)}
        count = 0

        def one(size: float, variant: str, label: str) -> dict[str, Any]:
            nonlocal count
            count += 1
            tag = f"ship-{variant.replace('_', '-')}-{count}"
            # (c): the runner's RAY_ADDRESS names this local Ray, as a runner on a cluster has it; its
            # job's driver (a child process) joins the same Ray.
            address = gcs_address if variant == "own_driver" else None
            with C.service_env(home), C.env(RAY_ADDRESS=address, AUTOML_TRIAL_STORAGE=None, AUTOML_DATA_CACHE=None):
                settings = resolve_settings()
                store = open_job_store(settings)
                with out.status(f"{label}: {size:g} MB, {VARIANTS[variant]}"):
                    run = run_job(store, settings, projects[f"{size:g}"], variant, marks_dir / f"{tag}.jsonl", tag)
            return {"size_mb": size, **run}

        # Imports, the stores' schemas, the writer process, Ray's worker pool: paid once, not counted.
        warmups = [one(sizes[0], v, "warm-up") for v in VARIANTS] if warm else []
        runs: list[dict[str, Any]] = []
        names = list(VARIANTS)
        for rep in range(repeats):
            order = names[rep % len(names) :] + names[: rep % len(names)]  # each variant first in turn
            for size in sizes:
                for variant in order:
                    run = one(size, variant, f"repeat {rep + 1}/{repeats}")
                    runs.append({**run, "repeat": rep})

    summary = summarize(runs, sizes)
    first_size = f"{sizes[0]:g}"
    added = {v: summary[first_size][v]["added_s"]["median"] for v in ("shipped", "own_driver")}
    payload = {
        "benchmark": "code_shipping",
        "smoke": args.smoke,
        "machine": info,
        "settings": {
            "sizes_mb": sizes,
            "mb": "2**20 bytes",
            "repeats": repeats,
            "filler": f"files of {CHUNK // 1024} KiB of random bytes (seeded), so the deflated zip is as large as the folder",
            "job": "one trial of a no-op objective (random sampler, FIFO, 1 CPU), tracking without model or plots",
            "variants": {
                "shipped": "the default: packed at submit into the job store, unpacked by the runner, the job run in the "
                "runner's process on the local Ray, the trial importing the objective from the unpacked package",
                "not_shipped": "code: {ship: false}: the trial gets the objective from the spec's folder (shipped by value)",
                "own_driver": "shipped, with the runner's RAY_ADDRESS set to this local Ray's address: the job runs in a Ray "
                "driver process of its own (automl.service.job_driver) with the package as Ray's working_dir, as on a cluster",
            },
            "definition": "submit_to_first_trial_s: from the start of the submit call (check_job_file, check_tracking, "
            "enqueue: what `automl submit` runs, without its interpreter start) to the first trial's objective starting "
            "(time.time() in the objective, same machine clock); the runner, in this process, claims the job as soon as "
            "the submit returns (a worker's poll interval is left out). Parts: submit_s (check_s: spec check and plan, "
            "the pack; enqueue_s: the package into the job store, the row), queue_s (submit returned to the job store's "
            "claim time), claim_to_search_start_s (claim to the job's `resources` event: unpack, plan, and for (c) the "
            "driver process starting and joining Ray with the package as its working_dir), "
            "search_start_to_trial_created_s (tracking, set-up, Tune's start, to the first trial's Optuna ask), "
            "trial_created_to_objective_s (the trial's actor starting, in the job's runtime_env for (c), to the objective's call)",
            "added": "summary[size][variant].added_s: the variant's submit_to_first_trial_s minus (b)'s, within each repeat",
            "order": "per repeat, every size, the three variants in turn, each variant first in one repeat; "
            "every submit writes a new objective module, so every package has a new hash (no cache holds it)",
            "warmups": "one job per variant at the first size before the repeats (imports, schemas, the writer "
            "process, Ray's worker pool), not counted"
            if warm
            else "none (smoke)",
            "ray_init": "ray.init(address='local', num_cpus=2), once, shared by every job; (c)'s drivers join it",
            "ray_init_s": ray_init_s,
        },
        "packing": packing,
        "runs": runs,
        "warmups": warmups,
        "summary": summary,
        "aim": {
            "size_mb": sizes[0],
            "added_at_most_s": AIM_ADDED_S,
            "added_shipped_median_s": added["shipped"],
            "added_own_driver_median_s": added["own_driver"],
            "shipped_met": added["shipped"] < AIM_ADDED_S,
            "own_driver_met": added["own_driver"] < AIM_ADDED_S,
        },
    }
    C.write_json(args.out, payload)

    out.print(
        C.table(
            "The package alone",
            ["project", "files", "unpacked MB", "package MB", "pack s (median)", "unpack s (median)"],
            [
                [
                    f"{key} MB",
                    p["files"],
                    p["unpacked_bytes"] / MB,
                    p["package_bytes"] / MB,
                    p["pack_median_s"],
                    p["unpack_median_s"],
                ]
                for key, p in packing.items()
            ],
            caption=f"pack_folder and unpack, {repeats} time(s) each; the zip is deflated (level 6), the filler random.",
        )
    )

    def median(part: dict[str, Any] | None) -> float | None:
        return None if part is None else part["median"]

    rows = []
    for key, row in summary.items():
        for variant, label in VARIANTS.items():
            s = row[variant]
            total, add = s["submit_to_first_trial_s"], s.get("added_s")
            rows.append(
                [
                    f"{key} MB",
                    label,
                    total["median"],
                    f"{C.fmt(total['min'])} to {C.fmt(total['max'])}",
                    median(s["submit_s"]),
                    median(s["claim_to_search_start_s"]),
                    median(s["search_start_to_trial_created_s"]),
                    median(s["trial_created_to_objective_s"]),
                    None if add is None else add["median"],
                    "" if add is None else f"{C.fmt(add['min'])} to {C.fmt(add['max'])}",
                ]
            )
    out.print(
        C.table(
            f"Submit to first trial, s (median of {repeats}, the variants alternating)",
            [
                "project",
                "variant",
                "submit to first trial",
                "range",
                "submit",
                "claim to search",
                "search to trial created",
                "trial created to objective",
                "added over (b)",
                "range",
            ],
            rows,
            caption="submit: check, plan, pack, store; claim to search: unpack, plan, and for (c) the driver process "
            "joining Ray with the working_dir; search to trial created: tracking, Tune's start, the first ask; trial "
            "created to objective: the trial's actor starting (for (c) in the job's runtime_env); added: minus (b) of "
            f"the same repeat. Parts are medians of their own. ray.init {ray_init_s:.1f} s, excluded.",
        )
    )
    out.print(
        f"Aim, {sizes[0]:g} MB: shipping adds under {AIM_ADDED_S:g} s: (a) {C.fmt(added['shipped'])} s "
        f"{'met' if added['shipped'] < AIM_ADDED_S else 'missed'}; (c) {C.fmt(added['own_driver'])} s "
        f"{'met' if added['own_driver'] < AIM_ADDED_S else 'missed'}"
    )
    out.print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
