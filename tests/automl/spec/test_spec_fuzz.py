"""Property-based fuzzing of the job spec and search-space parsers (hypothesis).

Whatever it is given (random YAML-ish trees, valid specs with a field broken, YAML text with
aliases, tags, repeated keys and odd bytes), the parser either accepts a spec that the rest of
the service can use, or raises :class:`SpecError` with one line per problem naming the field;
never another exception. Through the CLI the same holds as exit code 2, one line on stderr,
and nothing written.
"""

from __future__ import annotations

import copy
import math
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from automl.cli import EXIT_INVALID, app
from automl.engine.plan import plan_search
from automl.errors import SpecError
from automl.spaces import SearchSpace, load_space
from automl.spec import JobSpec, load_spec, parse_spec, spec_to_yaml

FUZZ = settings(
    # CI runs a bounded number; AUTOML_FUZZ_EXAMPLES=5000 searches harder (minutes).
    max_examples=int(os.environ.get("AUTOML_FUZZ_EXAMPLES", "150")),
    deadline=None,  # a 2-core machine shared with other test runs: no per-example stopwatch
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)

TRAINER_SPEC: dict[str, Any] = {
    "name": "fuzz-iris",
    "trainer": {"name": "mlp", "dataset": "iris", "val_fraction": 0.2},
    "space": "mlp-small",
    "metric": "val_accuracy",
    "mode": "max",
    "sampler": {"name": "tpe", "options": {}},
    "scheduler": {"name": "asha", "grace_period": 1},
    "budget": {"trials": 3, "max_epochs": 2},
    "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0},
    "seed": 1,
    "tracking": {"experiment": "fuzz", "model_name": "fuzz-model"},
}
OBJECTIVE_SPEC: dict[str, Any] = {
    "name": "fuzz-objective",
    "objective": "fuzz_objective:objective",
    "space": {
        "x": {"type": "float", "low": -1.0, "high": 1.0},
        "n": {"type": "int", "low": 1, "high": 8, "log": True},
        "act": {"type": "categorical", "choices": ["relu", "tanh", 1, None]},
    },
    "metric": ["loss", "cost"],
    "mode": ["min", "min"],
    "sampler": {"name": "nsga2"},
    "scheduler": {"name": "fifo"},
    "budget": {"trials": 4, "max_epochs": 3, "time_limit_s": 60, "patience": 2},
    "warm_start": {"configs": [{"x": 0.5, "n": 2, "act": "relu"}]},
}
GRID_SPEC: dict[str, Any] = {
    "name": "fuzz-grid",
    "objective": "fuzz_objective:objective",
    "space": {
        "x": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.25},
        "n": {"type": "int", "low": 1, "high": 4},
        "act": {"type": "categorical", "choices": [True, "tanh"]},
    },
    "metric": "loss",
    "sampler": {"name": "grid"},
    "scheduler": {"name": "asha", "options": {"reduction_factor": 2}},
    "budget": {"trials": 2, "max_epochs": 2, "target": 0.0},
    "resources": {"cpus_per_trial": 0.5, "max_concurrent": 2},
}
FUZZ_OBJECTIVE = "def objective(params, ctx):\n    ctx.report(loss=params['x'] ** 2, cost=params['n'])\n"

ODD_NUMBERS = [
    math.nan,
    math.inf,
    -math.inf,
    -0.0,
    0.0,
    1e308,
    -1e308,
    5e-324,
    2**31,
    2**53 + 1,
    2**63,
    10**30,
    -(10**30),
    -1,
    0,
    1,
    0.5,
    1.5,
]
ODD_TEXTS = [
    "",
    " ",
    "..",
    "../../etc/passwd",
    "/etc/passwd",
    "a/../../b",
    "~nobody_here/x.csv",
    "x\x00y",
    "line\nbreak",
    "tab\there",
    "a" * 5000,
    "a" * 300 + ".csv",
    "x\x00.csv",
    "/tmp/",
    "~nobody_here/space.yaml",
    "é",
    "名前",
    "💥",
    "[/x]",
    "[bold]x[/bold]",
    "{x}",
    "%s",
    "null",
    "true",
    "1e3",
    ".nan",
    "mlp",
    "cnn",
    "iris",
    "digits",
    "tpe",
    "grid",
    "cmaes",
    "asha",
    "hyperband",
    "mlp-small",
    "float",
    "int",
    "categorical",
    "min",
    "max",
    "val_accuracy",
    "loss",
    "data.csv",
    "data.npz",
    "os:getcwd",
    "no_such_mod:fn",
    "fuzz_objective:objective",
    "fuzz_objective:nothing",
    "/tmp",
    "/tmp/",
    "-",
    "a:b:c",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(ODD_NUMBERS),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(ODD_TEXTS),
    st.text(max_size=20),
)
# Values aimed at the checks: most mutations put one of these where a valid value was
# (copied: a later mutation may change it, and the strategy's own list must stay as it is).
odd_values = st.one_of(
    st.sampled_from(ODD_NUMBERS),
    st.sampled_from(ODD_TEXTS),
    st.sampled_from([[], {}, [1], {"a": 1}, None, True]).map(copy.deepcopy),
)
keys = st.one_of(st.sampled_from(ODD_TEXTS[:30]), st.text(max_size=10), st.integers(-2, 2), st.none(), st.booleans())
trees = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)),
    max_leaves=25,
)
# Field names the parser knows, so mutations reach the deeper checks, not just "unknown field".
KNOWN_KEYS = sorted(
    {
        *TRAINER_SPEC,
        *OBJECTIVE_SPEC,
        "description",
        "max_retries",
        "target",
        "task",
        "options",
        "from_job",
        "from_study",
        "top",
        "configs",
        "tracking_uri",
        "register_model",
        "low",
        "high",
        "log",
        "step",
        "choices",
        "type",
        "params",
        "time_limit_s",
        "patience",
        "max_concurrent",
        "trial_timeout_s",
    }
)


def _paths(tree: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside ``tree`` (dict keys and list indexes)."""
    yield prefix
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from _paths(value, (*prefix, index))


@st.composite
def mutated_specs(draw: st.DrawFn) -> Any:
    """A valid spec with one to three things broken: a value swapped, a key dropped or added."""
    spec = copy.deepcopy(draw(st.sampled_from([TRAINER_SPEC, OBJECTIVE_SPEC, GRID_SPEC])))
    for _ in range(draw(st.integers(1, 2))):
        path = draw(st.sampled_from(list(_paths(spec))))
        if not path:
            continue
        *parents, leaf = path
        holder: Any = spec
        for part in parents:
            holder = holder[part]
        action = draw(st.sampled_from(["replace", "replace", "replace", "drop", "add", "wrap", "text"]))
        if action == "replace":
            holder[leaf] = draw(st.one_of(odd_values, odd_values, trees))
        elif action == "drop":
            del holder[leaf]
        elif action == "add" and isinstance(holder, dict):
            holder[draw(st.one_of(st.sampled_from(KNOWN_KEYS), keys))] = draw(trees)
        elif action == "wrap":
            holder[leaf] = [holder[leaf]] if draw(st.booleans()) else {"value": holder[leaf]}
        elif action == "text":
            holder[leaf] = str(holder[leaf])
    return spec


def _assert_one_line_per_field(exc: SpecError) -> None:
    message = str(exc)
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith("invalid job spec "), message
    for problem in exc.problems:
        # "field.path: what is wrong" (or the top level's own complaint)
        assert ": " in problem or problem.startswith("expected a mapping"), problem
        assert "Traceback" not in problem


def _check_usable(spec: JobSpec, base_dir: Path) -> None:
    """What the service does with an accepted spec must work: plan it, store it, read it back."""
    try:
        plan = plan_search(spec, base_dir=base_dir)
    except SpecError as exc:
        _assert_one_line_per_field(exc)
        return
    stored = spec_to_yaml(spec)
    # A runner parses the stored spec again: what was accepted at submit must be accepted then.
    assert parse_spec(yaml.safe_load(stored)) == spec
    if isinstance(plan.space, SearchSpace):
        _sample_once(plan.space)


def _sample_once(space: SearchSpace) -> None:
    """Optuna takes every accepted space and samples inside it."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask(space.to_optuna())
    for name, dist in space.to_optuna().items():
        assert dist._contains(dist.to_internal_repr(trial.params[name]))


@pytest.fixture(scope="module")
def spec_dir() -> Iterator[Path]:
    """A folder with the objective module the objective specs import."""
    with tempfile.TemporaryDirectory(prefix="spec-fuzz-") as folder:
        path = Path(folder)
        (path / "fuzz_objective.py").write_text(FUZZ_OBJECTIVE)
        yield path


@pytest.fixture(autouse=True)
def _quiet_optuna() -> Iterator[None]:
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    yield
    optuna.logging.set_verbosity(level)


def test_the_base_specs_are_valid(spec_dir: Path) -> None:
    # The mutations start from valid specs, so a refusal is caused by the mutation.
    for raw in (TRAINER_SPEC, OBJECTIVE_SPEC, GRID_SPEC):
        _check_usable(parse_spec(raw), spec_dir)
        plan_search(parse_spec(raw), base_dir=spec_dir)


@FUZZ
@given(raw=st.one_of(mutated_specs(), mutated_specs(), mutated_specs(), trees))
def test_any_tree_is_a_usable_spec_or_one_line_per_field(raw: Any, spec_dir: Path) -> None:
    try:
        spec = parse_spec(raw)
    except SpecError as exc:
        _assert_one_line_per_field(exc)
        return
    _check_usable(spec, spec_dir)


@FUZZ
@given(
    raw=st.one_of(
        trees,
        st.dictionaries(st.sampled_from(["x", "lr", "batch_size", "1x", ""]), trees, max_size=3),
        mutated_specs().map(lambda s: s["space"] if isinstance(s, dict) and "space" in s else s),
    )
)
def test_any_space_is_usable_or_one_line_per_field(raw: Any) -> None:
    try:
        space = load_space(raw)
    except SpecError as exc:
        _assert_one_line_per_field(exc)
        return
    _sample_once(space)


YAML_SNIPPETS = [
    "sampler: {name: tpe, options: &a {x: *a}}\n",  # an alias that contains itself
    "description: &a [*a]\n",
    "budget: {trials: 3}\nbudget: {trials: 4}\n",  # a key given twice
    "seed: !!python/object/apply:os.system ['true']\n",
    "description: !!binary aGVsbG8=\n",
    "description: 2001-12-14t21:59:43.10-05:00\n",
    "budget: {<<: {trials: 2}}\n",
    "? [a, b]\n: 1\n",
    "seed: .nan\n",
    "budget: {target: 1.0e+999}\n",
    "name:\tx\n",
    "description: " + "[" * 2000 + "]" * 2000 + "\n",
    (
        "sampler:\n  name: tpe\n  options:\n    a: &a [1,1,1,1,1,1,1,1,1,1]\n    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        "    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    ),  # a million values
    "name: [unclosed\n",
    "\ufeffname: bom\n",
    "- just\n- a list\n",
    "",
]


@FUZZ
@given(
    base=st.one_of(mutated_specs(), st.just(TRAINER_SPEC)),
    snippet=st.sampled_from(YAML_SNIPPETS),
    noise=st.one_of(st.just(""), st.text(max_size=30)),
    where=st.sampled_from(["end", "start", "cut"]),
)
def test_any_yaml_file_is_a_spec_or_one_line(base: Any, snippet: str, noise: str, where: str, spec_dir: Path) -> None:
    text = yaml.safe_dump(base, allow_unicode=True)
    if where == "end":
        text = text + snippet + noise
    elif where == "start":
        text = snippet + noise + text
    else:
        text = text[: len(text) // 2] + noise + snippet
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=spec_dir, delete=False, encoding="utf-8") as handle:
        handle.write(text)
    try:
        load_spec(handle.name)
    except SpecError as exc:
        _assert_one_line_per_field(exc)
    finally:
        os.unlink(handle.name)


CLI_FUZZ = settings(FUZZ, max_examples=max(1, FUZZ.max_examples // 4))


@CLI_FUZZ
@given(raw=mutated_specs(), command=st.sampled_from(["validate", "submit"]))
def test_cli_refuses_bad_specs_with_exit_2_one_line_nothing_written(raw: Any, command: str, spec_dir: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="fuzz-home-") as folder:
        home = Path(folder) / "home"
        job = Path(folder) / "job.yaml"
        job.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        # The objective module is found in the spec's folder or the current one.
        (Path(folder) / "fuzz_objective.py").write_text(FUZZ_OBJECTIVE)
        env = {"AUTOML_HOME": str(home), "AUTOML_DB_URL": None, "AUTOML_STORAGE_URL": None, "MLFLOW_TRACKING_URI": None}
        result = CliRunner().invoke(app, [command, str(job)], env=env)
        assert result.exit_code in (0, EXIT_INVALID), (result.exit_code, result.output, result.exception)
        if result.exit_code == EXIT_INVALID:
            lines = result.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: invalid job spec "), result.stderr
            assert result.stdout == ""
            assert not home.exists(), "an invalid spec wrote to the state directory"


CLI_CASES = [
    ("markup in the name", "name: '[/x]'\ntrainer: {name: mlp, dataset: iris}\nspace: mlp-small\n", "name:"),
    ("an alias that holds itself", "name: x\nobjective: m:f\nmetric: m\nspace: &a {x: *a}\n", "(the spec): nested more than"),
]


@pytest.mark.parametrize(("label", "text", "field"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_process_refuses_with_exit_2_and_one_line(label: str, text: str, field: str, tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(text)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in {"AUTOML_DB_URL", "AUTOML_STORAGE_URL", "MLFLOW_TRACKING_URI"}}
    env["AUTOML_HOME"] = str(home)
    result = subprocess.run(
        [sys.executable, "-m", "automl.cli", "submit", str(job)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == EXIT_INVALID, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and re.match(r"error: invalid job spec \S+: ", lines[0]), result.stderr
    assert field in lines[0]
    assert result.stdout == "" and not home.exists()
