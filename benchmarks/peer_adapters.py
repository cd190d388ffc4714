"""The peer benchmark's peers (issue 19), each run through its own API: Syne Tune, SMAC3 and DEHB.

``METHODS`` lists them as :class:`peer_protocol.Method` objects, for ``benchmarks/peers.py``:

- ``syne_tune:asha``, ``syne_tune:bohb``, ``syne_tune:hyperband``: Syne Tune's ``Tuner`` with its
  ``PythonBackend`` (each trial a subprocess of its own, ``n_workers`` at once), its schedulers
  ``ASHA``, ``BOHB`` (ASHA with a KDE searcher) and ``ASHA`` with one bracket per rung level
  (asynchronous Hyperband), and its ``StoppingCriterion(max_num_evaluations=...)``. A trial runs
  the task's curve and reports each epoch; it continues only once the Tuner has handed that report
  to the scheduler (an ``on_trial_result`` callback writes a go-ahead file), as a Ray Tune function
  trainable waits at each report: without it a fast trial runs past the scheduler's stop, which
  comes one polling interval later, and is charged epochs the scheduler never wanted. The epochs
  are recorded afterwards from the trials' own reports (``time.time()`` stamps).
  ``syne_tune:mobster`` and ``syne_tune:hypertune`` are listed for what the issue asks and
  Syne Tune 0.16 no longer offers: their ``available()`` says so, and BOHB and Hyperband run instead;
- ``smac3:hyperband``: SMAC3's ``MultiFidelityFacade`` (Hyperband, eta 3, with its random forest),
  asked and told in this process, ``n_workers`` evaluations at once in threads (SMAC itself runs
  one at a time unless given Dask; asking again before the previous trials are told is how its
  Dask runner works too). SMAC cannot resume: an evaluation at budget ``b`` trains ``b`` epochs
  from scratch and pays them all;
- ``dehb``: the ``dehb`` package's ``DEHB``, asked and told the same way (built with
  ``n_workers=1`` so that it starts no Dask cluster; the threads here are its workers). Fidelities
  in epochs; each evaluation trains from scratch.

Spaces are translated from the service's format: log scales stay log scales (``loguniform`` /
``lograndint``, ``log=True``), an int or float with a ``step`` becomes a grid of exactly the values
``low + k * step`` (Syne Tune's ``finrange``; an integer index in ConfigSpace), and categorical
choices that are not all plain strings, all ints or all floats travel as tokens ``c0``, ``c1``, ...
and are decoded back before the task sees them.

What must stay true: every epoch a peer trains is charged to the ledger once, at the epoch count
the peer chose (a restart pays again from epoch 1, under a new trial key); a peer stops asking
once ``ledger.exhausted()`` (or, across processes, once its own stop criterion counts the budget's
reports); importing this module imports no peer (the service's venv has none of them), and a
peer that cannot run here says exactly why in ``available()`` instead of vanishing.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import io
import json
import logging
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from peer_protocol import Ledger, Method, PeerTask

HERE = Path(__file__).resolve().parent
INSTALL_HINT = (
    "the peers live in a venv of their own: python3 -m venv .venv-peers && .venv-peers/bin/pip install torch==2.13.0 "
    "&& .venv-peers/bin/pip install -e '.[peers]' (benchmarks/README.md, 'Installing the peers')"
)
ETA = 3  # every peer's halving rate: Hyperband's and ASHA's default, and what the tasks' 1, 3, 9, 27 epochs suit
SYNE_TUNE_POLL_S = 0.1  # the Tuner's sleep between polls when all workers are busy (its default, 5 s, idles them)
SYNE_TUNE_GO_WAIT_S = 600.0  # a trial left without a go-ahead this long gives up (its Tuner is gone)
RESERVED = ("peer_task_dir", "peer_task_module", "peer_task_name", "peer_seed", "peer_adapters_dir")
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_.+][A-Za-z0-9_.+-]*")


# ---------------------------------------------------------------- spaces


def grid_size(low: float, high: float, step: float) -> int:
    """How many steps past ``low`` stay within ``high``: the values are ``low + k * step``, k = 0..n."""
    return math.floor((high - low) / step + 1e-9)


def choice_tokens(choices: list[Any] | tuple[Any, ...]) -> list[Any]:
    """The choices as a peer carries them: themselves when all are plain strings (safe on a command
    line), all ints or all floats; else ``c0``, ``c1``, ... (booleans, None and mixtures do not
    survive Syne Tune's argparse round trip, and ConfigSpace wants one type)."""
    values = list(choices)
    if all(isinstance(c, str) and _SAFE_TOKEN.fullmatch(c) for c in values):
        return values
    for kind in (int, float):
        if all(type(c) is kind for c in values):
            return values
    return [f"c{i}" for i in range(len(values))]


@dataclass(frozen=True)
class SpaceCodec:
    """Turns a peer's config back into the service's values for one space in the service's format."""

    space: Mapping[str, Mapping[str, Any]]

    def __post_init__(self) -> None:
        clash = sorted(set(self.space) & set(RESERVED))
        if clash:
            raise ValueError(f"parameter names {clash} are reserved by the peer adapters (benchmarks/peer_adapters.py)")

    def decode(self, config: Mapping[str, Any], *, indexed: bool) -> dict[str, Any]:
        """``config`` as the task takes it. ``indexed``: a stepped int or float came as its index
        ``k`` (ConfigSpace); else as its value (Syne Tune's ``finrange``)."""
        out: dict[str, Any] = {}
        for name, p in self.space.items():
            value = config[name]
            if p["type"] == "categorical":
                choices = list(p["choices"])
                tokens = choice_tokens(choices)
                value = choices[tokens.index(_native(value, tokens))] if tokens == choices else choices[tokens.index(str(value))]
            elif p["type"] == "int":
                step = int(p.get("step") or 1)
                value = int(p["low"]) + round(float(value)) * step if indexed and step > 1 else round(float(value))
                value = min(int(p["high"]), max(int(p["low"]), value))
            else:
                step = p.get("step")
                if step and indexed:
                    value = float(p["low"]) + round(float(value)) * float(step)
                value = min(float(p["high"]), max(float(p["low"]), float(value)))
            out[name] = value
        return out


def _native(value: Any, tokens: list[Any]) -> Any:
    """A categorical value as one of ``tokens`` (a peer may hand back numpy scalars or cast strings)."""
    if value in tokens:
        return value
    if hasattr(value, "item"):
        value = value.item()
    kind = type(tokens[0])
    return kind(value)


def to_syne_tune(space: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The space as Syne Tune's domains (``uniform``, ``loguniform``, ``randint``, ``lograndint``,
    ``finrange``, ``choice``)."""
    from syne_tune.config_space import choice, finrange, lograndint, loguniform, randint, uniform

    out: dict[str, Any] = {}
    for name, p in space.items():
        if p["type"] == "categorical":
            out[name] = choice(choice_tokens(p["choices"]))
        elif p["type"] == "int":
            low, high, step = int(p["low"]), int(p["high"]), int(p.get("step") or 1)
            if step > 1:
                n = grid_size(low, high, step)
                out[name] = finrange(low, low + n * step, n + 1, cast_int=True)
            else:
                out[name] = lograndint(low, high) if p.get("log") else randint(low, high)
        else:
            low_f, high_f, step_f = float(p["low"]), float(p["high"]), p.get("step")
            if step_f:
                n = grid_size(low_f, high_f, float(step_f))
                out[name] = finrange(low_f, low_f + n * float(step_f), n + 1)
            else:
                out[name] = loguniform(low_f, high_f) if p.get("log") else uniform(low_f, high_f)
    return out


def to_configspace(space: Mapping[str, Mapping[str, Any]], seed: int) -> Any:
    """The space as a ConfigSpace ``ConfigurationSpace`` (SMAC3, DEHB): ``Float``/``Integer`` with
    ``log``, stepped values as an ``Integer`` index ``k`` of ``low + k * step``, ``Categorical``."""
    from ConfigSpace import Categorical, ConfigurationSpace, Float, Integer

    cs = ConfigurationSpace(seed=seed)
    for name, p in space.items():
        if p["type"] == "categorical":
            cs.add(Categorical(name, choice_tokens(p["choices"])))
        elif p["type"] == "int":
            low, high, step = int(p["low"]), int(p["high"]), int(p.get("step") or 1)
            if step > 1:
                cs.add(Integer(name, (0, grid_size(low, high, step))))
            else:
                cs.add(Integer(name, (low, high), log=bool(p.get("log"))))
        else:
            low_f, high_f, step_f = float(p["low"]), float(p["high"]), p.get("step")
            if step_f:
                cs.add(Integer(name, (0, grid_size(low_f, high_f, float(step_f)))))
            else:
                cs.add(Float(name, (low_f, high_f), log=bool(p.get("log"))))
    return cs


def epochs_of(budget: float, task: PeerTask) -> int:
    """A peer's (real-valued) budget as whole epochs within the task's range."""
    return min(task.max_epochs, max(task.min_epochs, round(float(budget))))


# ---------------------------------------------------------------- availability


def _missing(modules: tuple[str, ...], dist: str, versions: tuple[str, ...]) -> str | None:
    """Why ``dist`` cannot be used here, or None: not installed, failing to import, or a release
    whose API this module was not written for. Imports ``modules`` (seconds, for SMAC): a runner
    that asks ``available()`` before it starts a ledger keeps the imports out of the wall-clock."""
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return f"{dist} is not installed in this Python ({sys.prefix}); {INSTALL_HINT}"
    if not version.startswith(versions):
        return f"{dist} {version} is installed, but this adapter is written for {' or '.join(versions)}.x ({INSTALL_HINT})"
    try:
        for module in modules:
            importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - whatever stops the import is the reason to report
        return f"{dist} {version} does not import here: {type(exc).__name__}: {exc}"
    return None


# ---------------------------------------------------------------- in-process peers (SMAC3, DEHB)


def train(task: PeerTask, seed: int, ledger: Ledger, key: str, config: Mapping[str, Any], epochs: int) -> float | None:
    """Train ``config`` from scratch for ``epochs`` epochs, charging each; the last loss, or None when
    the budget ran out first (the peer is not told of a trial the budget cut)."""
    curve = iter(task.curve(config, seed))
    loss: float | None = None
    try:
        for epoch in range(1, epochs + 1):
            if ledger.exhausted():
                return None
            loss = float(next(curve))
            ledger.record(key, config, epoch, loss)
    finally:
        close = getattr(curve, "close", None)
        if close is not None:
            close()
    return loss


@dataclass
class Job:
    """One evaluation a peer asked for: what to train, and the peer's own handle to tell it back."""

    key: str
    config: dict[str, Any]
    epochs: int
    handle: Any


def ask_tell(
    task: PeerTask,
    seed: int,
    ledger: Ledger,
    n_workers: int,
    ask: Callable[[int], Job],
    tell: Callable[[Job, float, float], None],
) -> dict[str, int]:
    """Keep ``n_workers`` evaluations in flight in threads, asking the peer for the next one as soon as
    a thread is free, telling it each result (job, loss, seconds), until the ledger is exhausted.
    ``ask`` and ``tell`` run only in this thread: neither SMAC nor DEHB is thread-safe. Returns how
    many evaluations were asked for and told (the rest were cut by the budget)."""
    running: dict[Future[float | None], tuple[Job, float]] = {}
    asked = told = 0
    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="peer") as pool:
        while True:
            while len(running) < n_workers and not ledger.exhausted():
                job = ask(asked)
                asked += 1
                future = pool.submit(train, task, seed, ledger, job.key, job.config, job.epochs)
                running[future] = (job, time.perf_counter())
            if not running:
                return {"evaluations_asked": asked, "evaluations_told": told}
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                job, started = running.pop(future)
                loss = future.result()
                if loss is not None:
                    tell(job, loss, time.perf_counter() - started)
                    told += 1


@dataclass
class Smac3Hyperband:
    """SMAC3's multi-fidelity facade: Hyperband (eta 3) with a random forest, budgets in epochs."""

    name: str = "smac3:hyperband"
    last_info: dict[str, Any] | None = None  # what its last run did, for the results JSON

    def available(self) -> str | None:
        return _missing(("smac", "smac.runhistory.dataclasses"), "smac", ("2.",))

    def describe(self) -> dict[str, Any]:
        return _describe(
            "smac",
            "MultiFidelityFacade: Hyperband (eta 3) with SMAC's random forest; ask/tell here, "
            "n_workers evaluations at once in threads; no resume: a budget of b epochs trains b from scratch",
        )

    def run(self, task: PeerTask, seed: int, ledger: Ledger, n_workers: int) -> None:
        from smac import MultiFidelityFacade, Scenario
        from smac.intensifier.hyperband_utils import get_n_trials_for_hyperband_multifidelity
        from smac.runhistory.dataclasses import TrialValue

        codec = SpaceCodec(task.space)
        with tempfile.TemporaryDirectory(prefix="peer-smac-") as out:
            scenario = Scenario(
                to_configspace(task.space, seed),
                name=f"{task.name}-{seed}",
                output_directory=Path(out),
                deterministic=True,
                # The evaluations the budget pays for, by SMAC's own rule; it sizes its initial design by them.
                n_trials=max(
                    1,
                    get_n_trials_for_hyperband_multifidelity(
                        ledger.budget_epochs, task.min_epochs, task.max_epochs, ETA, print_summary=False
                    ),
                ),
                min_budget=task.min_epochs,
                max_budget=task.max_epochs,
                seed=seed,
            )
            smac = MultiFidelityFacade(
                scenario,
                target_function=None,  # ask and tell: the threads here evaluate
                intensifier=MultiFidelityFacade.get_intensifier(scenario, eta=ETA),
                overwrite=True,
                logging_level=40,
            )

            def ask(n: int) -> Job:
                info = smac.ask()
                epochs = epochs_of(info.budget, task)
                return Job(f"s{n}@{epochs}", codec.decode(dict(info.config), indexed=True), epochs, info)

            def tell(job: Job, loss: float, seconds: float) -> None:
                smac.tell(job.handle, TrialValue(cost=loss, time=seconds), save=False)

            self.last_info = {**self.describe(), **ask_tell(task, seed, ledger, n_workers, ask, tell)}


@dataclass
class Dehb:
    """DEHB (differential evolution with Hyperband), the ``dehb`` package, fidelities in epochs."""

    name: str = "dehb"
    last_info: dict[str, Any] | None = None

    def available(self) -> str | None:
        return _missing(("dehb",), "dehb", ("0.1.",))

    def describe(self) -> dict[str, Any]:
        return _describe(
            "dehb",
            "DEHB (eta 3) by ask/tell, built with n_workers=1 (no Dask cluster), n_workers evaluations "
            "at once in threads; no resume: a fidelity of b epochs trains b from scratch",
        )

    def run(self, task: PeerTask, seed: int, ledger: Ledger, n_workers: int) -> None:
        from dehb import DEHB

        codec = SpaceCodec(task.space)
        with tempfile.TemporaryDirectory(prefix="peer-dehb-") as out:
            optimizer = DEHB(
                cs=to_configspace(task.space, seed),
                min_fidelity=task.min_epochs,
                max_fidelity=task.max_epochs,
                eta=ETA,
                n_workers=1,  # no Dask client: the threads of ask_tell are the workers
                seed=seed,
                output_path=out,
                save_freq="end",  # nothing written per tell; "end" is only reached by DEHB.run
                log_level="ERROR",
            )

            def ask(n: int) -> Job:
                info = optimizer.ask()
                epochs = epochs_of(info["fidelity"], task)
                return Job(f"d{n}@{epochs}", codec.decode(dict(info["config"]), indexed=True), epochs, info)

            def tell(job: Job, loss: float, seconds: float) -> None:
                optimizer.tell(job.handle, {"fitness": loss, "cost": seconds})

            self.last_info = {**self.describe(), **ask_tell(task, seed, ledger, n_workers, ask, tell)}


# ---------------------------------------------------------------- Syne Tune


def task_locator(task: PeerTask) -> tuple[str, str]:
    """(a folder for ``sys.path``, a module name) whose ``get(task.name)`` rebuilds ``task`` in another
    process: Syne Tune's trials cannot be handed the object, only command-line strings."""
    module = sys.modules.get(type(task).__module__)
    file = getattr(module, "__file__", None)
    if module is None or file is None or not callable(getattr(module, "get", None)):
        raise ValueError(
            f"task {task.name!r} is a {type(task).__qualname__} from {type(task).__module__!r}, which has no get(name): "
            "a Syne Tune trial rebuilds its task in a subprocess with get(name) (peer_tasks.get)"
        )
    path = Path(file).resolve()
    name = module.__name__
    if name.rpartition(".")[2] != path.stem:  # loaded from a file under another name: import it by its file's
        return str(path.parent), path.stem
    return str(path.parents[name.count(".")]), name


def syne_tune_trial(**config: Any) -> None:
    """The function Syne Tune's PythonBackend runs in each trial's subprocess. It is serialised
    without its globals and imports, so it only finds this module again and calls :func:`run_trial`."""
    import sys

    sys.path.insert(0, config["peer_adapters_dir"])
    import peer_adapters

    peer_adapters.run_trial(config)


def _checkpoint_dir() -> Path:
    """This trial's folder, from the ``--st_checkpoint_dir`` the LocalBackend gives every trial."""
    argv = sys.argv
    for i, arg in enumerate(argv[:-1]):
        if arg == "--st_checkpoint_dir":
            return Path(argv[i + 1])
    raise RuntimeError("no --st_checkpoint_dir among the trial's arguments: not started by Syne Tune's LocalBackend?")


def go_file(trial_dir: Path, epoch: int) -> Path:
    """The file whose existence lets a trial train past ``epoch`` (written by :class:`GoAhead`)."""
    return trial_dir / f"go-{epoch}"


def run_trial(config: Mapping[str, Any]) -> None:
    """One Syne Tune trial: rebuild the task, train the config, report each epoch, and wait after each
    report until the Tuner's scheduler has let it go on (a stop kills this process while it waits)."""
    from syne_tune import Reporter

    if config["peer_task_dir"] not in sys.path:
        sys.path.insert(0, config["peer_task_dir"])
    task = importlib.import_module(config["peer_task_module"]).get(config["peer_task_name"])
    params = SpaceCodec(task.space).decode(config, indexed=False)
    trial_dir = _checkpoint_dir().parent
    report = Reporter()
    for epoch, loss in enumerate(task.curve(params, int(config["peer_seed"])), 1):
        report(epoch=epoch, loss=float(loss))
        if epoch >= task.max_epochs:
            return
        deadline = time.monotonic() + SYNE_TUNE_GO_WAIT_S
        while not go_file(trial_dir, epoch).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no go-ahead after epoch {epoch} in {SYNE_TUNE_GO_WAIT_S:.0f} s: is the Tuner gone?")
            time.sleep(0.005)


def _quiet_logger() -> Any:
    """A TunerLogger that prints nothing (Syne Tune prints a banner, every trial and status tables)."""
    from syne_tune.tuner_logger import TunerLogger

    silent = {name: (lambda self, *a, **k: None) for name in dir(TunerLogger) if name.startswith("print")}
    return type("QuietTunerLogger", (TunerLogger,), silent)(use_colors=False, use_emojis=False)


def _go_ahead(backend: Any) -> Any:
    """A Syne Tune callback writing a trial's go-ahead file when its scheduler says CONTINUE."""
    from syne_tune.optimizer.scheduler import SchedulerDecision
    from syne_tune.tuner_callback import TunerCallback

    class GoAhead(TunerCallback):
        def on_trial_result(self, trial: Any, status: str, result: dict[str, Any], decision: str) -> None:
            if decision == SchedulerDecision.CONTINUE:
                go_file(backend.trial_path(trial.trial_id), int(result["epoch"])).touch()

    return GoAhead()


@contextlib.contextmanager
def _syne_tune_folder(path: str) -> Iterator[None]:
    """Syne Tune writes its experiment folder under ``$SYNETUNE_FOLDER`` (else ``~/syne-tune``); its
    loggers warn of what does not apply here (no GPU, its own baselines' ``points_to_evaluate``)."""
    before = os.environ.get("SYNETUNE_FOLDER")
    os.environ["SYNETUNE_FOLDER"] = path
    log = logging.getLogger("syne_tune")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
        if before is None:
            os.environ.pop("SYNETUNE_FOLDER", None)
        else:
            os.environ["SYNETUNE_FOLDER"] = before


SYNE_TUNE_VERSIONS = ("0.16.",)
SYNE_TUNE_MODULES = ("syne_tune", "syne_tune.optimizer.baselines", "syne_tune.backend", "syne_tune.report")


@dataclass
class SyneTune:
    """One of Syne Tune's multi-fidelity schedulers, run by its Tuner on its PythonBackend."""

    name: str
    scheduler: str  # a class in syne_tune.optimizer.baselines
    brackets: bool = False  # one bracket per rung level: asynchronous Hyperband instead of ASHA's one
    about: str = ""
    last_info: dict[str, Any] | None = None

    def available(self) -> str | None:
        reason = _missing(SYNE_TUNE_MODULES, "syne-tune", SYNE_TUNE_VERSIONS)
        if reason is None:
            baselines = importlib.import_module("syne_tune.optimizer.baselines")
            if not hasattr(baselines, self.scheduler):
                reason = f"syne-tune {importlib.metadata.version('syne-tune')} has no {self.scheduler}"
        return reason

    def describe(self) -> dict[str, Any]:
        return _describe("syne-tune", self.about)

    def run(self, task: PeerTask, seed: int, ledger: Ledger, n_workers: int) -> None:
        from syne_tune import StoppingCriterion, Tuner
        from syne_tune.backend import PythonBackend
        from syne_tune.optimizer import baselines

        task_dir, task_module = task_locator(task)
        codec = SpaceCodec(task.space)
        constants = {
            "peer_adapters_dir": str(HERE),
            "peer_task_dir": task_dir,
            "peer_task_module": task_module,
            "peer_task_name": task.name,
            "peer_seed": int(seed),
        }
        for value in constants.values():
            if isinstance(value, str) and any(c.isspace() for c in value):
                raise ValueError(f"{value!r} has a space: Syne Tune's LocalBackend splits a trial's command line on spaces")
        config_space = {**to_syne_tune(task.space), **constants}
        with tempfile.TemporaryDirectory(prefix="peer-syne-tune-") as out, _syne_tune_folder(out):
            rungs = math.floor(math.log(task.max_epochs / task.min_epochs, ETA) + 1e-9) + 1
            scheduler = getattr(baselines, self.scheduler)(
                config_space=config_space,
                metric="loss",
                do_minimize=True,
                time_attr="epoch",
                max_t=task.max_epochs,
                grace_period=task.min_epochs,
                reduction_factor=ETA,
                brackets=rungs if self.brackets else 1,
                random_seed=int(seed),
            )
            # rotate_gpus=False: the tasks train on the CPU, and its GPU probe writes nvidia-smi's output to ./std.out.
            backend = PythonBackend(tune_function=syne_tune_trial, config_space=config_space, rotate_gpus=False)
            tuner = Tuner(
                trial_backend=backend,
                scheduler=scheduler,
                # Its own criterion: stop once the budget's epochs have been reported (strictly more than budget - 1).
                stop_criterion=StoppingCriterion(max_num_evaluations=max(0, ledger.budget_epochs - 1)),
                n_workers=n_workers,
                sleep_time=SYNE_TUNE_POLL_S,
                results_update_interval=3600.0,
                print_update_interval=3600.0,
                tuner_name=re.sub(r"[^A-Za-z0-9-]", "-", f"peer-{task.name}-{seed}"),
                callbacks=[_go_ahead(backend)],
                save_tuner=False,
                output_logger=_quiet_logger(),
                trial_backend_path=str(Path(out) / "trials"),
            )
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # its closing summary table is printed, not logged
                    tuner.run()
            except Exception as exc:
                # Its own report of a failed trial (the trial's stderr) went to the quiet logger: say it here.
                raise RuntimeError(f"Syne Tune's Tuner stopped: {exc}{failed_trial_stderr(backend)}") from exc
            trials = record_syne_tune_trials(backend, codec, ledger)
            self.last_info = {**self.describe(), "trials": trials, "trials_failed": tuner.tuning_status.num_trials_failed}


def failed_trial_stderr(backend: Any) -> str:
    """The end of the first trial's stderr that holds a traceback, or ''."""
    root = Path(getattr(backend, "local_path", "") or ".")
    for trial_dir in sorted((p for p in root.glob("[0-9]*") if p.name.isdigit()), key=lambda p: int(p.name)):
        err = trial_dir / "std.err"
        text = err.read_text(errors="replace") if err.exists() else ""
        if "Traceback" in text:
            return f"; trial {trial_dir.name}'s stderr ends: {text[-1500:]}"
    return ""


def record_syne_tune_trials(backend: Any, codec: SpaceCodec, ledger: Ledger) -> int:
    """Charge every epoch each trial reported (its stdout, read after the run: this includes reports
    the Tuner had not fetched yet when it stopped), stamped with the trial's ``time.time()``; returns
    how many trials there were."""
    from syne_tune.report import retrieve

    root = Path(backend.local_path)
    trial_dirs = sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    for trial_dir in trial_dirs:
        config = codec.decode(json.loads((trial_dir / "config.json").read_text()), indexed=False)
        reports = retrieve(backend.stdout(int(trial_dir.name)))
        for result in reports:
            seconds = float(result["st_worker_timestamp"]) - ledger.wall_started
            ledger.record(f"t{trial_dir.name}", config, int(result["epoch"]), float(result["loss"]), seconds)
    return len(trial_dirs)


@dataclass
class NotOffered:
    """A peer the issue names that the installed release does not have; another one runs in its place."""

    name: str
    dist: str
    wanted: str
    instead: str

    def available(self) -> str | None:
        try:
            version = importlib.metadata.version(self.dist)
        except importlib.metadata.PackageNotFoundError:
            return f"{self.dist} is not installed in this Python ({sys.prefix}); {INSTALL_HINT}"
        return f"{self.dist} {version} does not offer {self.wanted}; {self.instead} runs instead"

    def describe(self) -> dict[str, Any]:
        return _describe(self.dist, f"not run: {self.wanted} is not in this release; {self.instead} runs instead")

    def run(self, task: PeerTask, seed: int, ledger: Ledger, n_workers: int) -> None:
        raise RuntimeError(f"{self.name}: {self.available()}")


def _describe(dist: str, what: str) -> dict[str, Any]:
    """What a peer runs, with the installed version of its package, for the results JSON."""
    try:
        version: str | None = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"package": dist, "version": version, "runs": what}


METHODS: list[Method] = [
    SyneTune(
        "syne_tune:asha",
        "ASHA",
        about="Tuner + PythonBackend (a subprocess per trial, n_workers at once), ASHA (stopping, eta 3, one bracket, "
        "random search); trials resume: each continues its own curve",
    ),
    SyneTune(
        "syne_tune:bohb",
        "BOHB",
        about="Tuner + PythonBackend, BOHB: ASHA (stopping, eta 3) with a KDE searcher (TPE-like, as Falkner et al.); "
        "stands in for MOBSTER, which Syne Tune 0.16 no longer has",
    ),
    SyneTune(
        "syne_tune:hyperband",
        "ASHA",
        brackets=True,
        about="Tuner + PythonBackend, ASHA with one bracket per rung level (asynchronous Hyperband, random search); "
        "stands in for HyperTune and Syne Tune's DEHB, which 0.16 no longer has",
    ),
    NotOffered("syne_tune:mobster", "syne-tune", "MOBSTER (removed in its 0.14 rewrite)", "syne_tune:bohb"),
    NotOffered(
        "syne_tune:hypertune",
        "syne-tune",
        "HyperTune or its own DEHB (removed in its 0.14 rewrite)",
        "syne_tune:hyperband (and the dehb package as 'dehb')",
    ),
    Smac3Hyperband(),
    Dehb(),
]
