"""Wrong job specs, one table: each is refused by ``automl submit`` with exit code 2 and one line on
stderr that names the field and the reason, and nothing is written (no state directory, so no
job row, no study, no MLflow experiment).

What is legitimate and what is not, for paths and names:

- a job's ``name``, ``tracking.experiment`` and ``tracking.model_name`` become an Optuna study
  name, an MLflow experiment (whose name is its artifact folder) and a registered model: they
  must be plain names, never holding ``/`` or ``..``;
- a preset *name* never leaves the presets folder (``..`` is an unknown preset);
- a *path* (``trainer.dataset``, ``space`` with a ``/`` or ``.yaml``) is the user's own file and
  may point anywhere they can read, the spec's folder or not; its content is never echoed.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from automl.cli import EXIT_INVALID, app
from automl.spec import load_spec

IRIS: dict[str, Any] = {
    "name": "iris-test",
    "trainer": {"name": "mlp", "dataset": "iris"},
    "space": "mlp-small",
    "budget": {"trials": 3, "max_epochs": 2},
}
CUSTOM: dict[str, Any] = {
    "name": "custom",
    "objective": "good_objective:objective",
    "space": {"x": {"type": "float", "low": 0, "high": 1}},
    "metric": "loss",
}
GOOD_OBJECTIVE = "def objective(params):\n    return params['x']\n"
# Good rows, then inf, -inf and 1e400 (read as inf): kept, they made every loss NaN and the job "succeed".
INFINITE_CSV = "a,b,label\n" + "".join(f"{i / 40},{i % 7},{i % 2}\n" for i in range(40)) + "inf,1,0\n-inf,2,1\n1e400,3,0\n"
DROP = object()


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """``base`` with ``a__b=value`` set at ``a.b`` (``DROP`` removes it)."""
    spec = copy.deepcopy(base)
    for dotted, value in changes.items():
        target = spec
        *parents, leaf = dotted.split("__")
        for part in parents:
            target = target.setdefault(part, {})
        if value is DROP:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return spec


def iris(**changes: Any) -> dict[str, Any]:
    return _with(IRIS, **changes)


def custom(**changes: Any) -> dict[str, Any]:
    return _with(CUSTOM, **changes)


def space(**params: Any) -> dict[str, Any]:
    return iris(space=params)


# (label, the spec as a mapping or as YAML text, the field the error names, the reason it gives)
WRONG_SPECS: list[tuple[str, Any, str, str]] = [
    # structure
    ("missing name", iris(name=DROP), "name", "Field required"),
    ("unknown top-level field", iris(budjet={"trials": 2}), "budjet", "unknown field (check its spelling)"),
    ("both trainer and objective", iris(objective="pkg.mod:fn"), "(top level)", "exactly one of 'trainer'"),
    ("objective without metric", custom(metric=DROP), "(top level)", "'metric' is required"),
    ("not a mapping", "- just\n- a list\n", "", "expected a mapping of fields at the top level, got list"),
    ("bad YAML", "name: [unclosed\n", "", "not valid YAML at line"),
    ("a key given twice", "name: a\nname: b\n", "", "the key 'name' is given twice"),
    ("an alias that holds itself", "name: x\nspace: &a {x: *a}\n", "(the spec)", "refers to itself"),
    ("python tag", "name: !!python/object/apply:os.system ['true']\n", "", "could not determine a constructor"),
    # sampler, scheduler, budget, resources
    ("unknown sampler", iris(sampler={"name": "tpee"}), "sampler.name", "unknown sampler 'tpee' (known: tpe"),
    (
        "sampler option it refuses",
        iris(sampler={"name": "tpe", "options": {"nope": 1}}),
        "sampler",
        "does not accept these options",
    ),
    (
        "sampler option of the wrong type",
        iris(sampler={"name": "tpe", "options": {"n_startup_trials": "ten"}}),
        "sampler.options",
        "cannot sample with them",
    ),
    ("unknown scheduler", iris(scheduler={"name": "ashaa"}), "scheduler.name", "unknown scheduler 'ashaa'"),
    (
        "scheduler option it refuses",
        iris(scheduler={"name": "asha", "options": {"reduction_factor": -1}}),
        "scheduler.options",
        "refuses them",
    ),
    ("negative budget", iris(budget__trials=-1), "budget.trials", "greater than or equal to 1"),
    ("zero epochs", iris(budget__max_epochs=0), "budget.max_epochs", "greater than or equal to 1"),
    ("nan target", iris(budget__target=float("nan")), "budget.target", "finite number"),
    ("infinite time limit", iris(budget__time_limit_s=float("inf")), "budget.time_limit_s", "finite number"),
    ("negative time limit", iris(budget__time_limit_s=-5), "budget.time_limit_s", "greater than 0"),
    ("zero cpus", iris(resources={"cpus_per_trial": 0}), "resources.cpus_per_trial", "greater than 0"),
    ("gpus fraction above one", iris(resources={"gpus_per_trial": 1.5}), "resources.gpus_per_trial", "a fraction of one GPU"),
    ("negative gpus", iris(resources={"gpus_per_trial": -1}), "resources.gpus_per_trial", "greater than or equal to 0"),
    ("zero concurrency", iris(resources={"max_concurrent": 0}), "resources.max_concurrent", "greater than or equal to 1"),
    ("seed out of range", iris(seed=2**40), "seed", "less than 2147483648"),
    # search space
    (
        "low >= high",
        space(learning_rate={"type": "float", "low": 1, "high": 1}),
        "space.params.learning_rate",
        "low (1.0) must be less than high",
    ),
    (
        "log scale with low <= 0",
        space(l1={"type": "float", "low": 0, "high": 1, "log": True}),
        "space.params.l1",
        "a log-scale range needs low > 0",
    ),
    (
        "empty categorical",
        space(batch_size={"type": "categorical", "choices": []}),
        "space.params.batch_size.choices",
        "must not be empty",
    ),
    (
        "choices equal to Optuna",
        space(batch_size={"type": "categorical", "choices": [1, 1.0]}),
        "space.params.batch_size.choices",
        "must not repeat",
    ),
    (
        "nan among choices",
        space(batch_size={"type": "categorical", "choices": [8, float("nan")]}),
        "space.params.batch_size.choices",
        "finite",
    ),
    (
        "batch size <= 0",
        space(batch_size={"type": "categorical", "choices": [0, 16]}),
        "space.params.batch_size",
        "batch_size must be > 0",
    ),
    (
        "batch size range reaching 0",
        space(batch_size={"type": "int", "low": 0, "high": 64}),
        "space.params.batch_size",
        "batch_size must be > 0",
    ),
    (
        "dropout reaching 1",
        space(dropout={"type": "float", "low": 0, "high": 1}),
        "space.params.dropout",
        "dropout must be in [0, 1)",
    ),
    (
        "step larger than the range",
        space(dropout={"type": "float", "low": 0, "high": 0.5, "step": 1}),
        "space.params.dropout",
        "step (1.0) must be at most",
    ),
    ("int beyond 2**53", space(batch_size={"type": "int", "low": 1, "high": 2**60}), "space.params.batch_size", "2**53"),
    ("missing type", space(batch_size={"choices": [8]}), "space.params.batch_size", "needs a 'type'"),
    (
        "parameter the trainer does not read",
        space(batchsize={"type": "categorical", "choices": [8]}),
        "space",
        "'batchsize' not read by trainer 'mlp'",
    ),
    ("unknown preset", iris(space="nope"), "space", "unknown preset 'nope'"),
    ("preset name climbing out", iris(space=".."), "space", "unknown preset '..'"),
    (
        "grid too large to list",
        custom(sampler={"name": "grid"}, space={"n": {"type": "int", "low": 0, "high": 2**40}}),
        "space",
        "more than 1,000,000 points",
    ),
    ("warm start outside the space", custom(warm_start={"configs": [{"x": 5}]}), "warm_start.configs[0].x", "outside the space"),
    ("warm start value not a scalar", custom(warm_start={"configs": [{"x": [1]}]}), "warm_start.configs", "got list"),
    # data, metric, objective
    ("unknown trainer", iris(trainer__name="rnn"), "trainer.name", "unknown trainer 'rnn' (known: mlp, cnn)"),
    ("unknown dataset", iris(trainer__dataset="mnist"), "trainer.dataset", "unknown dataset 'mnist'"),
    ("dataset file missing", iris(trainer__dataset="nowhere/data.csv"), "trainer.dataset", "does not exist"),
    ("dataset path with a NUL", iris(trainer__dataset="data\x00.csv"), "trainer.dataset", "control character"),
    (
        "dataset under a home that does not exist",
        iris(trainer__dataset="~nobody_at_all/data.csv"),
        "trainer.dataset",
        "cannot use",
    ),
    (
        "infinite values in the table",
        iris(trainer={"name": "mlp", "dataset": "infinite.csv", "target": "label"}),
        "trainer.dataset",
        "infinite.csv: 3 rows hold infinite values or numbers beyond float32's ±3.4e38 (column 'a': 3",
    ),
    (
        "a table of the target column alone",
        iris(trainer={"name": "mlp", "dataset": "labels_only.csv", "target": "label"}),
        "trainer.dataset",
        "labels_only.csv: no feature column besides the target column 'label'",
    ),
    ("metric the trainer does not report", iris(metric="val_f1"), "metric", "trainer 'mlp' reports"),
    ("metric name MLflow cannot take", custom(metric="loss!"), "metric", "not a usable metric name"),
    ("wrong mode", iris(mode="maximize"), "mode", "Input should be 'min' or 'max'"),
    (
        "objective that cannot be imported",
        custom(objective="no_such_module_xyz:fn"),
        "objective",
        "cannot import module 'no_such_module_xyz'",
    ),
    ("objective attribute missing", custom(objective="good_objective:nothing"), "objective", "has no attribute 'nothing'"),
    ("objective that exits on import", custom(objective="exiting_objective:fn"), "objective", "SystemExit"),
    (
        "objective not a reference",
        custom(objective="good_objective.objective"),
        "objective",
        "must look like package.module:function",
    ),
    # names that would become paths or MLflow names
    ("path traversal in the name", iris(name="../../etc/passwd"), "name", "is not a valid name"),
    ("slash in the name", iris(name="team/job"), "name", "is not a valid name"),
    ("dot-dot inside the name", iris(name="a..b"), "name", "without '..'"),
    ("newline after the name", iris(name="job\n"), "name", "is not a valid name"),
    ("markup in the name", iris(name="[/x]"), "name", "'[/x]' is not a valid name"),
    (
        "path traversal in the experiment",
        iris(tracking={"experiment": "../../mlruns"}),
        "tracking.experiment",
        "is not a valid name",
    ),
    ("slash in the model name", iris(tracking={"model_name": "a/b"}), "tracking.model_name", "is not a valid name"),
    (
        "a password in the tracking URI",
        iris(tracking={"tracking_uri": "postgresql://u:hunter2@db/mlflow"}),
        "tracking.tracking_uri",
        "holds a password",
    ),
]


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    (tmp_path / "good_objective.py").write_text(GOOD_OBJECTIVE)
    (tmp_path / "exiting_objective.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "infinite.csv").write_text(INFINITE_CSV)
    (tmp_path / "labels_only.csv").write_text("label\n" + "0\n1\n" * 10)
    return tmp_path


def _write(spec_dir: Path, spec: Any) -> Path:
    job = spec_dir / "job.yaml"
    job.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return job


@pytest.mark.parametrize(("label", "spec", "field", "reason"), WRONG_SPECS, ids=[w[0] for w in WRONG_SPECS])
def test_wrong_spec_is_refused_naming_field_and_reason(
    label: str, spec: Any, field: str, reason: str, spec_dir: Path, automl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(spec_dir)
    job = _write(spec_dir, spec)
    result = CliRunner().invoke(app, ["submit", str(job)])
    assert result.exit_code == EXIT_INVALID, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: invalid job spec "), lines[0]
    # The file is named, except by the checks that need the sampler built (they name the field only).
    problem = lines[0].removeprefix("error: invalid job spec ").removeprefix(f"{job}: ")
    if field:
        assert f"{field}: " in problem, f"names {field!r}: {problem}"
    assert reason in problem, problem
    assert result.stdout == ""
    assert not automl_home.exists(), "nothing may be written for an invalid spec"


def test_more_than_one_problem_is_listed_on_the_same_line(spec_dir: Path, automl_home: Path) -> None:
    job = _write(spec_dir, iris(budget={"trials": 0, "max_epochs": 0}, sampler={"name": "tpee"}))
    result = CliRunner().invoke(app, ["validate", str(job)])
    assert result.exit_code == EXIT_INVALID
    (line,) = result.stderr.splitlines()
    assert "budget.trials: " in line and "budget.max_epochs: " in line and "sampler.name: " in line


def test_missing_target_column_names_the_column_and_the_columns_there(spec_dir: Path, automl_home: Path) -> None:
    (spec_dir / "table.csv").write_text("a,b,label\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n")
    job = _write(spec_dir, iris(trainer={"name": "mlp", "dataset": "table.csv", "target": "species"}))
    result = CliRunner().invoke(app, ["submit", str(job)])
    assert result.exit_code == EXIT_INVALID
    (line,) = result.stderr.splitlines()
    assert "trainer.dataset: " in line and "'species'" in line and "label" in line
    assert not automl_home.exists()


@pytest.mark.parametrize("command", [["validate"], ["run", "--no-progress"]])
def test_infinite_values_are_refused_by_validate_and_run_too(command: list[str], spec_dir: Path, automl_home: Path) -> None:
    job = _write(spec_dir, iris(trainer={"name": "mlp", "dataset": "infinite.csv", "target": "label"}))
    result = CliRunner().invoke(app, [command[0], str(job), *command[1:]])
    assert result.exit_code == EXIT_INVALID, result.output
    (line,) = result.stderr.splitlines()
    assert "infinite.csv: 3 rows hold infinite values" in line and "replace them with finite numbers or drop those rows" in line
    assert not automl_home.exists()


def test_gpus_per_trial_above_the_cluster_is_refused_before_anything_is_queued(
    spec_dir: Path, automl_home: Path, ray_session: None
) -> None:
    job = _write(spec_dir, iris(resources={"gpus_per_trial": 1}))
    result = CliRunner().invoke(app, ["run", str(job), "--no-progress"])
    assert result.exit_code == EXIT_INVALID, result.output
    (line,) = result.stderr.splitlines()
    assert "resources.gpus_per_trial: each trial asks for 1 GPU, the Ray cluster has 0" in line
    assert not automl_home.exists()


def test_paths_outside_the_spec_folder_are_legitimate(tmp_path: Path, automl_home: Path) -> None:
    # A dataset and a space file in another folder, by relative and absolute path: the user's own files.
    data_dir = tmp_path / "shared" / "data"
    data_dir.mkdir(parents=True)
    (data_dir / "table.csv").write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(20)))
    (data_dir / "space.yaml").write_text("params:\n  learning_rate: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}\n")
    spec_dir = tmp_path / "jobs" / "team"
    spec_dir.mkdir(parents=True)
    job = _write(
        spec_dir,
        iris(
            trainer={"name": "mlp", "dataset": "../../shared/data/table.csv", "target": "label"},
            space=str(data_dir / "space.yaml"),
        ),
    )
    spec = load_spec(job)
    assert spec.trainer is not None and spec.trainer.dataset == "../../shared/data/table.csv"


def test_a_space_path_to_a_system_file_is_read_but_never_echoed(spec_dir: Path, automl_home: Path) -> None:
    job = _write(spec_dir, iris(space="../../../../../../etc/passwd"))
    result = CliRunner().invoke(app, ["submit", str(job)])
    assert result.exit_code == EXIT_INVALID
    assert "space: expected a mapping of parameters" in result.stderr
    assert "root:" not in result.output, "the file's content stays out of the error"
