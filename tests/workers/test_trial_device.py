"""workers.devices and the trainer registry."""

from __future__ import annotations

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


def test_limit_threads() -> None:
    before = torch.get_num_threads()
    try:
        assert limit_threads(0.5) == 1 and torch.get_num_threads() == 1
        assert limit_threads(2.9) == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_registry() -> None:
    assert {"mlp": MLPTrainer, "cnn": CNNTrainer} == TRAINERS
    assert get_trainer("cnn") is CNNTrainer
    with pytest.raises(ValueError, match="mlp") as info:
        get_trainer("xgboost")
    assert "xgboost" in str(info.value) and "cnn" in str(info.value)
