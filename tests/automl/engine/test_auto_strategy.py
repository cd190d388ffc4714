"""``sampler: auto`` and ``scheduler: auto``: each branch of the rule, the plan that resolves it once, and a real search."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from controls import RecordingControl

from automl.engine import auto_strategy as rules
from automl.engine.auto_strategy import AUTO, StrategyChoice, StrategyFacts, choose_strategy, facts_for, strategy_line
from automl.engine.plan import plan_from_json, plan_search, plan_to_json
from automl.engine.samplers import SAMPLERS
from automl.engine.schedulers import SCHEDULERS
from automl.errors import SpecError
from automl.spaces import SearchSpace
from automl.spec import JobSpec, parse_spec

# A small all-numeric job that runs every trial to the end: the facts each case below changes.
BASE = StrategyFacts(n_numeric=5, n_categorical=0, conditional=False, trials=40, concurrency=2, n_objectives=1, max_epochs=2)


def pick(**changes: Any) -> StrategyChoice:
    return choose_strategy(dataclasses.replace(BASE, **changes))


@pytest.mark.parametrize(
    ("changes", "sampler", "scheduler"),
    [
        pytest.param({}, "gp", "fifo", id="gp-small-numeric-space-small-budget"),
        pytest.param({"n_numeric": rules.GP_MAX_PARAMS + 1}, "tpe", "fifo", id="tpe-too-many-parameters-for-gp"),
        pytest.param({"concurrency": rules.GP_MAX_CONCURRENT + 1}, "tpe", "fifo", id="tpe-too-many-at-once-for-gp"),
        pytest.param({"trials": rules.GP_MAX_TRIALS + 1}, "tpe", "fifo", id="tpe-between-gp-and-cmaes"),
        pytest.param({"trials": rules.CMAES_MIN_TRIALS}, "cmaes", "fifo", id="cmaes-large-budget"),
        pytest.param({"trials": 500, "n_numeric": 1}, "tpe", "fifo", id="tpe-one-parameter-is-no-cmaes-space"),
        pytest.param({"n_categorical": 1}, "tpe", "fifo", id="tpe-categorical"),
        pytest.param({"n_numeric": 0, "conditional": True}, "tpe", "fifo", id="tpe-define-by-run"),
        pytest.param({"n_objectives": 2}, "tpe", "fifo", id="tpe-several-objectives-small-budget"),
        pytest.param({"n_objectives": 2, "trials": rules.NSGA2_MIN_TRIALS}, "nsga2", "fifo", id="nsga2-several-objectives"),
        pytest.param({"max_epochs": rules.ASHA_MIN_EPOCHS}, "tpe", "asha", id="asha-then-tpe-learns-from-stopped-trials"),
        pytest.param(
            {"max_epochs": 10, "n_objectives": 2, "trials": 400}, "tpe", "asha", id="asha-several-objectives-tpe-not-nsga2"
        ),
        pytest.param({"max_epochs": 10, "trials": rules.ASHA_MIN_TRIALS - 1}, "gp", "fifo", id="fifo-tiny-budget"),
        pytest.param({"max_epochs": 10, "sampler": "gp"}, "gp", "fifo", id="fifo-for-a-named-gp"),
        pytest.param({"max_epochs": 10, "sampler": "random"}, "random", "asha", id="asha-for-a-named-random"),
        pytest.param({"scheduler": "hyperband"}, "tpe", "hyperband", id="tpe-under-a-named-hyperband"),
        pytest.param({"scheduler": "pbt"}, "tpe", "pbt", id="tpe-under-a-named-pbt"),
        pytest.param({"scheduler": "fifo", "max_epochs": 10}, "gp", "fifo", id="gp-under-a-named-fifo"),
    ],
)
def test_each_rule_picks_its_strategy(changes: dict[str, Any], sampler: str, scheduler: str) -> None:
    choice = pick(**changes)
    assert (choice.sampler, choice.scheduler) == (sampler, scheduler)
    assert choice.sampler in SAMPLERS and choice.scheduler in SCHEDULERS
    assert choice.scheduler != "pbt" or changes.get("scheduler") == "pbt", "auto never picks pbt"
    # A part the spec named has no reason; a part auto picked has one.
    assert (choice.sampler_reason is None) == ("sampler" in changes)
    assert (choice.scheduler_reason is None) == ("scheduler" in changes)


def test_the_reason_says_what_decided_it() -> None:
    assert pick().reason == (
        "sampler gp: 5 numeric parameters, 40 trials, 2 at once; "
        f"scheduler fifo: 2 epochs per trial, too few to stop trials early (asha needs {rules.ASHA_MIN_EPOCHS})"
    )
    assert pick(max_epochs=10).summary() == (
        "sampler tpe (auto): 5 numeric parameters, 40 trials, 2 at once, but asha stops trials early and only tpe "
        "learns from stopped trials; scheduler asha (auto): up to 10 epochs per trial, 40 trials: poor trials stop early; "
        f"screen 1 (auto): 5 numeric parameters, 40 trials: one trial in {rules.SCREEN_ONE_IN} stops at asha's first "
        "rung, after the first, before it promotes"
    )
    assert pick(trials=200, concurrency=8).sampler_reason == (
        f"5 numeric parameters, 200 trials, 8 at once: over gp's {rules.GP_MAX_TRIALS} trials, "
        f"over gp's {rules.GP_MAX_CONCURRENT} at once, under cmaes's {rules.CMAES_MIN_TRIALS} trials"
    )
    named = pick(sampler="gp", max_epochs=10)
    assert (
        named.summary()
        == "sampler gp; scheduler fifo (auto): sampler gp learns from completed trials only, so every trial runs to the end"
    )
    assert named.asked == "sampler gp, scheduler auto"


ASHA_JOB = {"sampler": "tpe", "scheduler": "asha", "max_epochs": 27}


@pytest.mark.parametrize(
    ("changes", "screen"),
    [
        pytest.param({"trials": 272}, 272 // rules.SCREEN_ONE_IN, id="numeric-space-sized-by-the-budget"),
        pytest.param({"trials": rules.SCREEN_ONE_IN}, 1, id="one-at-the-smallest-budget"),
        pytest.param({"trials": rules.SCREEN_ONE_IN - 1}, 0, id="none-under-it"),
        pytest.param({"trials": 272, "n_categorical": 1}, 0, id="none-with-a-categorical-parameter"),
        pytest.param({"trials": 272, "n_numeric": 0, "conditional": True}, 0, id="none-for-a-define-by-run-space"),
        pytest.param({"trials": 272, "n_objectives": 2}, 0, id="none-for-several-objectives"),
        pytest.param({"trials": 272, "screen": 0}, 0, id="none-when-the-spec-gives-0"),
        pytest.param({"trials": 272, "screen": 3}, 0, id="not-sized-when-the-spec-gives-one"),
        pytest.param({"trials": 272, "scheduler": "hyperband"}, 0, id="only-for-asha"),
        pytest.param({"trials": 272, "scheduler": AUTO, "sampler": AUTO}, 272 // rules.SCREEN_ONE_IN, id="asha-chosen-by-auto"),
    ],
)
def test_ashas_screen_is_sized_only_for_an_all_numeric_space_and_a_large_budget(changes: dict[str, Any], screen: int) -> None:
    choice = pick(**{**ASHA_JOB, **changes})
    assert choice.screen == screen
    assert (choice.screen_reason is None) == (screen == 0), "the choice says why it screens, and only then"
    assert choice.chose_anything == (screen > 0 or AUTO in changes.values())


def test_the_screens_reason_is_in_the_summary_and_survives_its_record() -> None:
    choice = pick(**ASHA_JOB, trials=272)
    assert choice.summary() == (
        "sampler tpe; scheduler asha; screen 8 (auto): 5 numeric parameters, 272 trials: "
        f"one trial in {rules.SCREEN_ONE_IN} stops at asha's first rung, after the first, before it promotes"
    )
    assert choice.reason.startswith("screen 8: 5 numeric parameters")
    assert StrategyChoice.from_record(json.loads(json.dumps(choice.to_record()))) == choice
    # a plan stored before the screen was sized reads as screening none
    old = {"sampler": "gp", "scheduler": "fifo", "sampler_reason": "why", "scheduler_reason": None}
    assert StrategyChoice.from_record(old) == StrategyChoice("gp", "fifo", "why", None, 0, None)
    assert StrategyChoice.from_record({**old, "screen": "8"}) is None


def test_the_same_facts_give_the_same_choice_and_it_survives_its_record() -> None:
    for changes in ({}, {"max_epochs": 10}, {"sampler": "qmc"}, {"scheduler": "median"}):
        choice = pick(**changes)
        assert pick(**changes) == choice
        assert StrategyChoice.from_record(json.loads(json.dumps(choice.to_record()))) == choice
    assert StrategyChoice.from_record(None) is None
    assert StrategyChoice.from_record({"sampler": 1, "scheduler": "asha"}) is None


def test_the_facts_of_a_space() -> None:
    space = SearchSpace.model_validate(
        {
            "params": {
                "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
                "layers": {"type": "int", "low": 1, "high": 4},
                "act": {"type": "categorical", "choices": ["relu", "tanh"]},
            }
        }
    )
    facts = facts_for(space, trials=3, concurrency=8, n_objectives=1, max_epochs=5)
    assert (facts.n_numeric, facts.n_categorical, facts.conditional, facts.concurrency) == (2, 1, False, 3)
    define_by_run = facts_for(None, trials=30, concurrency=2, n_objectives=1, max_epochs=5)
    assert (define_by_run.n_numeric, define_by_run.conditional) == (0, True)


def test_status_reads_the_strategy_from_a_stored_plan() -> None:
    record = {"spec": {"sampler": {"name": "tpe"}, "scheduler": {"name": "asha"}}}
    assert strategy_line(json.dumps(record)) == "sampler tpe; scheduler asha"
    record["strategy"] = StrategyChoice("gp", "asha", "5 numeric parameters", None).to_record()
    assert strategy_line(json.dumps(record)) == "sampler gp (auto): 5 numeric parameters; scheduler asha"
    assert strategy_line(None) is None and strategy_line("not json") is None


# -- the spec and the plan --------------------------------------------------------------------------

NUMERIC = {"x": {"type": "float", "low": 0.0, "high": 1.0}, "y": {"type": "int", "low": 1, "high": 8}}


def quadratic(params: dict[str, Any]) -> float:
    return (params["x"] - 0.3) ** 2 + 0.01 * params["y"]


def auto_spec(**changes: Any) -> JobSpec:
    return parse_spec(
        {
            "name": "auto-strategy",
            "objective": f"{__name__}:quadratic",
            "space": NUMERIC,
            "metric": "value",
            "mode": "min",
            "sampler": {"name": "auto"},
            "scheduler": {"name": "auto"},
            "budget": {"trials": 12, "max_epochs": 1},
            "resources": {"max_concurrent": 2},
            **changes,
        }
    )


def test_the_plan_resolves_auto_once_and_a_stored_plan_keeps_it() -> None:
    plan = plan_search(auto_spec(), objective=quadratic)
    assert (plan.spec.sampler.name, plan.spec.scheduler.name) == ("gp", "fifo"), "the spec names what the job runs"
    assert plan.strategy == StrategyChoice(
        "gp",
        "fifo",
        "2 numeric parameters, 12 trials, 2 at once",
        f"1 epoch per trial, too few to stop trials early (asha needs {rules.ASHA_MIN_EPOCHS})",
    )
    # A queued job's plan, read back by a runner (a resumed job's too), runs the same choice, whatever the machine.
    again = plan_from_json(plan_to_json(plan))
    assert again is not None and again.strategy == plan.strategy
    assert (again.spec.sampler.name, again.spec.scheduler.name) == ("gp", "fifo")
    # Only the part given as auto is chosen.
    mixed = plan_search(auto_spec(scheduler={"name": "asha"}, budget={"trials": 12, "max_epochs": 8}), objective=quadratic)
    assert mixed.strategy is not None and mixed.strategy.scheduler_reason is None
    assert (mixed.spec.sampler.name, mixed.spec.scheduler.name) == ("tpe", "asha")


def test_the_plan_sizes_ashas_screen_into_the_spec_it_stores() -> None:
    named = {"sampler": {"name": "tpe"}, "scheduler": {"name": "asha"}, "budget": {"trials": 64, "max_epochs": 8}}
    plan = plan_search(auto_spec(**named), objective=quadratic)
    assert plan.spec.scheduler.options == {"screen": 2}, "the spec names the screen the job runs"
    assert plan.strategy is not None and (plan.strategy.screen, plan.strategy.sampler_reason) == (2, None)
    again = plan_from_json(plan_to_json(plan))
    assert again is not None and again.strategy == plan.strategy and again.spec.scheduler.options == {"screen": 2}
    # a screen the spec gives is kept as given, 0 included, and then the rule decided nothing
    given = plan_search(auto_spec(**{**named, "scheduler": {"name": "asha", "options": {"screen": 0}}}), objective=quadratic)
    assert given.strategy is None and given.spec.scheduler.options == {"screen": 0}
    categorical = {**NUMERIC, "act": {"type": "categorical", "choices": ["relu", "tanh"]}}
    mixed = plan_search(auto_spec(**named, space=categorical), objective=quadratic)
    assert mixed.strategy is None and mixed.spec.scheduler.options == {}
    # a bad screen is still refused by the spec's check, naming the field
    with pytest.raises(SpecError, match=r"scheduler\.options"):
        plan_search(auto_spec(**{**named, "scheduler": {"name": "asha", "options": {"screen": -1}}}), objective=quadratic)


def test_a_define_by_run_space_gets_tpe() -> None:
    def space(trial: Any) -> None:
        trial.suggest_float("x", 0.0, 1.0)

    plan = plan_search(auto_spec(space="define-by-run:space"), objective=quadratic, space=space)
    assert plan.strategy is not None and plan.spec.sampler.name == "tpe"
    assert plan.strategy.sampler_reason == "a define-by-run space, whose parameters may be conditional"


IRIS_AUTO = """
name: iris-auto
trainer: {name: mlp, dataset: iris}
space:
  learning_rate: {type: float, low: 0.001, high: 0.1, log: true}
  dropout: {type: float, low: 0.0, high: 0.5}
sampler: {name: auto}
scheduler: {name: auto}
budget: {trials: 20, max_epochs: 2}
resources: {max_concurrent: 2}
"""


def test_validate_and_status_show_the_choice_and_the_queue_keeps_it(tmp_path: Path, automl_home: Path) -> None:
    from typer.testing import CliRunner

    from automl.cli import app
    from automl.service import check_job_file, enqueue, open_job_store
    from automl.service.submit import JobForm, submit_form
    from automl.settings import resolve_settings

    job_file = tmp_path / "iris-auto.yaml"
    job_file.write_text(IRIS_AUTO)
    summary = (
        "strategy: sampler gp (auto): 2 numeric parameters, 20 trials, 2 at once; scheduler fifo (auto): "
        f"2 epochs per trial, too few to stop trials early (asha needs {rules.ASHA_MIN_EPOCHS})"
    )
    validated = CliRunner().invoke(app, ["validate", str(job_file)])
    assert validated.exit_code == 0, validated.output
    assert summary in " ".join(validated.output.split())

    checked = check_job_file(job_file)
    assert (checked.spec.sampler.name, checked.spec.scheduler.name) == ("gp", "fifo"), "the queued spec names the choice"
    store = open_job_store(resolve_settings())
    job = enqueue(store, checked)
    queued = yaml.safe_load(job.spec_yaml)
    assert (queued["sampler"]["name"], queued["scheduler"]["name"]) == ("gp", "fifo")
    status = CliRunner().invoke(app, ["status", job.id])
    assert status.exit_code == 0, status.output
    assert summary in " ".join(status.output.split())
    as_json = CliRunner().invoke(app, ["status", job.id, "--json"])
    assert json.loads(as_json.output)["strategy"] == summary.removeprefix("strategy: ")

    # A plan whose spec still says auto is no plan: the queue refuses it rather than let runners decide.
    assert job.plan_json is not None
    record = json.loads(job.plan_json)
    record["spec"]["sampler"]["name"] = "auto"
    with pytest.raises(SpecError, match=r"plan_json: its spec's sampler is auto"):
        submit_form(store, JobForm(json.dumps(record)))


# -- a real search --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_search_with_auto_records_the_choice_in_its_events_and_mlflow_run(tracked_home: Path, ray_session: None) -> None:
    from mlflow.tracking import MlflowClient

    from automl.engine import run_search

    spec = auto_spec(budget={"trials": 4, "max_epochs": 1}, tracking={"register_model": False, "plots": False})
    control = RecordingControl()
    result = run_search(plan_search(spec, objective=quadratic), control=control)
    assert len(result.trials) == 4
    assert (result.sampler, result.scheduler) == ("gp", "fifo")
    reason = "sampler gp: 2 numeric parameters, 4 trials, 2 at once; scheduler fifo: 1 epoch per trial, too few"
    assert result.strategy_reason is not None and result.strategy_reason.startswith(reason)
    summary = (
        "sampler gp (auto): 2 numeric parameters, 4 trials, 2 at once; scheduler fifo (auto): 1 epoch per trial, "
        f"too few to stop trials early (asha needs {rules.ASHA_MIN_EPOCHS})"
    )
    assert [m for kind, m in control.events if kind == "strategy"] == [summary]
    assert control.kinds().index("strategy") < control.kinds().index("sampler"), "the choice, then gp's start-up note"
    params = MlflowClient(result.tracking_uri).get_run(result.parent_run_id).data.params
    assert (params["sampler"], params["scheduler"]) == ("gp", "fifo")
    assert params["strategy_asked"] == f"sampler {AUTO}, scheduler {AUTO}"
    assert params["strategy_reason"] == result.strategy_reason
