#!/usr/bin/env bash
# Runs ON a lent GPU machine (the device tool's `run`), in the repo root: installs the wheels that
# scripts/device/wheels.sh packed here, then runs the GPU checks with their output under $OUT.
#
#   call 1: carry [".whl/part1"], command "bash scripts/device/gpu-check.sh"   -> stores part1, exits 3
#   call 2: carry [".whl/part2"], command "bash scripts/device/gpu-check.sh"   -> installs, runs the checks
#
# Every call copies the parts it carried (.whl/partN/) into $AUTOML_WHEEL_STORE (/tmp/automl-wheels),
# which lasts while the machine stays warm (30 s after a call). Until every piece that MANIFEST lists
# is there with its sha256, it names the missing parts and exits 3. Then it joins split wheels,
# checks every wheel's sha256, installs them with pip --target $AUTOML_SITE (/tmp/site; skipped when
# that set is installed already), and with PYTHONPATH=$AUTOML_SITE:$PWD runs:
#   - nvidia-smi, python/torch/ray versions, an import check   ($OUT/setup.log)
#   - python3 -m pytest -m gpu tests/automl/test_gpu.py          ($OUT/gpu_tests.log)
#   - python3 benchmarks/scaling.py $SCALING_ARGS                ($OUT/scaling_gpu.log, $OUT/scaling_gpu.json)
# Exit: 0 all passed, 1 a check failed, 3 parts missing, 4 install or import failed.
#
# Options: --install-only (stop after the import check). Environment: PYTHON (python3),
# SCALING_ARGS (default below: ~3 min on an H100), TEST_TIMEOUT (180 s), SCALING_TIMEOUT (300 s).
# Locally (no GPU, a Python 3.12 venv with the device's packages) the same steps simulate the device:
#   OUT=/tmp/out PYTHON=/tmp/devsim/bin/python3 AUTOML_SITE=/tmp/devsim-site bash scripts/device/gpu-check.sh --install-only
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 4

PY=${PYTHON:-python3}
STORE=${AUTOML_WHEEL_STORE:-/tmp/automl-wheels}
SITE=${AUTOML_SITE:-/tmp/site}
OUT=${OUT:-/tmp/gpu-check-out}
SCALING_ARGS=${SCALING_ARGS:---trials 8 --gpu-trials 8 --gpu-steps 2000}
TEST_TIMEOUT=${TEST_TIMEOUT:-180}
SCALING_TIMEOUT=${SCALING_TIMEOUT:-300}
mode=all
[ "${1:-}" = --install-only ] && mode=install
mkdir -p "$STORE/pieces" "$OUT"
start=$SECONDS
say() { echo "[gpu-check $((SECONDS - start))s] $*"; }

# 1. Take the parts carried in this call.
for dir in .whl/part*/; do
  [ -f "$dir/MANIFEST" ] || continue
  cp -f "$dir"* "$STORE/pieces/"
  cp -f "$dir/MANIFEST" "$STORE/MANIFEST"
  say "took ${dir%/}: $(($(du -sk "$dir" | cut -f1) / 1024)) MiB"
done
manifest=$STORE/MANIFEST
if [ ! -f "$manifest" ]; then
  say "no part here and none stored in $STORE: run bash scripts/device/wheels.sh here, then carry .whl/part1"
  exit 3
fi

# 2. Every piece there, with its checksum?
missing=$(while read -r kind sha _size part name; do
  [ "$kind" = piece ] || continue
  f=$STORE/pieces/$name
  if [ ! -f "$f" ] || [ "$(sha256sum "$f" | cut -d' ' -f1)" != "$sha" ]; then echo "$part"; fi
done < "$manifest" | sort -uV | paste -sd' ')
if [ -n "$missing" ]; then
  say "missing (or changed) parts: $missing"
  say "next call, within 30 s (the machine keeps $STORE while warm): carry .whl/${missing%% *} and run bash scripts/device/gpu-check.sh again"
  exit 3
fi

# 3. Join split wheels, check each wheel, install once per wheel set.
setid=$(grep '^wheel ' "$manifest" | sha256sum | cut -c1-16)
if [ -f "$SITE/.automl-wheels-$setid" ]; then
  say "wheel set $setid already installed in $SITE"
else
  rm -rf "$STORE/wheels" && mkdir -p "$STORE/wheels"
  while read -r kind sha _size wheel pieces; do
    [ "$kind" = wheel ] || continue
    IFS=, read -ra parts_of <<< "$pieces"
    (cd "$STORE/pieces" && cat "${parts_of[@]}") > "$STORE/wheels/$wheel"
    if [ "$(sha256sum "$STORE/wheels/$wheel" | cut -d' ' -f1)" != "$sha" ]; then
      say "checksum mismatch: $wheel"; exit 4
    fi
  done < "$manifest"
  say "$(find "$STORE/wheels" -name '*.whl' | wc -l) wheels verified; installing into $SITE"
  rm -rf "$SITE"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$STORE"/wheels/*.whl \
    || { say "pip install failed"; exit 4; }
  touch "$SITE/.automl-wheels-$setid"
  say "installed"
fi
export PYTHONPATH=$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1

# 4. What machine, which versions; do the imports work?
{
  command -v nvidia-smi >/dev/null && nvidia-smi || echo "nvidia-smi: not found"
  "$PY" - <<'EOF'
import importlib.metadata as md, platform, sys
print("python", platform.python_version(), sys.executable)
names = ["torch", "ray", "optuna", "mlflow-skinny", "sqlalchemy", "alembic", "pydantic", "plotly", "numpy", "pandas",
         "pyarrow", "scikit-learn", "protobuf", "click", "rich", "typer", "aiohttp", "packaging"]
vs = []
for n in names:
    try:
        vs.append(f"{n} {md.version(n)}")
    except md.PackageNotFoundError:
        vs.append(f"{n} MISSING")
print(", ".join(vs))
try:
    import torch
    print("torch", torch.__version__, "cuda available:", torch.cuda.is_available(),
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
except Exception as exc:  # reported, the import check below fails on it
    print("torch: cannot import:", exc)
EOF
  # Requirements of the carried packages that the machine's own versions do not meet (if any).
  carried=$(grep '^wheel ' "$manifest" | awk '{print $4}' | cut -d- -f1 | tr '_' '-' | paste -sd'|')
  "$PY" -m pip check 2>/dev/null | grep -iE "^($carried) " | sed 's/^/pip check: /' | head -20
  "$PY" - <<'EOF'
import importlib, sys
failed = []
for name in ["ray", "ray.tune", "ray.tune.search.optuna", "optuna", "optuna.visualization", "cmaes", "mlflow",
             "mlflow.pytorch", "mlflow.store.tracking.sqlalchemy_store", "sqlalchemy", "alembic", "pydantic",
             "plotly", "matplotlib", "sklearn", "pandas", "pyarrow", "yaml", "rich", "typer",
             "automl.engine.run", "automl.engine.plan", "automl.engine.summary", "automl.tracking", "automl.plots", "automl.engine.study_search", "automl.engine.callbacks",
             "automl.service", "automl.cli", "torch", "workers.trainable", "workers.trainers.mlp"]:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(name)
        print(f"import {name}: {type(exc).__name__}: {exc}")
print("imports:", "FAILED " + " ".join(failed) if failed else "ok")
sys.exit(1 if failed else 0)
EOF
} 2>&1 | tee "$OUT/setup.log"
imports_rc=${PIPESTATUS[0]}
[ "$imports_rc" = 0 ] || { say "the import check failed (see above); stopping"; exit 4; }
[ "$mode" = install ] && { say "installed and imported (--install-only)"; exit 0; }

# 5. The GPU tests, then the scaling benchmark.
say "pytest -m gpu tests/automl/test_gpu.py (at most ${TEST_TIMEOUT}s)"
timeout -k 10 "$TEST_TIMEOUT" "$PY" -m pytest -m gpu tests/automl/test_gpu.py -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.log"
tests_rc=${PIPESTATUS[0]}

say "benchmarks/scaling.py $SCALING_ARGS (at most ${SCALING_TIMEOUT}s)"
# shellcheck disable=SC2086
timeout -k 10 "$SCALING_TIMEOUT" "$PY" benchmarks/scaling.py --out "$OUT/scaling_gpu.json" $SCALING_ARGS 2>&1 | tee "$OUT/scaling_gpu.log"
scaling_rc=${PIPESTATUS[0]}

grep -q 'cuda available: True' "$OUT/setup.log" || say "WARNING: torch sees no CUDA GPU here: the GPU tests skip and scaling.py skips its GPU part"
say "gpu tests: exit $tests_rc$( [ "$tests_rc" = 124 ] && echo ' (timed out)'); scaling: exit $scaling_rc$( [ "$scaling_rc" = 124 ] && echo ' (timed out)')"
if [ -f "$OUT/scaling_gpu.json" ]; then
  "$PY" - "$OUT/scaling_gpu.json" <<'EOF'
import json, sys
gpu = json.load(open(sys.argv[1]))["gpu"]
if "rows" not in gpu:
    print("scaling GPU:", gpu)
for r in gpu.get("rows", []):
    print(f"scaling GPU: gpus_per_trial {r['gpus_per_trial']:g}: {r['trials_per_hour']:.0f} trials/h "
          f"({r['vs_one_per_gpu'] or 0:.2f}x one per GPU; span {r['vs_one_per_gpu_span'] or 0:.2f}x), "
          f"{r['complete']}/{r['trials']} complete, devices {r.get('devices')}")
EOF
fi
[ "$tests_rc" = 0 ] && [ "$scaling_rc" = 0 ]
