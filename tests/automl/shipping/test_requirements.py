"""A job whose ``code.requirements`` the nodes cannot install fails at once, saying pip's reason,
instead of leaving its trials pending for ever (Ray builds a pip environment only when a task
first needs it). The job runs in a Ray driver of its own (automl/service/job_driver.py).

``automl run`` starts its own local Ray here, told to try building an environment once (Ray's
``RUNTIME_ENV_RETRY_TIMES``, 3 by default): each try clones the whole virtualenv first, into Ray's
temporary folder, which is put where tests/raycluster.py puts a cluster's (in memory where there is
room: the clone takes seconds there, half a minute on disk) and removed afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from raycluster import base_parent

pytestmark = pytest.mark.slow


def test_a_requirement_pip_cannot_install_fails_the_job_with_pip_s_reason(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("def objective(params):\n    return params['x']\n")
    (tmp_path / "requirements.txt").write_text("no-such-package-automl-test==1.0\n")
    spec = {
        "name": "bad-requirements",
        "objective": "train:objective",
        "code": {"requirements": "requirements.txt"},
        "space": {"x": {"type": "float", "low": 0, "high": 1}},
        "metric": "loss",
        "budget": {"trials": 1, "max_epochs": 1},
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(spec))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOML_", "MLFLOW_", "RAY_"))}
    ray_tmp = tempfile.mkdtemp(prefix="rayr-", dir=base_parent())
    env.update(AUTOML_HOME=str(tmp_path / "home"), RUNTIME_ENV_RETRY_TIMES="1", RAY_TMPDIR=ray_tmp)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "automl.cli", "run", "job.yaml", "--no-progress"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 1, proc.stderr[-3000:]
    said = " ".join(proc.stderr.split())
    assert "failed: the Ray nodes could not install the job's code.requirements: ERROR: " in said, said
    assert "no-such-package-automl-test==1.0" in said, said
