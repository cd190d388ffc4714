# shellcheck shell=bash
# Shared by start-head.sh and start-worker.sh (sourced, not run): checks the node's environment and
# builds the `ray start` options every node of an automl cluster gets. Variables: see README.md here.

die() { echo "workers/cluster: $*" >&2; exit 2; }

python=${AUTOML_PYTHON:-python3}
ray_cmd=${RAY_COMMAND:-ray}

command -v "$ray_cmd" >/dev/null 2>&1 \
  || die "no \`$ray_cmd\` command on PATH; install the service on this node (pip install automl-service) or set RAY_COMMAND."
# Trials run the service's trainers here, so the node needs the same package and Python deps as the runner.
"$python" -c 'import importlib.util as u, sys; sys.exit(0 if u.find_spec("workers.trainers") and u.find_spec("automl") else 1)' \
  || die "$python cannot import the automl service (automl, workers.trainers); install the same version as the runner on every node, or set AUTOML_PYTHON."

# Token authentication: on by default; every node and every driver (the runner) needs the same token.
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}
if [ "$RAY_AUTH_MODE" = token ]; then
  if [ -z "${RAY_AUTH_TOKEN:-}" ] && { [ -z "${RAY_AUTH_TOKEN_PATH:-}" ] || [ ! -s "${RAY_AUTH_TOKEN_PATH}" ]; }; then
    die "token auth is on but there is no token: set RAY_AUTH_TOKEN (e.g. \$(openssl rand -hex 32)) or RAY_AUTH_TOKEN_PATH" \
        "to a file holding it, the same on every node and on the runner; or set RAY_AUTH_MODE=disabled on a trusted network."
  fi
fi

# A job's code and data travel with it (docs/service.md, "Jobs that travel"); nodes need none of the users' files.
# Checkpoints go to the runners' AUTOML_TRIAL_STORAGE: a bucket (s3://...), or by default the runner's
# $AUTOML_HOME/ray_results, which nodes must then see at the same path (shared storage).
if [ -n "${AUTOML_HOME:-}" ]; then
  mkdir -p "$AUTOML_HOME" 2>/dev/null && [ -w "$AUTOML_HOME" ] \
    || die "AUTOML_HOME=$AUTOML_HOME is not writable here; mount the shared state directory (the runner's AUTOML_HOME) at this path," \
           "or, with the runners' checkpoints in a bucket (AUTOML_TRIAL_STORAGE=s3://...), point it at any writable local folder."
else
  echo "workers/cluster: AUTOML_HOME is not set; fine when the runners keep checkpoints in a bucket" \
       "(AUTOML_TRIAL_STORAGE=s3://...); otherwise trials on this node write them to the runner's" \
       "\$AUTOML_HOME/ray_results, which must be on storage this node shares at the same path." >&2
fi

export RAY_USAGE_STATS_ENABLED=0
ray_args=(--disable-usage-stats)
[ "${RAY_BLOCK:-1}" = 1 ] && ray_args+=(--block)                # foreground: a container's main process
[ -n "${RAY_NODE_IP:-}" ] && ray_args+=("--node-ip-address=$RAY_NODE_IP")
[ -n "${RAY_NUM_CPUS:-}" ] && ray_args+=("--num-cpus=$RAY_NUM_CPUS")
[ -n "${RAY_NUM_GPUS:-}" ] && ray_args+=("--num-gpus=$RAY_NUM_GPUS")
[ -n "${RAY_RESOURCES:-}" ] && ray_args+=("--resources=$RAY_RESOURCES")
[ -n "${RAY_OBJECT_STORE_MEMORY:-}" ] && ray_args+=("--object-store-memory=$RAY_OBJECT_STORE_MEMORY")
[ -n "${RAY_TEMP_DIR:-}" ] && ray_args+=("--temp-dir=$RAY_TEMP_DIR")
# Extra `ray start` options, split on spaces (e.g. "--min-worker-port=20000 --max-worker-port=20100").
read -r -a extra_args <<< "${RAY_START_ARGS:-}"
ray_args+=("${extra_args[@]}")
