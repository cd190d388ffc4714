"""Everything Tune pickles must pickle, for every sampler and scheduler the registries offer.

Tune writes its search algorithm and scheduler into ``tuner.pkl`` with ``ray.cloudpickle`` when
a run starts (``TunerInternal.save_to_dir`` pickles the ``TuneConfig``). optuna 5.1's NSGA
samplers hold a ``threading.Lock``, and a searcher that kept its sampler in its pickled state
failed every nsga2 job on a fresh install (issue 14, item 1). These tests build each registered
kind the way the engine does and pickle it the way Tune does, so a new library version or a new
registry entry that breaks this fails here, in seconds, rather than in a user's job.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import ray.cloudpickle
from ray.tune import TuneConfig
from ray.tune.search import ConcurrencyLimiter

from automl.engine.samplers import SAMPLERS, SINGLE_OBJECTIVE_ONLY, SamplerRequest, create_sampler
from automl.engine.schedulers import SCHEDULERS, create_scheduler
from automl.engine.study_search import StudySearch
from automl.spaces import load_space

# A space every sampler can take: the grid sampler needs a step on its float.
SPACE = load_space(
    {
        "learning_rate": {"type": "float", "low": 0.001, "high": 0.1, "step": 0.001},
        "batch_size": {"type": "categorical", "choices": [16, 32]},
        "layers": {"type": "int", "low": 1, "high": 3},
    }
)
# Every sampler with one objective, and those that take several with two.
KINDS = [(name, 1) for name in sorted(SAMPLERS)] + [(name, 2) for name in sorted(SAMPLERS) if name not in SINGLE_OBJECTIVE_ONLY]


def _searcher(name: str, n_objectives: int, tmp_path: Path) -> StudySearch:
    sampler = create_sampler(name, SamplerRequest(seed=3, concurrency=2, space=SPACE, n_objectives=n_objectives))
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'studies.db'}")
    metrics = ["loss", "size"][:n_objectives]
    searcher = StudySearch(
        space=SPACE.to_optuna(),
        metric=metrics if n_objectives > 1 else metrics[0],
        mode=["min"] * n_objectives if n_objectives > 1 else "min",
        sampler=sampler,
        study_name=f"pickle-{name}-{n_objectives}",
        storage=storage,
    )
    # A searcher that has handed out trials holds more state than a fresh one.
    searcher.suggest("t1")
    searcher.suggest("t2")
    return searcher


@pytest.mark.parametrize(("name", "n_objectives"), KINDS, ids=[f"{n}-{k}obj" for n, k in KINDS])
def test_every_sampler_s_searcher_pickles_as_tune_pickles_it(name: str, n_objectives: int, tmp_path: Path) -> None:
    searcher = _searcher(name, n_objectives, tmp_path)
    config = TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=2))
    copy = ray.cloudpickle.loads(ray.cloudpickle.dumps(config))
    # What goes into the file is neither the storage (a URL with its password) nor the sampler.
    restored = copy.search_alg.searcher
    assert restored._storage is None and restored._sampler is None and restored._ot_study is None
    # ... while this process's searcher goes on working after being pickled.
    assert searcher.suggest("t3") is not None


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_scheduler_pickles_as_tune_pickles_it(name: str) -> None:
    scheduler = create_scheduler(
        name, metric="loss", mode="min", max_epochs=4, grace_period=1, space=SPACE.to_optuna(), mutable=None
    )
    copy = ray.cloudpickle.loads(ray.cloudpickle.dumps(TuneConfig(scheduler=scheduler)))
    assert type(copy.scheduler) is type(scheduler)


def test_pbt_s_population_search_pickles_as_tune_pickles_it(tmp_path: Path) -> None:
    # A pbt job's search algorithm is the population search around the StudySearch (the registry's
    # setup hook): that is what goes into tuner.pkl for it.
    from automl.engine.schedulers import SchedulerRequest, build_scheduler, scheduler_kind

    searcher = _searcher("tpe", 1, tmp_path)
    request = SchedulerRequest(metric="loss", mode="min", max_epochs=4, space=SPACE.to_optuna())
    scheduler = build_scheduler("pbt", request)
    setup = scheduler_kind("pbt").setup(scheduler, searcher, "pickle-pbt", None, 2)  # type: ignore[arg-type]
    assert setup.search_alg is not searcher and setup.max_concurrent_trials is None
    copy = ray.cloudpickle.loads(ray.cloudpickle.dumps(TuneConfig(search_alg=setup.search_alg, scheduler=setup.scheduler)))
    assert copy.search_alg.searcher._storage is None and copy.search_alg.searcher._sampler is None
