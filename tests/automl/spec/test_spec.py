"""Job specs: a valid one parses with its defaults; a missing file or broken YAML is refused.

The table of wrong specs is in test_bad_input.py, the fuzzing in test_spec_fuzz.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from automl.cli import EXIT_INVALID, app
from automl.errors import SpecError
from automl.spec import load_spec, parse_spec

VALID: dict[str, Any] = {
    "name": "iris-test",
    "trainer": {"name": "mlp", "dataset": "iris"},
    "space": "mlp-small",
    "budget": {"trials": 3, "max_epochs": 2},
}


def _with(**changes: Any) -> dict[str, Any]:
    spec = yaml.safe_load(yaml.safe_dump(VALID))
    for dotted, value in changes.items():
        target = spec
        *parents, leaf = dotted.split("__")
        for part in parents:
            target = target.setdefault(part, {})
        if value is _DROP:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return spec


_DROP = object()


def test_missing_file_and_bad_yaml(tmp_path: Path, automl_home: Path) -> None:
    result = CliRunner().invoke(app, ["run", str(tmp_path / "nope.yaml")])
    assert result.exit_code == EXIT_INVALID and "does not exist" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    result = CliRunner().invoke(app, ["run", str(bad)])
    assert result.exit_code == EXIT_INVALID and "not valid YAML at line" in result.output
    assert not automl_home.exists()


def test_valid_spec_fills_defaults() -> None:
    spec = parse_spec(VALID)
    assert spec.sampler.name == "tpe" and spec.scheduler.name == "asha"
    assert spec.resources.cpus_per_trial == 1 and spec.resources.gpus_per_trial == 0
    assert spec.experiment_name == "iris-test" and spec.registered_model_name == "iris-test"
    with pytest.raises(ValidationError, match="frozen"):
        spec.budget.trials = 5  # frozen: nothing downstream changes a spec


def test_fractional_gpu_is_accepted() -> None:
    assert parse_spec(_with(resources={"gpus_per_trial": 0.25})).resources.gpus_per_trial == 0.25


def test_example_jobs_are_valid() -> None:
    examples = Path(__file__).resolve().parents[3] / "examples"
    for path in examples.glob("*.yaml"):
        load_spec(path)


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(_with(budget={"trials": 0, "max_epochs": 0}))
    assert len(info.value.problems) == 2


def test_yaml_booleans_are_not_counts(tmp_path: Path) -> None:
    # YAML reads yes/on/true as booleans and pydantic took them as 1: `trials: yes` meant one trial.
    text = yaml.safe_dump(VALID).replace("trials: 3", "trials: yes").replace("max_epochs: 2", "max_epochs: on")
    path = tmp_path / "job.yaml"
    path.write_text(text + "resources: {max_concurrent: true, cpus_per_trial: false}\nseed: no\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    problems = "\n".join(info.value.problems)
    for field in ("budget.trials", "budget.max_epochs", "resources.max_concurrent", "resources.cpus_per_trial", "seed"):
        assert f"{field}: expected a number, got the boolean" in problems, problems
    assert len(info.value.problems) == 5


def test_space_bounds_refuse_booleans() -> None:
    from automl.spaces import load_space

    with pytest.raises(SpecError) as info:
        load_space({"x": {"type": "int", "low": False, "high": 3}, "y": {"type": "float", "low": 0, "high": True}})
    problems = "\n".join(info.value.problems)
    assert "x.low: expected a number, got the boolean false" in problems, problems
    assert "y.high: expected a number, got the boolean true" in problems, problems


def test_whole_numbers_still_take_integers_and_integral_floats() -> None:
    spec = parse_spec(_with(budget={"trials": 4, "max_epochs": 3.0, "patience": 2}, seed=5))
    assert (spec.budget.trials, spec.budget.max_epochs, spec.budget.patience, spec.seed) == (4, 3, 2, 5)
