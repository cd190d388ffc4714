"""The trainers' cards: what the driver checks a spec against, without torch (issue 15: checking
does not import torch), and the same facts as the trainer classes that train in a trial."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from workers.trainers import TRAINER_NAMES, get_trainer, trainer_card

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", TRAINER_NAMES)
def test_each_trainer_is_its_card_plus_fit(name: str) -> None:
    card, trainer = trainer_card(name), get_trainer(name)
    assert issubclass(trainer, card) and trainer.name == card.name == name
    assert trainer.hyperparameters is card.hyperparameters
    assert trainer.metrics("classification") == card.metrics("classification")


def test_an_unknown_trainer_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown trainer 'svm'; known trainers: cnn, mlp"):
        trainer_card("svm")


@pytest.mark.parametrize("example", ["iris.yaml", "digits-cnn.yaml"])
def test_checking_and_planning_a_built_in_trainer_job_imports_no_torch(example: str) -> None:
    """``automl validate``/``submit`` check the spec and plan it in the driver: neither loads torch,
    Ray or MLflow (seconds of CPU, and a CUDA build's start-up, on every submit)."""
    code = (
        "import sys\n"
        "from automl.spec import load_spec\n"
        "from automl.engine import plan_search\n"
        f"plan = plan_search(load_spec({str(REPO / 'examples' / example)!r}))\n"
        "assert plan.metric, plan\n"
        "print(sorted(m for m in ('torch', 'ray', 'mlflow') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_trial_worker_s_import_loads_no_data_or_model_library() -> None:
    """Every new Ray worker imports workers.trainable before its first trial: scikit-learn there cost
    each worker 1.4 s (measured in session 9), torch more. A custom objective's trials pay for neither."""
    code = (
        "import sys, workers.trainable\nprint(sorted(m for m in ('torch', 'sklearn', 'pandas', 'mlflow') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
