"""The search engine: a job spec checked once into a plan, then run as an Optuna study driven through
Ray Tune. (The package is ``automl.engine``: ``automl.search`` is the Python API's function.)

The parts, each one module:

- :mod:`~automl.engine.plan`: the spec checked against the world once, into a :class:`SearchPlan`;
- :mod:`~automl.engine.samplers`, :mod:`~automl.engine.schedulers`: the registries (leaves; a
  kind's special needs are hooks on its entry), and :mod:`~automl.engine.pbt`, PBT's hooks;
- :mod:`~automl.engine.auto_strategy`: the rule ``sampler: auto`` and ``scheduler: auto`` pick by (a leaf);
- :mod:`~automl.engine.studies`: the Optuna storage and what a study already holds;
- :mod:`~automl.engine.cluster`: connecting to Ray and what it can give a trial;
- :mod:`~automl.engine.study_search`, :mod:`~automl.engine.working_study`: the Tune<->Optuna glue;
- :mod:`~automl.engine.callbacks`: the Tune callbacks that record every trial;
- :mod:`~automl.engine.write_behind`: the writer process that makes trial writes durable;
- :mod:`~automl.engine.run`: running a plan; :mod:`~automl.engine.summary`: its result and record.

Importing this package is cheap and imports none of its modules: the job spec reads the registries'
names (leaves) without loading the plan, and Ray, Optuna, MLflow and torch are imported when a
search runs. The names below are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from automl.engine.plan import SearchPlan, plan_search
    from automl.engine.run import run_search

_HOMES = {"SearchPlan": "automl.engine.plan", "plan_search": "automl.engine.plan", "run_search": "automl.engine.run"}
__all__ = ["SearchPlan", "plan_search", "run_search"]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'automl.engine' has no attribute {name!r}")
