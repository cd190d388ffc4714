"""Population based training: Tune's PBT scheduler, its population drawn from the job's Optuna study.

Tune refuses PBT beside a search algorithm of the ``Searcher`` kind (PBT chooses the
hyperparameters itself once trials run), and our :class:`~automl.engine.study_search.StudySearch`
is one. So for a PBT job the population's first configurations are still asked of the job's
Optuna study (its seeded sampler; warm-start configurations first), but through
:class:`PopulationSearch`, a ``BasicVariantGenerator`` that Tune accepts and that hands every
trial event to the ``StudySearch``: the study records each trial's epochs and final state as
for any scheduler, plus, as user attributes, every exploit (``pbt_exploits``) and the
configuration the trial ended with (``pbt_final_params``). MLflow gets the same as tags.

The options and the mutations drawn from the space are checked in
:mod:`~automl.engine.pbt_options` (no Ray there: the spec's checks use it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ray.tune.schedulers import PopulationBasedTraining, TrialScheduler
from ray.tune.search import BasicVariantGenerator

from automl.engine.pbt_options import PBTSettings, checkpoints_to_keep, clip, mutations, pbt_settings
from workers.context import RESUMED_KEY
from workers.trainable import TRIAL_NUMBER_KEY

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from ray.tune.experiment import Trial

    from automl.engine.study_search import StudySearch

EXPLOITS_ATTR = "pbt_exploits"
FINAL_PARAMS_ATTR = "pbt_final_params"
TIME_ATTR = "training_iteration"
_TAG = "automl.pbt."


class JobPBT(PopulationBasedTraining):
    """Tune's PBT, made to keep each trial's identity and record its exploits.

    - A clone keeps its own trial number (Tune would copy the donor's whole config, number included).
    - Perturbed values are clipped back into the space.
    - No perturbation at a trial's last epoch: it has nothing left to train.
    - Each exploit is told to ``recorder`` (the :class:`PopulationSearch`), which writes it to
      Optuna and MLflow.
    """

    def __init__(
        self,
        settings: PBTSettings,
        *,
        metric: str,
        mode: str,
        max_epochs: int,
        space: Mapping[str, BaseDistribution],
    ) -> None:
        self.settings = settings
        self.max_epochs = max_epochs
        self.space = dict(space)
        self.recorder: PopulationSearch | None = None
        super().__init__(
            time_attr=TIME_ATTR,
            metric=metric,
            mode=mode,
            perturbation_interval=settings.perturbation_interval,
            burn_in_period=settings.burn_in_period,
            hyperparam_mutations=mutations(space, tuple(n for n in settings.mutate if n in space)),
            quantile_fraction=settings.quantile_fraction,
            resample_probability=settings.resample_probability,
            perturbation_factors=settings.perturbation_factors,
            log_config=False,  # the exploits are in the study and MLflow, not pbt_*.txt files
            require_attrs=False,  # a trial missing the metric fails alone (see trial_outcome)
            synch=settings.synch,
            custom_explore_fn=self._into_space,
        )

    def _into_space(self, config: dict[str, Any]) -> dict[str, Any]:
        """Tune's explore hook, after its own perturbation: scaled values back into the space."""
        for name in self.settings.mutate:
            if name in config and name in self.space:
                config[name] = clip(config[name], self.space[name])
        return config

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        if int(result.get(TIME_ATTR) or 0) >= self.max_epochs:
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def _get_new_config(self, trial: Trial, trial_to_clone: Trial) -> tuple[dict, dict]:
        config, operations = super()._get_new_config(trial, trial_to_clone)
        config[TRIAL_NUMBER_KEY] = trial.config.get(TRIAL_NUMBER_KEY)
        return config, operations

    def _exploit(self, tune_controller: Any, trial: Trial, trial_to_clone: Trial) -> None:
        own_step = self._trial_state[trial].last_train_time
        super()._exploit(tune_controller, trial, trial_to_clone)
        donor_step = (self._trial_state[trial_to_clone].last_result or {}).get(TIME_ATTR)
        if self.recorder is not None:
            self.recorder.exploited(
                trial.trial_id,
                donor=int(trial_to_clone.config.get(TRIAL_NUMBER_KEY, -1)),
                at_step=int(own_step),
                donor_step=int(donor_step) if isinstance(donor_step, (int, float)) else 0,
                config=dict(trial.config),
            )


class PopulationSearch(BasicVariantGenerator):
    """The population's configurations from the job's Optuna study, in a form Tune runs beside PBT.

    Each trial Tune creates is given the configuration ``searcher`` (a ``StudySearch``) asks the
    study for, so trial numbers, warm starts and resumed trials work as with any scheduler;
    every result and completion is passed on to ``searcher``, which writes the study. On top,
    the exploits PBT makes and the configuration each trial ends with go to the study (user
    attributes, written through ``searcher`` before the trial is told) and to the trial's MLflow run.
    """

    def __init__(
        self,
        searcher: StudySearch,
        *,
        study_name: str,
        params: tuple[str, ...],
        tag_run: Callable[[str, dict[str, str]], None] | None = None,
    ) -> None:
        super().__init__()
        self.searcher = searcher
        self.study_name = study_name
        self.params = params
        self.tag_run = tag_run
        self.numbers: dict[str, int] = {}
        self.configs: dict[str, dict[str, Any]] = {}
        self.exploits: dict[str, list[dict[str, Any]]] = {}
        # Per trial, the exploits (indices into ``exploits``) whose restart has not reported yet.
        self._awaiting_resume: dict[str, list[int]] = {}
        self._completed: set[str] = set()
        self._last_results: dict[str, dict[str, Any]] = {}

    def is_finished(self) -> bool:
        # Finished once every trial is, not once the last one was created: while Tune thinks the
        # search is over it stops the actor of every paused trial instead of keeping it for
        # reuse, and each PBT pause then costs a new worker process.
        return super().is_finished() and self._completed.issuperset(self.numbers)

    def next_trial(self) -> Trial | None:
        trial = super().next_trial()
        if trial is None:
            return None
        config = self.assign(trial.trial_id)
        # In place: Tune keeps this same dict as the trial's unresolved config too.
        trial.config.update(config)
        trial.evaluated_params = self._params_of(config)
        trial.invalidate_json_state()
        if trial.trial_dirname_creator is not None:
            trial.custom_dirname = trial.trial_dirname_creator(trial)
        return trial

    def assign(self, trial_id: str) -> dict[str, Any]:
        """Ask the study for the configuration (and trial number) of the Tune trial ``trial_id``."""
        config = self.searcher.suggest(trial_id)
        if config is None:
            raise RuntimeError(f"the Optuna study {self.study_name!r} gave no configuration for trial {trial_id}")
        self.numbers[trial_id] = int(config[TRIAL_NUMBER_KEY])
        self.configs[trial_id] = self._params_of(config)
        return config

    def exploited(self, trial_id: str, *, donor: int, at_step: int, donor_step: int, config: dict[str, Any]) -> None:
        """Record that PBT cloned trial ``donor`` (its checkpoint at ``donor_step``) into ``trial_id`` at ``at_step``."""
        params = self._params_of(config)
        self.configs[trial_id] = params
        entry = {"at_step": at_step, "donor_trial": donor, "donor_step": donor_step, "params": params, "resumed_from": None}
        history = self.exploits.setdefault(trial_id, [])
        history.append(entry)
        self._awaiting_resume.setdefault(trial_id, []).append(len(history) - 1)
        self._write_exploits(trial_id)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self.searcher.on_trial_result(trial_id, result)
        self._last_results[trial_id] = result
        self._note_resume(trial_id, result)

    def _note_resume(self, trial_id: str, result: Mapping[str, Any]) -> None:
        """Record which checkpoint the trial loaded after an exploit, from its first report since.

        Tune hands a report to the scheduler before the search algorithm, so the report that
        answers one exploit (the first after the clone restarted, at a later step) may itself
        make PBT clone the trial again, and that newer exploit is already recorded here. A report
        answers the latest exploit made before its step, never one made at it.
        """
        waiting = self._awaiting_resume.get(trial_id)
        if not waiting:
            return
        step = int(result.get(TIME_ATTR) or 0)
        history = self.exploits[trial_id]
        answered = [index for index in waiting if history[index]["at_step"] < step]
        if not answered:
            return  # the report the exploit was decided on, or an older one
        # The trial's own word, read from the checkpoint it loaded: which trial wrote it, at which
        # step. None stays if the trial started without training state (a checkpoint holding none).
        history[answered[-1]]["resumed_from"] = _resumed_from(result)
        self._awaiting_resume[trial_id] = [index for index in waiting if index not in answered]
        self._write_exploits(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id in self.numbers and trial_id in self.searcher.unfinished():
            final = self.configs.get(trial_id, {})
            self._set_user_attr(trial_id, FINAL_PARAMS_ATTR, final)  # before the trial is told: then it is frozen
            self._tag(trial_id, {f"{_TAG}final_params": json.dumps(final, default=str)[:5000]})
        if result is None and not error:
            # A trial PBT had paused, stopped by the job's end (time limit, target, cancel): Tune
            # passes no result; its last one says it reported and was stopped early (PRUNED).
            result = self._last_results.get(trial_id)
        elif result is not None:
            # A report that ends the trial (a stopper's) reaches no on_trial_result, yet it may be
            # the first since an exploit: noted while the trial's attributes can still change.
            self._note_resume(trial_id, result)
        self.searcher.on_trial_complete(trial_id, result=result, error=error)
        self._completed.add(trial_id)
        super().on_trial_complete(trial_id, result=result, error=error)

    def save_to_dir(self, dirpath: str, session_str: str = "default", **kwargs: Any) -> None:
        """Save nothing: the study holds the population's record; Tune's snapshot of it would copy the storage.

        The signature fits both of Ray's: SearchAlgorithm's ``(dirpath, **kwargs)`` and BasicVariantGenerator's.
        """

    def has_checkpoint(self, dirpath: str) -> bool:
        return False

    def restore_from_dir(self, dirpath: str) -> None:
        raise NotImplementedError("resume a job from its Optuna study, not from a Tune searcher snapshot")

    def _params_of(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {name: config[name] for name in self.params if name in config}

    def _write_exploits(self, trial_id: str) -> None:
        history = self.exploits[trial_id]
        self._set_user_attr(trial_id, EXPLOITS_ATTR, history)
        self._tag(
            trial_id,
            {f"{_TAG}exploits": str(len(history)), f"{_TAG}history": json.dumps(history, default=str)[:5000]},
        )

    def _set_user_attr(self, trial_id: str, key: str, value: Any) -> None:
        number = self.numbers.get(trial_id)
        if number is None:
            return
        self.searcher.set_durable_user_attr(number, key, value)  # in order with the trial's other writes

    def _tag(self, trial_id: str, tags: dict[str, str]) -> None:
        if self.tag_run is not None:
            self.tag_run(trial_id, tags)


def _resumed_from(result: Mapping[str, Any]) -> dict[str, int] | None:
    """The ``{"trial", "step"}`` a trial's first report after a restore carries (flattened or not)."""
    nested = result.get(RESUMED_KEY)
    if isinstance(nested, Mapping):
        return {"trial": int(nested["trial"]), "step": int(nested["step"])}
    trial, step = result.get(f"{RESUMED_KEY}/trial"), result.get(f"{RESUMED_KEY}/step")
    if trial is None or step is None:
        return None
    return {"trial": int(trial), "step": int(step)}


def build_pbt(
    options: Mapping[str, Any],
    *,
    metric: str,
    mode: str,
    max_epochs: int,
    grace_period: int,
    space: Mapping[str, BaseDistribution] | None,
    mutable: frozenset[str] | None,
) -> JobPBT:
    """The PBT scheduler of a job (the registry's factory).

    Without a space (the spec's structural check) only the options are checked; the run builds
    the real one with the space (:func:`check_pbt` refuses a define-by-run space).
    """
    settings = pbt_settings(
        options, max_epochs=max_epochs, grace_period=grace_period, space=space, mutable=mutable, space_known=space is not None
    )
    return JobPBT(settings, metric=metric, mode=mode, max_epochs=max_epochs, space=space or {})


def population_search(
    scheduler: JobPBT, searcher: StudySearch, study_name: str, tag_run: Callable[[str, dict[str, str]], None] | None
) -> tuple[PopulationSearch, int]:
    """The registry's setup of a PBT job: the population search that replaces the ``StudySearch``
    (drawing from the same study and handing it every trial event), and how many checkpoints
    each trial keeps so that it can be cloned from."""
    population = PopulationSearch(searcher, study_name=study_name, params=tuple(scheduler.space), tag_run=tag_run)
    scheduler.recorder = population
    return population, checkpoints_to_keep(scheduler.settings)
