"""Run several benchmark scripts' smokes one after another in this one interpreter, as
``python benchmarks/NAME.py --smoke --out ROOT/NAME/x.json`` would run each (tests/benchmarks/test_smoke.py).

    python tests/benchmarks/smoke_batch.py ROOT NAME [NAME ...]

Each script runs as ``__main__`` (``runpy.run_path``), in ``ROOT/NAME`` as its working directory,
with its file-descriptor-level stdout and stderr in ``ROOT/NAME/stdout.txt`` and ``stderr.txt``
(its child processes' output included) and its exit code in ``ROOT/NAME/exit_code``; one that
raises or exits non-zero does not stop the next. What they share is what a fresh interpreter
would pay for each: Python's start, the imports (Ray, Optuna, MLflow, torch), and a local Ray
(``_common.init_ray`` reuses one that is up).

The order: ``overhead`` first, in the fresh interpreter, as when it runs alone (its first path's
machine CPU figure is a few ms of work, the imports of its first timed call included: with them
done already it rounds to 0); then ``scaling``, which starts its own Ray with ``ray.init``, on a
Ray shut down for it; then the rest, on scaling's Ray.
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
FIRST = ("overhead", "scaling")  # see the module docstring


def run_one(name: str, root: Path) -> int:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    script = BENCHMARKS / f"{name}.py"
    if name == "scaling" and "ray" in sys.modules:
        import ray

        ray.shutdown()  # scaling calls ray.init itself
    os.chdir(folder)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(folder / "stdout.txt", "wb") as out, open(folder / "stderr.txt", "wb") as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            sys.argv = [str(script), "--smoke", "--out", str(folder / "x.json")]
            try:
                runpy.run_path(str(script), run_name="__main__")
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception:  # noqa: BLE001 - the script's failure is its test's to report
                traceback.print_exc()
                code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
    (folder / "exit_code").write_text(f"{code}\n")
    return code


def main() -> int:
    root, names = Path(sys.argv[1]), sys.argv[2:]
    for name in sorted(names, key=lambda n: FIRST.index(n) if n in FIRST else len(FIRST)):
        run_one(name, root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
