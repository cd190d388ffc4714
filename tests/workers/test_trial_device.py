"""workers.devices and the trainer registry."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from workers.devices import limit_threads, trial_device
from workers.trainers import TRAINERS, CNNTrainer, MLPTrainer, get_trainer


def test_cpu_without_a_gpu_grant() -> None:
    assert trial_device(0) == "cpu"
    assert trial_device(0.0) == "cpu"


def test_gpu_grant_uses_cuda_only_when_available(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert trial_device(0.5) == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert trial_device(1) == "cpu"


def test_limit_threads(monkeypatch) -> None:
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # limit_threads sets them: restored after the test
        monkeypatch.setenv(name, os.environ.get(name, ""))
    before = torch.get_num_threads()
    try:
        assert limit_threads(0.5) == 1 and torch.get_num_threads() == 1
        assert limit_threads(2.9) == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_trial_without_torch_does_not_import_it_and_torch_imported_later_gets_the_limit() -> None:
    # A fresh process, as a trial's: a CPU trial's set-up must not import torch (seconds per trial
    # process), and the trial's own import of torch afterwards must still see the CPUs granted.
    code = (
        "import sys\n"
        "from workers.devices import limit_threads, trial_device\n"
        "assert trial_device(0) == 'cpu' and limit_threads(1.5) == 1\n"
        "assert 'torch' not in sys.modules, 'set-up imported torch'\n"
        "import torch\n"
        "print(torch.get_num_threads())\n"
    )
    env_free = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env_free, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


def test_registry() -> None:
    assert {"mlp": MLPTrainer, "cnn": CNNTrainer} == TRAINERS
    assert get_trainer("cnn") is CNNTrainer
    with pytest.raises(ValueError, match="mlp") as info:
        get_trainer("xgboost")
    assert "xgboost" in str(info.value) and "cnn" in str(info.value)
