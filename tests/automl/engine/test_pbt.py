"""The PBT scheduler: a real population based training search, its options, and its record.

The end-to-end test runs an iris MLP population of four, synchronous, cloned at every epoch: two
trials that learn, and two whose learning rate is too small to learn anything, so PBT clones the
former into the latter. It checks each clone against the checkpoints on disk: the clone says
which trial and step wrote the checkpoint it loaded, and that is the donor and step recorded;
replaying the clone's next epoch from the donor's checkpoint at that step gives exactly what the
clone reported, so it went on from the donor's weights at the recorded step. And Optuna and
MLflow hold one record per trial, COMPLETE, with its exploits and its final configuration.
(Four members, not more: each costs a Ray worker that imports torch.)
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

import automl
from automl.engine.pbt import EXPLOITS_ATTR, FINAL_PARAMS_ATTR
from automl.engine.pbt_options import clip, mutations, pbt_settings
from automl.engine.plan import plan_search
from automl.errors import SpecError
from automl.spaces import load_space
from workers.context import ListReporter, TrialContext, read_state
from workers.trainable import run_with_context, trial_seed

SPACE = {
    "learning_rate": {"type": "float", "low": 1.0e-6, "high": 0.3, "log": True},
    "batch_size": {"type": "categorical", "choices": [8, 16, 32]},
    "hidden_size": {"type": "int", "low": 4, "high": 32},
}
# Two trials that learn, and two that cannot (learning rates 1e-6 and 1e-5): PBT clones them at epoch 1.
POPULATION = [
    {"learning_rate": 0.05, "batch_size": 16, "hidden_size": 16},
    {"learning_rate": 1.0e-6, "batch_size": 32, "hidden_size": 8},
    {"learning_rate": 0.02, "batch_size": 16, "hidden_size": 16},
    {"learning_rate": 1.0e-5, "batch_size": 32, "hidden_size": 8},
]
MAX_EPOCHS = 4  # perturbations at epochs 1, 2 and 3 (none at the last epoch)
# A clone learns ten times slower than its donor, so it stays in the lower half and is cloned
# again at the next epoch, often on the very report in which it says which checkpoint it loaded.
FACTOR = 0.1


def _spec(**changes: object) -> automl.JobSpec:
    raw = {
        "name": "pbt-iris",
        "trainer": {"name": "mlp", "dataset": "iris"},
        "space": SPACE,
        "metric": "val_loss",
        "mode": "min",
        "scheduler": {
            "name": "pbt",
            "options": {
                "perturbation_interval": 1,
                "quantile_fraction": 0.5,
                "resample_probability": 0,
                "synch": True,
                "perturbation_factors": [FACTOR, FACTOR],
            },
        },
        "budget": {"trials": len(POPULATION), "max_epochs": MAX_EPOCHS},
        "resources": {"cpus_per_trial": 0.5},
        "warm_start": {"configs": POPULATION},
        "seed": 5,
        "tracking": {"plots": False},  # seconds of CPU, and not what these tests check (tracking/test_plots.py does)
    }
    raw.update(changes)
    return automl.JobSpec.model_validate(raw)


def _checkpoints(folder: Path) -> dict[tuple[int, int], str]:
    """Every checkpoint folder with a training state the job's trials wrote, by (trial that wrote it, step)."""
    found = {}
    for path in folder.rglob("trial_state.pt"):
        saved = read_state(str(path.parent))
        assert saved is not None
        found[(saved.trial_number, saved.step)] = str(path.parent)
    return found


def _params_at(trial: optuna.trial.FrozenTrial, step: int) -> dict[str, object]:
    """The configuration ``trial`` trained with up to ``step``: its last exploit's before it, else its own."""
    earlier = [e for e in trial.user_attrs.get(EXPLOITS_ATTR, []) if e["at_step"] < step]
    return earlier[-1]["params"] if earlier else trial.params


@pytest.mark.slow
@pytest.mark.usefixtures("tracked_home")  # its MLflow store made already: this tests PBT, not a first run
def test_pbt_clones_trials_from_the_checkpoints_it_records_and_records_every_trial(automl_home: Path, ray_session: None) -> None:
    spec = _spec()
    result = automl.run_spec(spec)

    assert result.state_counts == {"COMPLETE": 4}
    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{automl_home / 'studies.db'}")
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3], "one Optuna trial per member of the population"
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    by_number = {t.number: t for t in trials}
    assert [by_number[n].params for n in range(4)] == POPULATION, "the population came from the study (warm starts first)"

    exploits = [(t, e) for t in trials for e in t.user_attrs.get(EXPLOITS_ATTR, [])]
    # synch: all meet at epoch 1; the lower half (quantile_fraction 0.5), the two that cannot learn,
    # are cloned from the upper half.
    assert sorted((t.number, e["donor_trial"] in (0, 2)) for t, e in exploits if e["at_step"] == 1) == [(1, True), (3, True)]
    assert len(exploits) >= 3, "the clones, learning slower, are cloned again"
    checkpoints = _checkpoints(automl_home / "ray_results")
    plan = plan_search(spec).trial_plan
    for trial, exploit in exploits:
        donor, step = exploit["donor_trial"], exploit["donor_step"]
        assert donor != trial.number
        assert step == exploit["at_step"], "synch: the donor is cloned at the step the clone stopped at"
        # The clone's own word, read from the checkpoint it loaded: the donor's, at the recorded step.
        assert exploit["resumed_from"] == {"trial": donor, "step": step}, (trial.number, exploit)
        # And the weights it went on from are the donor's at that step: one epoch from the donor's
        # checkpoint, with the clone's new hyperparameters, gives exactly what the clone reported next.
        # (Read afresh for each replay: training moves the optimizer's state tensors it is given.)
        reporter = ListReporter()
        replay = TrialContext(
            exploit["params"],
            reporter=reporter,
            trial_number=trial.number,
            seed=trial_seed(spec.seed, trial.number),
            max_epochs=step + 1,
            checkpoint_interval=plan.checkpoint_interval,
            restored=read_state(checkpoints[(donor, step)]),
        )
        run_with_context(replay, plan)
        assert reporter.reports[0]["step"] == step + 1
        assert reporter.reports[0]["val_loss"] == pytest.approx(trial.intermediate_values[step + 1], rel=1e-6), (
            f"trial {trial.number} did not go on from trial {donor}'s weights at epoch {step}"
        )
        # It took the donor's network (hidden_size is not perturbed) and a perturbed copy of its configuration.
        donor_params = _params_at(by_number[donor], step)
        assert exploit["params"]["hidden_size"] == donor_params["hidden_size"]
        assert exploit["params"]["learning_rate"] == pytest.approx(donor_params["learning_rate"] * FACTOR)
        assert exploit["params"]["batch_size"] in SPACE["batch_size"]["choices"]
    for trial in trials:
        assert sorted(trial.intermediate_values) == list(range(1, MAX_EPOCHS + 1)), "epochs counted on from the donor's"
        final = trial.user_attrs[FINAL_PARAMS_ATTR]
        history = trial.user_attrs.get(EXPLOITS_ATTR, [])
        assert final == (history[-1]["params"] if history else trial.params)

    client = MlflowClient(tracking_uri=result.tracking_uri)
    runs = client.search_runs([result.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
    assert sorted(int(r.data.tags["automl.trial_number"]) for r in runs) == [0, 1, 2, 3]
    for run in runs:
        trial = by_number[int(run.data.tags["automl.trial_number"])]
        assert run.data.tags["automl.state"] == "COMPLETE" and run.info.status == "FINISHED"
        assert run.data.tags.get("automl.pbt.exploits", "0") == str(len(trial.user_attrs.get(EXPLOITS_ATTR, [])))
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
        assert max(steps) == MAX_EPOCHS
    assert result.model_uri is not None, "the best trial's final model was logged"


def test_options_are_checked_before_anything_is_written(automl_home: Path) -> None:
    def refused(match: str, **changes: object) -> None:
        with pytest.raises(SpecError, match=match):
            automl.run_spec(_spec(**changes))

    pbt = {"name": "pbt"}
    refused(r"scheduler.options: unknown option\(s\) 'interval' for pbt", scheduler={**pbt, "options": {"interval": 2}})
    refused(
        r"perturbation_interval: 4 is not below budget.max_epochs \(4\)",
        scheduler={**pbt, "options": {"perturbation_interval": 4}},
    )
    refused(
        r"checkpoint_interval: 3 epochs misses the perturbation steps \(epoch 2, then every 2\); use a divisor of 2",
        scheduler={**pbt, "options": {"perturbation_interval": 2, "checkpoint_interval": 3}},
    )
    refused(r"mutate: 'hidden_size' changes the model itself", scheduler={**pbt, "options": {"mutate": ["hidden_size"]}})
    refused(r"mutate: 'depth' is not a parameter of the space", scheduler={**pbt, "options": {"mutate": ["depth"]}})
    refused(r"quantile_fraction: 0.7 must be in \(0, 0.5\]", scheduler={**pbt, "options": {"quantile_fraction": 0.7}})
    refused(r"resources.max_concurrent: pbt trains its whole population", resources={"max_concurrent": 1})
    refused(
        r"space: none of its parameters \(hidden_size\) can change while a model trains",
        space={"hidden_size": SPACE["hidden_size"]},
        warm_start={},
    )
    assert not automl_home.exists()


def test_a_define_by_run_space_is_refused(automl_home: Path) -> None:
    def space(trial: optuna.Trial) -> None:
        trial.suggest_float("x", 0, 1)

    with pytest.raises(SpecError, match="space: the pbt scheduler perturbs hyperparameters within their ranges"):
        automl.search(lambda params: params["x"], space, scheduler="pbt", n_trials=2, max_steps=4)


def test_defaults_and_the_checkpoint_interval_that_lands_on_every_perturbation() -> None:
    space = load_space(SPACE).to_optuna()
    mutable = frozenset({"learning_rate", "batch_size"})
    default = pbt_settings({}, max_epochs=8, grace_period=1, space=space, mutable=mutable)
    assert (default.perturbation_interval, default.burn_in_period, default.checkpoint_interval) == (2, 1, 2)
    assert default.mutate == ("learning_rate", "batch_size")
    # Burn-in 3, interval 2: perturbations at epochs 3, 5, 7..., so a checkpoint every epoch.
    odd = pbt_settings(
        {"perturbation_interval": 2, "burn_in_period": 3}, max_epochs=8, grace_period=1, space=space, mutable=mutable
    )
    assert odd.checkpoint_interval == 1
    custom = pbt_settings({}, max_epochs=8, grace_period=1, space=space, mutable=None)
    assert custom.mutate == ("learning_rate", "batch_size", "hidden_size"), "a custom objective may change any parameter"


def test_mutations_follow_the_space_and_perturbed_values_are_clipped_into_it() -> None:
    from ray.tune.search.sample import Categorical, Float, Integer

    space = load_space(
        {
            "lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
            "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
            "width": {"type": "int", "low": 4, "high": 64, "log": True},
            "batch": {"type": "categorical", "choices": [16, 32, 64]},
        }
    ).to_optuna()
    found = mutations(space, ("lr", "dropout", "width", "batch"))
    assert isinstance(found["lr"], Float) and found["lr"].lower == 1e-4 and found["lr"].upper == 0.1
    assert isinstance(found["dropout"], Float) and isinstance(found["width"], Integer)
    assert found["batch"] == [16, 32, 64] and not isinstance(found["batch"], Categorical)
    assert clip(0.12, space["lr"]) == 0.1 and clip(5e-5, space["lr"]) == 1e-4
    assert clip(0.57, space["dropout"]) == 0.5 and clip(0.26, space["dropout"]) == pytest.approx(0.3)
    assert clip(76.8, space["width"]) == 64 and clip(4.4, space["width"]) == 4


def test_population_search_records_exploits_resumes_and_stopped_trials() -> None:
    """The record-keeping alone, on a real StudySearch and Optuna storage, without running Tune."""
    from automl.engine.pbt import PopulationSearch
    from automl.engine.study_search import StudySearch
    from workers.context import FINAL_KEY, RESUMED_KEY

    storage = optuna.storages.InMemoryStorage()
    space = load_space({"lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True}}).to_optuna()
    searcher = StudySearch(space=space, metric="loss", mode="min", storage=storage, study_name="pop")
    population = PopulationSearch(searcher, study_name="pop", params=("lr",))
    assert [population.assign(trial_id)["_trial_number"] for trial_id in ("a", "b")] == [0, 1]  # as next_trial does
    population.on_trial_result("a", {"loss": 1.0, "training_iteration": 1, FINAL_KEY: False})
    population.on_trial_result("b", {"loss": 0.5, "training_iteration": 1, FINAL_KEY: False})
    population.exploited("a", donor=1, at_step=1, donor_step=1, config={"lr": 0.02, "_trial_number": 0})
    population.on_trial_result("a", {"loss": 0.4, "training_iteration": 2, f"{RESUMED_KEY}/trial": 1, f"{RESUMED_KEY}/step": 1})
    population.on_trial_complete("a", {"loss": 0.3, "training_iteration": 3, FINAL_KEY: True})
    population.on_trial_complete("b")  # paused by PBT, then stopped by the job's end: Tune gives no result

    study = optuna.load_study(study_name="pop", storage=storage)
    cloned, stopped = study.trials
    assert cloned.state.name == "COMPLETE" and cloned.value == 0.3
    assert cloned.user_attrs[EXPLOITS_ATTR] == [
        {"at_step": 1, "donor_trial": 1, "donor_step": 1, "params": {"lr": 0.02}, "resumed_from": {"trial": 1, "step": 1}}
    ]
    assert cloned.user_attrs[FINAL_PARAMS_ATTR] == {"lr": 0.02}
    assert cloned.intermediate_values == {1: 1.0, 2: 0.4, 3: 0.3}
    assert stopped.state.name == "PRUNED", "it reported before it was stopped: not a failure"
    assert stopped.user_attrs[FINAL_PARAMS_ATTR] == stopped.params
    assert population.is_finished() is False, "the generator was never exhausted here"


def test_a_resume_is_recorded_against_the_exploit_it_answers_in_tunes_order() -> None:
    """Tune gives a report to PBT before the search algorithm: the first report of a restarted
    clone may make PBT clone it again, and that newer exploit is recorded before the report's word
    on the checkpoint it loaded arrives. The word answers the exploit before it, not the newer one."""
    from automl.engine.pbt import PopulationSearch
    from automl.engine.study_search import StudySearch
    from workers.context import RESUMED_KEY

    storage = optuna.storages.InMemoryStorage()
    space = load_space({"lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True}}).to_optuna()
    searcher = StudySearch(space=space, metric="loss", mode="min", storage=storage, study_name="pop")
    population = PopulationSearch(searcher, study_name="pop", params=("lr",))
    for trial_id in ("a", "b", "c", "d"):
        population.assign(trial_id)
        population.on_trial_result(trial_id, {"loss": 1.0, "training_iteration": 1})

    def report(step: int, resumed: tuple[int, int] | None = None) -> dict[str, object]:
        marker = {} if resumed is None else {f"{RESUMED_KEY}/trial": resumed[0], f"{RESUMED_KEY}/step": resumed[1]}
        return {"loss": 0.5, "training_iteration": step, **marker}

    # a: cloned from trial 3 at epoch 1; its first report after the restart (epoch 2) says it loaded
    # trial 3's epoch-1 checkpoint, and PBT clones it again on that report, from epoch 2.
    population.exploited("a", donor=3, at_step=1, donor_step=1, config={"lr": 0.02})
    population.exploited("a", donor=3, at_step=2, donor_step=2, config={"lr": 0.03})  # scheduler first
    population.on_trial_result("a", report(2, resumed=(3, 1)))  # then the search algorithm
    population.on_trial_result("a", report(3, resumed=(3, 2)))
    population.on_trial_result("a", report(4, resumed=(0, 3)))  # a pause of its own, later: not an exploit's
    population.on_trial_complete("a", report(4, resumed=(0, 3)))
    # b: its first report after the clone is the one that ends it (a stopper's): only completion sees it.
    population.exploited("b", donor=3, at_step=1, donor_step=1, config={"lr": 0.02})
    population.on_trial_complete("b", report(2, resumed=(3, 1)))
    # c: restarted without any training state (the donor's checkpoint held none): nothing to name,
    # and a later resume from its own checkpoint does not count for the exploit.
    population.exploited("c", donor=3, at_step=1, donor_step=1, config={"lr": 0.02})
    population.on_trial_result("c", report(2))
    population.on_trial_complete("c", report(3, resumed=(2, 2)))
    population.on_trial_complete("d", report(1))

    exploits = {
        t.number: t.user_attrs[EXPLOITS_ATTR] for t in optuna.load_study(study_name="pop", storage=storage).trials if t.number < 3
    }
    assert [(e["at_step"], e["donor_step"], e["resumed_from"]) for e in exploits[0]] == [
        (1, 1, {"trial": 3, "step": 1}),
        (2, 2, {"trial": 3, "step": 2}),
    ]
    assert exploits[1][0]["resumed_from"] == {"trial": 3, "step": 1}
    assert exploits[2][0]["resumed_from"] is None
