"""automl.engine.studies: a job's study names its objectives after the job's metrics, once."""

from __future__ import annotations

import warnings

import optuna

from automl.engine.studies import name_metrics


def test_a_study_is_named_after_its_metrics_once_and_without_a_warning() -> None:
    study = optuna.create_study(directions=["minimize", "maximize"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna calls set_metric_names experimental; it must not warn here
        name_metrics(study, ("loss", "accuracy"))
    assert study.metric_names == ["loss", "accuracy"]
    name_metrics(study, ("other", "names"))  # a resumed job: the names stay
    assert study.metric_names == ["loss", "accuracy"]
