"""GPU trials: run where a CUDA GPU is present (a lent GPU machine); skipped on CPU-only machines."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import automl
from workers.context import TrialContext

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def on_device(params: dict, ctx: TrialContext) -> float:
    """Reports 0 when the trial's tensors really live on the GPU Ray granted it."""
    x = torch.full((256, 256), float(params["x"]), device=ctx.device)
    return 0.0 if (x @ x).is_cuda and ctx.device == "cuda" else 1.0


def test_fractional_gpu_trials_run_on_cuda(automl_home: Path, ray_session: None) -> None:
    result = automl.search(
        on_device,
        {"x": {"type": "float", "low": 0, "high": 1}},
        n_trials=4,
        max_steps=1,
        metric="on_cpu",
        gpus_per_trial=0.5,
        name="gpu-packing",
    )
    assert result.state_counts == {"COMPLETE": 4}
    assert all(t.value == 0.0 for t in result.trials)


def test_mlp_trainer_on_gpu(tmp_path: Path, automl_home: Path, ray_session: None) -> None:
    spec = automl.JobSpec.model_validate(
        {
            "name": "gpu-mlp",
            "trainer": {"name": "mlp", "dataset": "wine"},
            "space": "mlp-small",
            "budget": {"trials": 2, "max_epochs": 3},
            "resources": {"gpus_per_trial": 0.5},
        }
    )
    result = automl.run_spec(spec)
    assert result.best_value is not None and result.best_value > 0.5
