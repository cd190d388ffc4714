#!/usr/bin/env bash
# Download here the wheels that a lent GPU machine lacks for the GPU checks, and pack them into
# parts small enough to carry one per device call (scripts/device/gpu-check.sh runs there).
#
#   bash scripts/device/wheels.sh          # -> .whl/wheels/*.whl, .whl/part1 .. .whl/partN, each with MANIFEST
#   PART_MIB=50 bash scripts/device/wheels.sh
#
# The device's python3 (3.12, torch 2.11 CUDA, numpy, pandas, pyarrow, scikit-learn, matplotlib,
# aiohttp, click, rich, typer, protobuf, ... see the device tool's KINDS.md) has none of the packages
# below and nothing can be fetched there. The list is what the GPU checks import (traced across the
# driver, Ray's workers and Ray's agents while running tests/automl/test_gpu.py's bodies and
# benchmarks/scaling.py --fake-gpus 2 on a Python with only the device's packages): ray[tune] and
# its missing needs, optuna, cmaes, mlflow-skinny (the tracking client, SQLite store and
# mlflow.pytorch; the full `mlflow` adds the UI server: Flask, gunicorn, graphene, ..., not used),
# sqlalchemy, alembic, pydantic, plotly, and theirs. psycopg is left out: only postgresql:// URLs
# load it. Versions are those installed in .venv (pip freeze), cp312 manylinux x86-64 wheels.
# Idempotent: wheels already downloaded are kept; parts are rebuilt from them every run.
set -euo pipefail
cd "$(dirname "$0")/../.."

PACKAGES=(
  ray tensorboardx jsonschema jsonschema-specifications referencing rpds-py
  optuna cmaes colorlog alembic mako sqlalchemy pydantic pydantic-core annotated-types typing-inspection
  mlflow-skinny mlflow-tracing cachetools databricks-sdk google-auth pyasn1 pyasn1-modules cryptography cffi pycparser
  fastapi starlette uvicorn gitpython gitdb smmap importlib-metadata python-dotenv sqlparse
  opentelemetry-api opentelemetry-proto opentelemetry-sdk opentelemetry-semantic-conventions
  plotly
)
PART_MIB=${PART_MIB:-56}  # a call carries the working tree (~5 MiB) + one part: 64 MiB at most
WHL=.whl
PY=.venv/bin/python
[ -x "$PY" ] || { echo "wheels.sh: needs .venv (bash scripts/test.sh makes it): versions come from its pip freeze" >&2; exit 1; }

grep -qxF '/.whl/' .gitignore || { echo "wheels.sh: .gitignore must list /.whl/" >&2; exit 1; }
mkdir -p "$WHL/wheels"

# name==version for each package, from .venv.
freeze=$("$PY" -m pip freeze 2>/dev/null)
reqs=()
for name in "${PACKAGES[@]}"; do
  line=$(printf '%s\n' "$freeze" | "$PY" -c '
import re, sys
want = re.sub(r"[-_.]+", "-", sys.argv[1]).lower()
for line in sys.stdin:
    name, sep, version = line.strip().partition("==")
    if sep and re.sub(r"[-_.]+", "-", name).lower() == want:
        print(f"{want}=={version}"); break
' "$name")
  [ -n "$line" ] || { echo "wheels.sh: $name is not installed in .venv" >&2; exit 1; }
  reqs+=("$line")
done
printf '%s\n' "${reqs[@]}" > "$WHL/requirements.txt"

# Download what is not there yet (one wheel per name==version; others of the same name are removed).
missing=$("$PY" - "$WHL/wheels" "$WHL/requirements.txt" <<'EOF'
import pathlib, re, sys
have = {}
for p in pathlib.Path(sys.argv[1]).glob("*.whl"):
    name, version = p.name.split("-")[:2]
    have.setdefault(re.sub(r"[-_.]+", "-", name).lower(), []).append((version, p))
for req in pathlib.Path(sys.argv[2]).read_text().split():
    name, version = req.split("==")
    found = have.pop(name, [])
    for v, p in found:
        if v != version:
            p.unlink(); print(f"removed {p.name}", file=sys.stderr)
    if not any(v == version for v, _ in found):
        print(req)
for name, found in have.items():  # no longer wanted
    for _, p in found:
        p.unlink(); print(f"removed {p.name}", file=sys.stderr)
EOF
)
if [ -n "$missing" ]; then
  # shellcheck disable=SC2086
  echo "downloading: $(printf '%s ' $missing)"
  # shellcheck disable=SC2086
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$WHL/wheels" $missing 2>&1 \
    | grep -v '^WARNING: Location .* is ignored' || true
fi

# Pack: a wheel larger than a part is cut into part-sized pieces (NAME.whl.00, .01, ...: `cat` joins
# them); then pieces go into parts, largest first, each into the first part with room.
"$PY" - "$WHL" "$PART_MIB" <<'EOF'
import datetime, hashlib, pathlib, re, shutil, subprocess, sys

whl, limit = pathlib.Path(sys.argv[1]), int(float(sys.argv[2]) * 2**20)
reqs = (whl / "requirements.txt").read_text().split()
wheels = sorted((whl / "wheels").glob("*.whl"))
names = {re.sub(r"[-_.]+", "-", p.name.split("-")[0]).lower() for p in wheels}
lacking = [r for r in reqs if r.split("==")[0] not in names]
if lacking or len(wheels) != len(reqs):
    sys.exit(f"wheels.sh: expected one wheel for each of {len(reqs)} packages, have {len(wheels)}; missing: {lacking}")

def sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

for old in whl.glob("part*"):
    shutil.rmtree(old)
staging = whl / "pieces"
shutil.rmtree(staging, ignore_errors=True)
staging.mkdir()

pieces, wheel_lines = [], []  # pieces: (size, name, path)
for p in wheels:
    size = p.stat().st_size
    if size <= limit:
        pieces.append((size, p.name, p))
        wheel_lines.append(f"wheel {sha256(p)} {size} {p.name} {p.name}")
        continue
    names_ = []
    with p.open("rb") as f:
        for i, chunk in enumerate(iter(lambda: f.read(limit), b"")):
            piece = staging / f"{p.name}.{i:02d}"
            piece.write_bytes(chunk)
            pieces.append((len(chunk), piece.name, piece))
            names_.append(piece.name)
    wheel_lines.append(f"wheel {sha256(p)} {size} {p.name} {','.join(names_)}")

parts: list[list] = []
for size, name, path in sorted(pieces, key=lambda t: (-t[0], t[1])):
    for part in parts:
        if sum(s for s, _, _ in part) + size <= limit:
            part.append((size, name, path)); break
    else:
        parts.append([(size, name, path)])

lines = [f"# made by scripts/device/wheels.sh, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%MZ}: "
         f"{len(wheels)} wheels in {len(parts)} parts; gpu-check.sh reads it", f"parts {len(parts)}"]
for n, part in enumerate(parts, 1):
    d = whl / f"part{n}"
    d.mkdir()
    for size, name, path in sorted(part, key=lambda t: t[1]):
        target = d / name
        if path.parent == staging:
            path.rename(target)
        else:
            try:
                target.hardlink_to(path)
            except OSError:
                shutil.copy2(path, target)
        lines.append(f"piece {sha256(target)} {size} part{n} {name}")
lines += wheel_lines
manifest = "\n".join(lines) + "\n"
for n in range(1, len(parts) + 1):
    (whl / f"part{n}" / "MANIFEST").write_text(manifest)
staging.rmdir()

# What a call carries besides its part: tracked and untracked-not-ignored files (and shared/).
root = whl.parent
files = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=root, capture_output=True, check=True).stdout
tree = sum((root / f).stat().st_size for f in files.decode().split("\0") if f and (root / f).is_file())
if (root / "shared").is_dir():
    tree += sum(f.stat().st_size for f in (root / "shared").rglob("*") if f.is_file())
MiB = 2**20
total = sum(p.stat().st_size for p in wheels)
print(f"{len(wheels)} wheels, {total / MiB:.1f} MiB, in {len(parts)} parts of at most {limit / MiB:g} MiB:")
worst = 0
for n, part in enumerate(parts, 1):
    size = sum(s for s, _, _ in part)
    worst = max(worst, size)
    print(f"  {whl}/part{n}  {size / MiB:6.1f} MiB  {len(part)} files")
print(f"working tree that travels with each call: {tree / MiB:.1f} MiB; tree + largest part: {(tree + worst) / MiB:.1f} MiB (limit 64)")
if tree + worst + (len(manifest) * len(parts)) > 64 * MiB:
    sys.exit("wheels.sh: a call would carry more than 64 MiB: run again with a smaller PART_MIB")
EOF
