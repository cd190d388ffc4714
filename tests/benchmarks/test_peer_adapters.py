"""The peer benchmark's peers (``benchmarks/peer_adapters.py``), in whichever venv runs this file.

In the service's venv (CI's) none of the peers is installed: each adapter's ``available()`` must
then say which package is missing and how to install it, and the translations must fail to import
rather than pretend. In the peers' venv (``.venv-peers/bin/python -m pytest
tests/benchmarks/test_peer_adapters.py``) each runnable adapter searches a toy task defined here (a
multi-fidelity Branin with a log float, a stepped float, a stepped int, a log int and a categorical
of mixed types) on a tiny budget with two workers, and the ledger must hold at least the budget's
epochs, every trial charged from epoch 1 up without a gap, at the fidelities the peer chose within
``min_epochs..max_epochs``, with configs inside the space. No test is skipped in either venv.

Syne Tune's trials rebuild the toy task in a subprocess from this module's ``get(name)``.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
for folder in (BENCH, Path(__file__).resolve().parent):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import peer_adapters  # noqa: E402 - benchmarks/ is not a package: on sys.path above
from peer_protocol import Ledger  # noqa: E402

PEER_MODULES = {"syne-tune": "syne_tune", "smac": "smac", "dehb": "dehb"}
INSTALLED = {dist: importlib.util.find_spec(module) is not None for dist, module in PEER_MODULES.items()}
BUDGET = 24
WORKERS = 2


@dataclass
class ToyBranin:
    """Branin in (x1, x2) with a biased cheap fidelity (its optimum moves with ``z``), plus small
    terms for the other parameters so that every one of them matters."""

    name: str = "toy_branin"
    kind: str = "synthetic"
    held_out: bool = False
    min_epochs: int = 1
    max_epochs: int = 9  # 1, 3, 9: Hyperband's levels with eta 3
    optimum: float | None = None
    space: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            "x1": {"type": "float", "low": -5.0, "high": 10.0},
            "x2": {"type": "float", "low": 0.0, "high": 15.0, "step": 0.5},
            "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            "units": {"type": "int", "low": 3, "high": 20, "step": 4},  # 3, 7, 11, 15, 19
            "width": {"type": "int", "low": 2, "high": 200, "log": True},
            "mode": {"type": "categorical", "choices": [None, True, "fast"]},
        }
    )

    def curve(self, config: Mapping[str, Any], seed: int) -> Iterator[float]:
        for epoch in range(1, self.max_epochs + 1):
            z = epoch / self.max_epochs
            b = 5.1 / (4 * math.pi**2) - 0.01 * (1 - z)
            x1, x2 = float(config["x1"]), float(config["x2"])
            branin = (x2 - b * x1**2 + 5 / math.pi * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10
            extra = 0.1 * abs(math.log10(config["lr"]) + 2) + 0.01 * config["units"] + 0.001 * config["width"]
            yield branin + extra + {None: 0.0, True: 0.2, "fast": 0.5}[config["mode"]]


TOY = ToyBranin()


def get(name: str) -> ToyBranin:
    """What a Syne Tune trial calls to rebuild the task in its subprocess."""
    if name != TOY.name:
        raise KeyError(name)
    return TOY


def package_of(method: Any) -> str:
    return {"SyneTune": "syne-tune", "NotOffered": "syne-tune", "Smac3Hyperband": "smac", "Dehb": "dehb"}[type(method).__name__]


def test_every_peer_the_issue_names_is_listed_once() -> None:
    names = [m.name for m in peer_adapters.METHODS]
    assert len(names) == len(set(names))
    for wanted in ("syne_tune:asha", "syne_tune:bohb", "syne_tune:mobster", "syne_tune:hypertune", "smac3:hyperband", "dehb"):
        assert wanted in names


@pytest.mark.parametrize("method", peer_adapters.METHODS, ids=lambda m: m.name)
def test_a_peer_says_why_it_cannot_run_or_runs_within_the_budget(method: Any) -> None:
    dist = package_of(method)
    reason = method.available()
    described = method.describe()
    assert described["package"] == dist and described["runs"]
    if not INSTALLED[dist]:
        # The service's venv: the reason names the package, this Python and the way to install it.
        assert reason is not None and reason.startswith(f"{dist} is not installed in this Python ({sys.prefix})"), reason
        assert ".venv-peers" in reason and "'.[peers]'" in reason
        assert described["version"] is None
        return
    assert described["version"]
    if isinstance(method, peer_adapters.NotOffered):
        # Installed, but the release lacks it: the reason says which runs instead, and running it refuses.
        assert reason is not None and "does not offer" in reason and method.instead.split()[0] in reason
        with pytest.raises(RuntimeError, match="does not offer"):
            method.run(TOY, 0, Ledger(budget_epochs=1), 1)
        return
    assert reason is None, reason
    ledger = Ledger(budget_epochs=BUDGET)
    method.run(TOY, 0, ledger, WORKERS)
    check_ledger(method.name, ledger)


def check_ledger(name: str, ledger: Ledger) -> None:
    records = ledger.records
    assert ledger.spent >= BUDGET, f"{name} stopped at {ledger.spent} of {BUDGET} epochs"
    assert ledger.spent <= BUDGET + WORKERS * TOY.max_epochs, f"{name} ran far past the budget: {ledger.spent}"
    by_trial: dict[str, list[int]] = defaultdict(list)
    for r in records:
        assert TOY.min_epochs <= r.epoch <= TOY.max_epochs, r
        assert r.seconds >= 0 and math.isfinite(r.loss), r
        check_config(r.config)
        by_trial[r.trial].append(r.epoch)
    finals = []
    for trial, epochs in by_trial.items():
        assert sorted(epochs) == list(range(1, len(epochs) + 1)), f"{name}: trial {trial} charged epochs {sorted(epochs)}"
        assert len({str(sorted(r.config.items(), key=str)) for r in records if r.trial == trial}) == 1
        finals.append(max(epochs))
    # The fidelities the peer chose are Hyperband's levels 1, 3, 9 (eta 3); only the trials still
    # running when the budget ran out (at most one per worker) may end elsewhere.
    off_level = [f for f in finals if f not in (1, 3, 9)]
    assert len(off_level) <= WORKERS, f"{name}: trials ended at epochs {sorted(finals)}"
    if name.startswith(("smac3", "dehb")):
        # A restart pays again from epoch 1 under a new key: the key says the fidelity the peer asked for.
        for trial, epochs in by_trial.items():
            asked = int(trial.rpartition("@")[2])
            assert asked in (1, 3, 9) and max(epochs) <= asked, (trial, epochs)
    print(f"{name}: {ledger.spent} epochs, {len(by_trial)} trials, final epochs {sorted(finals)}")


def check_config(config: Mapping[str, Any]) -> None:
    space = TOY.space
    assert set(config) == set(space)
    assert -5.0 <= config["x1"] <= 10.0
    assert config["x2"] * 2 == round(config["x2"] * 2) and 0.0 <= config["x2"] <= 15.0
    assert 1e-4 <= config["lr"] <= 1e-1
    assert config["units"] in (3, 7, 11, 15, 19) and type(config["units"]) is int
    assert 2 <= config["width"] <= 200 and type(config["width"]) is int
    assert any(config["mode"] is c for c in space["mode"]["choices"])


def test_choices_travel_as_themselves_or_as_tokens() -> None:
    assert peer_adapters.choice_tokens(["relu", "tanh"]) == ["relu", "tanh"]
    assert peer_adapters.choice_tokens([16, 32]) == [16, 32]
    assert peer_adapters.choice_tokens([0.5, 1.5]) == [0.5, 1.5]
    assert peer_adapters.choice_tokens([None, True, "fast"]) == ["c0", "c1", "c2"]
    assert peer_adapters.choice_tokens([False, True]) == ["c0", "c1"]  # bool("False") is True on a command line
    assert peer_adapters.choice_tokens(["a b", "c"]) == ["c0", "c1"]  # Syne Tune splits its command line on spaces
    assert peer_adapters.choice_tokens([1, 2.5]) == ["c0", "c1"]


def test_decode_gives_back_the_services_values() -> None:
    codec = peer_adapters.SpaceCodec(TOY.space)
    indexed = codec.decode({"x1": 1.5, "x2": 3, "lr": 0.01, "units": 2, "width": 17.0, "mode": "c1"}, indexed=True)
    assert indexed == {"x1": 1.5, "x2": 1.5, "lr": 0.01, "units": 11, "width": 17, "mode": True}
    valued = codec.decode({"x1": 1.5, "x2": 1.5, "lr": 0.01, "units": 11, "width": 17, "mode": "c0"}, indexed=False)
    assert valued["units"] == 11 and valued["x2"] == 1.5 and valued["mode"] is None
    assert peer_adapters.grid_size(3, 20, 4) == 4 and peer_adapters.grid_size(0.0, 15.0, 0.5) == 30
    with pytest.raises(ValueError, match="reserved"):
        peer_adapters.SpaceCodec({"peer_seed": {"type": "int", "low": 0, "high": 3}})


def test_the_translations_keep_log_scales_and_steps_or_need_their_package() -> None:
    if not INSTALLED["smac"] and importlib.util.find_spec("ConfigSpace") is None:
        with pytest.raises(ImportError):
            peer_adapters.to_configspace(TOY.space, 0)
    else:
        cs = peer_adapters.to_configspace(TOY.space, 0)
        assert cs["lr"].log and cs["width"].log and not cs["x1"].log
        assert (cs["x2"].lower, cs["x2"].upper) == (0, 30) and (cs["units"].lower, cs["units"].upper) == (0, 4)
        assert list(cs["mode"].choices) == ["c0", "c1", "c2"]
    if not INSTALLED["syne-tune"]:
        with pytest.raises(ImportError):
            peer_adapters.to_syne_tune(TOY.space)
    else:
        from syne_tune.config_space import is_log_space

        domains = peer_adapters.to_syne_tune(TOY.space)
        assert is_log_space(domains["lr"]) and is_log_space(domains["width"]) and not is_log_space(domains["x1"])
        assert sorted({domains["units"].sample() for _ in range(200)}) == [3, 7, 11, 15, 19]
        assert {domains["x2"].sample() * 2 % 1 for _ in range(50)} == {0.0}
        assert domains["mode"].categories == ["c0", "c1", "c2"]
