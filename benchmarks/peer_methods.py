"""Our side of the peer benchmark (issue 19): the service's strategies, plain Optuna, random search.

Each is a :class:`peer_protocol.Method`; ``METHODS`` lists them (the peers' adapters are in
``peer_adapters``):

- ``service:default`` (``automl.search`` with its default sampler and scheduler, whatever they
  are when it runs), ``service:auto`` (``sampler="auto", scheduler="auto"``: the service's own
  pick, recorded in the run's ``info``), ``service:<sampler>+<scheduler>`` for the pairs in ``SERVICE_PAIRS``
  and ``service:tpe+asha/option=value/...`` for the scheduler options in ``SERVICE_TUNINGS``,
  through the real Python API: ``n_workers`` trials at once (``max_concurrent``, one CPU a
  trial), no plots, no model registry, with a clean environment (``_common.service_env``) on
  one state folder for the process (``service_home``: as one user's, so the stores' creation
  is paid once, not per call), on the Ray the runner started once. Its trials run in
  Ray's workers, so the objective appends one JSON line per epoch (trial, epoch, loss,
  ``time.time()``) to a file, and the ledger is filled from that file after the call (each
  epoch with its own seconds). **The epoch budget is enforced live**: before each epoch the
  objective counts the lines; once they reach the budget it trains nothing more and returns
  ``BUDGET_SENTINEL``, far under the job's ``target`` (``BUDGET_TARGET``), so the service
  stops as a user's target would stop it. Those sentinel values are the harness's signal, not
  results: they are never in the ledger, and they come only after the budget is spent. Two
  trials may both start an epoch at the last one (at most ``n_workers - 1`` epochs over); the
  scoring cuts at the budget. ``unsuited`` keeps GP off the spaces with categorical parameters
  (the service's GP sampler is for small continuous spaces; the results say "not run: ...");
- ``optuna:tpe+hyperband``: plain Optuna in this process, ``TPESampler(seed)`` and
  ``HyperbandPruner(min_epochs, max_epochs, reduction_factor=3)``, ``n_jobs=n_workers`` threads;
- ``random``: random search at full fidelity (uniform draws from the space, log where the space
  says), ``n_workers`` threads.

What must stay true: every epoch a method trains is recorded once, with its own seconds; a
method stops asking for epochs once the budget is spent. The service's objective runs in Ray's
workers, which cannot import this folder by name: this module and ``peer_tasks`` are pickled by
value (``ship_by_value``), so the objective may use only what it imports inside itself.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer_tasks
from peer_protocol import Ledger, Method, PeerTask

BUDGET_SENTINEL = -1e30  # what a service trial returns once the budget is spent (never recorded)
BUDGET_TARGET = -1e29  # the service job's target: reached only by the sentinel
# (sampler, scheduler) of the service besides its default: one sampler per scheduler and one scheduler per sampler.
SERVICE_PAIRS = (("tpe", "hyperband"), ("gp", "asha"), ("qmc", "asha"), ("random", "asha"), ("tpe", "fifo"))
# Candidates for the default's tuning (issue 19, item 4), each a scheduler option set on the default pair,
# named service:tpe+asha/key=value: tried on the tuning tasks only, never chosen on the held-out ones.
# screen: after the first trial, the next 8 at ASHA's first rung stop there (automl.engine.screening), chosen
# before any run. Since the service sizes the screen itself (auto_strategy.SCREEN_ONE_IN), every service:*+asha
# method without a screen option screens trials // 32 on an all-numeric space (8 here), the default included.
SERVICE_TUNINGS: tuple[Mapping[str, Any], ...] = ({"reduction_factor": 3}, {"reduction_factor": 3, "brackets": 2}, {"screen": 8})
AUTO = ("auto", "auto")  # service:auto: the service picks both from the space, budget and concurrency (issue 19, item 5)


def trial_seed(seed: int, number: int) -> int:
    """A trial's training seed from the run's seed and the trial's number (the methods in this process)."""
    return (seed * 1_000_003 + number) % 2**31


def continuous(task: PeerTask) -> bool:
    return all(p["type"] != "categorical" for p in task.space.values())


def ship_by_value() -> None:
    """Ray's workers cannot import this folder's modules by name: pickle the task and objective code by value."""
    from ray import cloudpickle

    for module in (peer_tasks, sys.modules[__name__]):
        cloudpickle.register_pickle_by_value(module)


def epochs_logged(path: str) -> int:
    try:
        with open(path, "rb") as handle:
            return handle.read().count(b"\n")
    except FileNotFoundError:
        return 0


def make_objective(task: PeerTask, log_path: str, budget: int) -> Any:
    """The service objective: ``task.curve`` one epoch a step, each epoch logged, stopping once ``budget`` epochs are logged."""

    def objective(params: dict[str, Any], ctx: Any) -> float | None:
        import json as _json
        import os as _os
        import time as _time

        config = dict(params)
        curve = None
        for epoch in range(1, ctx.max_epochs + 1):
            if epochs_logged(log_path) >= budget:
                return BUDGET_SENTINEL
            if curve is None:
                curve = task.curve(config, ctx.seed)
            loss = next(curve)
            line = _json.dumps({"trial": ctx.trial_number, "epoch": epoch, "loss": loss, "t": _time.time(), "config": config})
            fd = _os.open(log_path, _os.O_WRONLY | _os.O_APPEND | _os.O_CREAT, 0o644)
            try:  # one write of one line, appended: lines from the two trials at once never interleave
                _os.write(fd, (line + "\n").encode())
            finally:
                _os.close(fd)
            ctx.report(loss=loss, step=epoch)
        return None

    return objective


@dataclass
class ServiceMethod:
    """The service through ``automl.search``: its default strategy (``sampler`` None) or a sampler + scheduler pair."""

    sampler: str | None = None
    scheduler: str | None = None
    scheduler_options: Mapping[str, Any] | None = None
    last_info: dict[str, Any] | None = None  # the last run's phases and strategy, for the results JSON
    name: str = field(init=False)

    def __post_init__(self) -> None:
        if self.sampler is None:
            self.name = "service:default"
        elif (self.sampler, self.scheduler) == AUTO:
            self.name = "service:auto"
        else:
            self.name = f"service:{self.sampler}+{self.scheduler}"
        if self.scheduler_options:
            self.name += "".join(f"/{k}={v}" for k, v in self.scheduler_options.items())

    def available(self) -> str | None:
        try:
            import ray  # noqa: F401

            import automl  # noqa: F401
        except ImportError as exc:
            return f"the service cannot be imported here ({exc})"
        if self.sampler == "auto" and importlib.util.find_spec("automl.engine.auto_strategy") is None:
            return "this version of the service has no 'auto' strategy"
        return None

    def unsuited(self, task: PeerTask) -> str | None:
        if self.sampler == "gp" and not continuous(task):
            return "the GP sampler is for continuous spaces; this one has categorical parameters"
        return None

    def run(self, task: PeerTask, seed: int, ledger: Ledger, n_workers: int) -> None:
        import _common as C

        import automl

        ship_by_value()
        home = service_home()
        log_path = str(home / f"epochs-{uuid.uuid4().hex}.jsonl")
        strategy: dict[str, Any] = {} if self.sampler is None else {"sampler": self.sampler, "scheduler": self.scheduler}
        if self.scheduler_options:
            strategy["scheduler_options"] = dict(self.scheduler_options)
        try:
            with C.service_env(home):
                result = automl.search(
                    make_objective(task, log_path, ledger.budget_epochs),
                    dict(task.space),
                    # more trials than the budget can pay for: the budget (via the target) ends the search
                    n_trials=ledger.budget_epochs // task.min_epochs + n_workers,
                    metric="loss",
                    mode="min",
                    max_steps=task.max_epochs,
                    target=BUDGET_TARGET,
                    cpus_per_trial=1,
                    max_concurrent=n_workers,
                    seed=seed,
                    name=f"peers-{task.name}",
                    register_model=False,
                    plots=False,
                    code_dir=False,
                    **strategy,
                )
            record_log(ledger, log_path)
            self.last_info = {
                "phases": dict(result.phases),
                "sampler": result.sampler,
                "scheduler": result.scheduler,
                "strategy_reason": getattr(result, "strategy_reason", None),
                "trials": len(result.trials),
            }
        finally:
            with contextlib.suppress(OSError):
                os.remove(log_path)


_HOME: list[Path] = []


def service_home() -> Path:
    """One state folder for every service call of this process (as one user's ``AUTOML_HOME``), removed at exit."""
    if not _HOME:
        _HOME.append(Path(tempfile.mkdtemp(prefix="peers-service-")))
        atexit.register(shutil.rmtree, _HOME[0], ignore_errors=True)
    return _HOME[0]


def record_log(ledger: Ledger, log_path: str) -> None:
    """The epochs the service's trials logged, into the ledger, each at its own ``time.time()`` since the ledger began."""
    if not os.path.exists(log_path):
        return
    with open(log_path, encoding="utf-8") as handle:
        for line in handle:
            e = json.loads(line)
            ledger.record(f"t{e['trial']}", e["config"], e["epoch"], e["loss"], seconds=e["t"] - ledger.wall_started)


def suggest(trial: Any, space: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The space (the service's format) as an Optuna trial's suggestions."""
    config: dict[str, Any] = {}
    for name, p in space.items():
        if p["type"] == "categorical":
            config[name] = trial.suggest_categorical(name, list(p["choices"]))
        elif p["type"] == "float":
            config[name] = trial.suggest_float(name, p["low"], p["high"], log=bool(p.get("log")))
        else:
            config[name] = trial.suggest_int(name, p["low"], p["high"], log=bool(p.get("log")))
    return config


class OptunaHyperband:
    """Plain Optuna: TPE and the Hyperband pruner, trials in ``n_workers`` threads of this process."""

    name = "optuna:tpe+hyperband"

    def available(self) -> str | None:
        try:
            import optuna  # noqa: F401
        except ImportError as exc:
            return f"optuna cannot be imported here ({exc})"
        return None

    def run(self, task: PeerTask, seed: int, ledger: Ledger, n_workers: int) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            direction="minimize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=optuna.pruners.HyperbandPruner(min_resource=task.min_epochs, max_resource=task.max_epochs, reduction_factor=3),
        )

        def objective(trial: optuna.Trial) -> float:
            config = suggest(trial, task.space)
            curve = task.curve(config, trial_seed(seed, trial.number))
            loss = None
            for epoch in range(1, task.max_epochs + 1):
                if ledger.exhausted():
                    study.stop()
                    raise optuna.TrialPruned  # unfinished: the budget ran out under it
                loss = next(curve)
                ledger.record(f"t{trial.number}", config, epoch, loss)
                trial.report(loss, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned
            assert loss is not None  # max_epochs >= 1
            return float(loss)

        def stop_when_spent(study: optuna.Study, _trial: Any) -> None:
            if ledger.exhausted():
                study.stop()

        study.optimize(objective, n_trials=ledger.budget_epochs + n_workers, n_jobs=n_workers, callbacks=[stop_when_spent])


class RandomSearch:
    """Random search at full fidelity: uniform draws from the space, ``n_workers`` threads."""

    name = "random"

    def available(self) -> str | None:
        return None

    def run(self, task: PeerTask, seed: int, ledger: Ledger, n_workers: int) -> None:
        rng = random.Random(seed)
        lock = threading.Lock()
        counter = iter(range(10**9))
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                while not ledger.exhausted():
                    with lock:
                        number, config = next(counter), peer_tasks.sample_config(task.space, rng)
                    curve = task.curve(config, trial_seed(seed, number))
                    for epoch in range(1, task.max_epochs + 1):
                        if ledger.exhausted():
                            return
                        ledger.record(f"t{number}", config, epoch, next(curve))
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=worker, name=f"random-{i}") for i in range(n_workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]


METHODS: list[Method] = [
    ServiceMethod(),
    ServiceMethod(*AUTO),
    *(ServiceMethod(sampler, scheduler) for sampler, scheduler in SERVICE_PAIRS),
    *(ServiceMethod("tpe", "asha", options) for options in SERVICE_TUNINGS),
    OptunaHyperband(),
    RandomSearch(),
]
