"""Job specs: a valid one parses with its defaults; each wrong one is refused, naming its field,
with a non-zero exit and nothing written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
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

WRONG_SPECS = [
    ("missing name", _with(name=_DROP), "name: Field required"),
    ("path traversal in name", _with(name="../../etc"), "name: '../../etc' is not a valid name"),
    ("unknown top-level field", _with(budjet={"trials": 2}), "budjet: unknown field"),
    ("unknown sampler", _with(sampler={"name": "tpee"}), "sampler.name: unknown sampler 'tpee' (known: tpe"),
    ("unknown scheduler", _with(scheduler={"name": "ashaa"}), "scheduler.name: unknown scheduler 'ashaa'"),
    ("negative budget", _with(budget__trials=-1), "budget.trials: Input should be greater than or equal to 1"),
    ("zero epochs", _with(budget__max_epochs=0), "budget.max_epochs: Input should be greater than or equal to 1"),
    ("gpus fraction above one", _with(resources={"gpus_per_trial": 1.5}), "resources.gpus_per_trial: a trial may ask"),
    ("zero cpus", _with(resources={"cpus_per_trial": 0}), "resources.cpus_per_trial: Input should be greater than 0"),
    ("unknown trainer", _with(trainer__name="rnn"), "trainer.name: unknown trainer 'rnn' (known: mlp, cnn)"),
    ("unknown dataset", _with(trainer__dataset="mnist"), "trainer.dataset:"),
    ("both trainer and objective", _with(objective="pkg.mod:fn"), "exactly one of 'trainer'"),
    ("objective without metric", {"name": "x", "objective": "pkg.mod:fn", "space": "mlp"}, "'metric' is required"),
    ("objective not importable", {"name": "x", "objective": "no_such_module_xyz:fn", "space": "mlp", "metric": "loss"},
     "objective: cannot import module 'no_such_module_xyz'"),
    ("low >= high", _with(space={"learning_rate": {"type": "float", "low": 1, "high": 1}}), "space.params.learning_rate: low (1.0) must be less than high"),
    ("log scale with low <= 0", _with(space={"l1": {"type": "float", "low": 0, "high": 1, "log": True}}), "space.params.l1: a log-scale range needs low > 0"),
    ("empty categorical", _with(space={"batch_size": {"type": "categorical", "choices": []}}), "space.params.batch_size.choices: choices must not be empty"),
    ("batch size not read by trainer", _with(space={"batchsize": {"type": "categorical", "choices": [8]}}), "space: 'batchsize' not read by trainer 'mlp'"),
    ("unknown preset", _with(space="nope"), "space: unknown preset 'nope'"),
    ("metric the trainer does not report", _with(metric="val_f1"), "metric: trainer 'mlp' reports"),
    ("wrong mode", _with(mode="maximize"), "mode: Input should be 'min' or 'max'"),
]


@pytest.mark.parametrize(("label", "spec", "expected"), WRONG_SPECS, ids=[w[0] for w in WRONG_SPECS])
def test_wrong_spec_is_refused_naming_the_field(
    label: str, spec: dict[str, Any], expected: str, tmp_path: Path, automl_home: Path
) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(app, ["run", str(job)])
    assert result.exit_code == EXIT_INVALID, result.output
    assert expected in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert not automl_home.exists(), "nothing may be written for an invalid spec"


def test_missing_target_column_names_the_column(tmp_path: Path, automl_home: Path) -> None:
    table = tmp_path / "table.csv"
    table.write_text("a,b,label\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n")
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(_with(trainer={"name": "mlp", "dataset": "table.csv", "target": "species"})))
    result = CliRunner().invoke(app, ["validate", str(job)])
    assert result.exit_code == EXIT_INVALID
    assert "species" in result.output and "label" in result.output


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
    with pytest.raises(Exception):
        spec.budget.trials = 5  # frozen: nothing downstream changes a spec


def test_fractional_gpu_is_accepted() -> None:
    assert parse_spec(_with(resources={"gpus_per_trial": 0.25})).resources.gpus_per_trial == 0.25


def test_example_jobs_are_valid() -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    for path in examples.glob("*.yaml"):
        load_spec(path)


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(_with(budget={"trials": 0, "max_epochs": 0}))
    assert len(info.value.problems) == 2
