"""The peer benchmark's tasks (issue 19): synthetic multi-fidelity functions and small real trainings.

``TASKS`` maps a name to a :class:`peer_protocol.PeerTask`; ``get(name)`` looks one up. Every
task is minimised, its fidelity is epochs 1..``max_epochs`` and ``curve(config, seed)`` yields
the loss after each epoch:

- **synthetic**, with known optima and a *biased* cheap fidelity (``z = epoch / max_epochs``;
  the function at ``z < 1`` has its optimum elsewhere, as in the BOCA, BOHB and DEHB papers'
  benchmarks): the multi-fidelity Branin of Kandasamy et al. (BOCA, 2017: ``b``, ``c``, ``t``
  shifted by ``(1 - z)`` terms, as in their Dragonfly code), Hartmann-3 and Hartmann-6 with
  ``alpha - 0.1 (1 - z)`` (same paper), and counting ones (Falkner et al., BOHB, 2018: 8
  categorical bits counted exactly, 8 continuous ones estimated from 27 Bernoulli draws per
  epoch, so the cheap fidelity is noisy and the space mixed). ``exact(config)`` is the
  noise-free loss at ``max_epochs``; ``scale`` the median regret of 1,000 uniform random
  configurations (fixed draws), what a normalised regret of 1 means;
- **training**, on data that ships with scikit-learn, in torch on one CPU thread, one epoch per
  step: a small CNN on digits (``workers.models.build_cnn``), MLPs on breast-cancer
  (classification) and diabetes (regression, loss = validation MSE on the standardised target)
  (``workers.models.build_mlp``), with explicit L1/L2 penalties (``workers.regularization``),
  over the product's own ``cnn``/``mlp`` preset spaces (copied here: the tasks must not move
  when a preset does). Loss = validation cross-entropy (classification) or MSE, on a split
  fixed per task (``SPLIT_SEED``); a diverged training reports ``LOSS_CAP``.

``held_out=True`` marks the tasks the service's defaults are never tuned on (reported apart):
``mf_hartmann6`` and ``mlp_diabetes``.

What must stay true: the tasks were fixed before any tuning; changing a function, a space, a
split or an epoch count changes what every result means (the JSON records each task's
settings). The code here runs inside Ray's workers, which cannot import this folder by name:
the service's objectives are pickled by value with this module (``peer_methods``), so nothing
here may import ``_common`` or another benchmark module, and the data a training task caches is
left out of its pickle.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

SPLIT_SEED = 0  # every training task's train/validation split
SCALE_DRAWS = 1000  # uniform random configurations whose median regret is a synthetic task's scale
SCALE_SEED = 12345
LOSS_CAP = 100.0  # what a training reports once its loss is no longer finite (or larger)
SYNTHETIC_EPOCHS = 27  # 1, 3, 9, 27: Hyperband's brackets with eta 3
TRAINING_EPOCHS = 27


# ---------------------------------------------------------------- synthetic functions


def mf_branin(p: Mapping[str, Any], z: float) -> float:
    """Branin at fidelity ``z``: BOCA's shifts of b, c and t (Kandasamy et al. 2017, Dragonfly's values)."""
    x1, x2 = float(p["x1"]), float(p["x2"])
    b = 5.1 / (4 * math.pi**2) - 0.01 * (1 - z)
    c = 5 / math.pi - 0.1 * (1 - z)
    t = 1 / (8 * math.pi) + 0.005 * (1 - z)
    return (x2 - b * x1**2 + c * x1 - 6.0) ** 2 + 10.0 * (1 - t) * math.cos(x1) + 10.0


_H_ALPHA = (1.0, 1.2, 3.0, 3.2)
_H3_A = ((3.0, 10.0, 30.0), (0.1, 10.0, 35.0), (3.0, 10.0, 30.0), (0.1, 10.0, 35.0))
_H3_P = ((0.3689, 0.1170, 0.2673), (0.4699, 0.4387, 0.7470), (0.1091, 0.8732, 0.5547), (0.0381, 0.5743, 0.8828))
_H6_A = (
    (10.0, 3.0, 17.0, 3.5, 1.7, 8.0),
    (0.05, 10.0, 17.0, 0.1, 8.0, 14.0),
    (3.0, 3.5, 1.7, 10.0, 17.0, 8.0),
    (17.0, 8.0, 0.05, 10.0, 0.1, 14.0),
)
_H6_P = (
    (0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886),
    (0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991),
    (0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650),
    (0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381),
)


def _hartmann(x: list[float], z: float, a: tuple[tuple[float, ...], ...], p: tuple[tuple[float, ...], ...]) -> float:
    total = 0.0
    for alpha, row_a, row_p in zip(_H_ALPHA, a, p, strict=True):
        inner = sum(aj * (xj - pj) ** 2 for aj, xj, pj in zip(row_a, x, row_p, strict=True))
        total += (alpha - 0.1 * (1 - z)) * math.exp(-inner)
    return -total


def mf_hartmann3(p: Mapping[str, Any], z: float) -> float:
    return _hartmann([float(p[f"x{i}"]) for i in range(3)], z, _H3_A, _H3_P)


def mf_hartmann6(p: Mapping[str, Any], z: float) -> float:
    return _hartmann([float(p[f"x{i}"]) for i in range(6)], z, _H6_A, _H6_P)


ONES_BITS = 8  # categorical bits and continuous bits each
ONES_DRAWS_PER_EPOCH = 27  # 27..729 Bernoulli draws per continuous bit over 27 epochs (BOHB's 9..729)


def counting_ones_exact(p: Mapping[str, Any]) -> float:
    return -(sum(float(p[f"c{i}"]) for i in range(ONES_BITS)) + sum(float(p[f"x{i}"]) for i in range(ONES_BITS)))


@dataclass
class SyntheticTask:
    """A function of the config and the fidelity ``z``; ``noisy`` functions draw from ``random.Random(seed)``."""

    name: str
    space: dict[str, dict[str, Any]]
    optimum: float
    fn: Callable[[Mapping[str, Any], float], float] | None  # deterministic f(config, z); None: counting ones
    held_out: bool = False
    min_epochs: int = 1
    max_epochs: int = SYNTHETIC_EPOCHS
    kind: str = "synthetic"
    _scale: float | None = field(default=None, repr=False, compare=False)

    def curve(self, config: Mapping[str, Any], seed: int) -> Iterator[float]:
        if self.fn is not None:
            for epoch in range(1, self.max_epochs + 1):
                yield self.fn(config, epoch / self.max_epochs)
            return
        # Counting ones: the categorical bits exactly, each continuous bit as the running mean of its draws.
        rng = random.Random(seed)
        cats = sum(float(config[f"c{i}"]) for i in range(ONES_BITS))
        probs = [float(config[f"x{i}"]) for i in range(ONES_BITS)]
        hits = [0] * ONES_BITS
        for epoch in range(1, self.max_epochs + 1):
            for i, prob in enumerate(probs):
                hits[i] += sum(rng.random() < prob for _ in range(ONES_DRAWS_PER_EPOCH))
            yield -(cats + sum(hits) / (ONES_DRAWS_PER_EPOCH * epoch))

    def exact(self, config: Mapping[str, Any]) -> float:
        """The noise-free loss at ``max_epochs``: what a synthetic incumbent's regret is computed from."""
        return self.fn(config, 1.0) if self.fn is not None else counting_ones_exact(config)

    @property
    def scale(self) -> float:
        """Median regret of ``SCALE_DRAWS`` uniform random configurations (seeded): normalised regret 1."""
        if self._scale is None:
            rng = random.Random(SCALE_SEED)
            regrets = sorted(self.exact(sample_config(self.space, rng)) - self.optimum for _ in range(SCALE_DRAWS))
            self._scale = (regrets[SCALE_DRAWS // 2 - 1] + regrets[SCALE_DRAWS // 2]) / 2
        return self._scale

    def describe(self) -> dict[str, Any]:
        return _describe(self, {"optimum": self.optimum, "scale": self.scale})


def sample_config(space: Mapping[str, Mapping[str, Any]], rng: random.Random) -> dict[str, Any]:
    """One uniform draw from a space in the service's format (log-uniform where ``log``)."""
    out: dict[str, Any] = {}
    for name, p in space.items():
        if p["type"] == "categorical":
            out[name] = rng.choice(list(p["choices"]))
        elif p["type"] == "float":
            lo, hi = float(p["low"]), float(p["high"])
            out[name] = math.exp(rng.uniform(math.log(lo), math.log(hi))) if p.get("log") else rng.uniform(lo, hi)
        else:
            lo, hi = int(p["low"]), int(p["high"])
            if p.get("log"):  # log-uniform over [lo - 0.5, hi + 0.5], as Optuna's log IntDistribution
                value = math.exp(rng.uniform(math.log(lo - 0.5 if lo > 0.5 else lo), math.log(hi + 0.5)))
                out[name] = min(hi, max(lo, round(value)))
            else:
                out[name] = rng.randint(lo, hi)
    return out


def _unit(n: int) -> dict[str, dict[str, Any]]:
    return {f"x{i}": {"type": "float", "low": 0.0, "high": 1.0} for i in range(n)}


# ---------------------------------------------------------------- trainings

# The product's preset spaces (search_spaces/cnn.yaml, mlp.yaml) as they were when the tasks were fixed.
CNN_SPACE: dict[str, dict[str, Any]] = {
    "learning_rate": {"type": "float", "low": 3.0e-4, "high": 3.0e-2, "log": True},
    "batch_size": {"type": "categorical", "choices": [32, 64, 128]},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "l1": {"type": "float", "low": 1.0e-7, "high": 1.0e-3, "log": True},
    "l2": {"type": "float", "low": 1.0e-7, "high": 1.0e-3, "log": True},
    "filters": {"type": "categorical", "choices": [8, 16, 32]},
}
MLP_SPACE: dict[str, dict[str, Any]] = {
    "learning_rate": {"type": "float", "low": 1.0e-4, "high": 1.0e-1, "log": True},
    "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128]},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "l1": {"type": "float", "low": 1.0e-7, "high": 1.0e-2, "log": True},
    "l2": {"type": "float", "low": 1.0e-7, "high": 1.0e-2, "log": True},
    "hidden_size": {"type": "int", "low": 16, "high": 256, "log": True},
    "num_layers": {"type": "int", "low": 1, "high": 3},
}


@dataclass
class TrainingTask:
    """A torch model trained one epoch per step on a scikit-learn dataset, scored on a fixed validation split."""

    name: str
    dataset: str  # "digits", "breast_cancer" or "diabetes"
    model: str  # "cnn" or "mlp"
    val_fraction: float
    space: dict[str, dict[str, Any]]
    held_out: bool = False
    min_epochs: int = 1
    max_epochs: int = TRAINING_EPOCHS
    kind: str = "training"
    optimum: float | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": {}}  # the data is loaded where the task runs, not shipped

    @property
    def regression(self) -> bool:
        return self.dataset == "diabetes"

    def exact(self, config: Mapping[str, Any]) -> None:
        return None

    @property
    def scale(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return _describe(self, {"dataset": self.dataset, "model": self.model, "val_fraction": self.val_fraction})

    def data(self) -> dict[str, Any]:
        """Train and validation tensors and the train statistics, loaded once per process."""
        if "data" not in self._cache:
            self._cache["data"] = _load(self.dataset, self.val_fraction)
        return self._cache["data"]

    def curve(self, config: Mapping[str, Any], seed: int) -> Iterator[float]:
        import torch

        from workers.regularization import regularized_loss

        torch.set_num_threads(1)
        d = self.data()
        torch.manual_seed(seed)  # the initial weights (the global generator: see the module docstring)
        model = self._build(config, d)
        net = model[:-1] if self.regression else model  # regression trains on the standardised target
        params = [p for p in net.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=float(config["learning_rate"]))
        loss_fn = torch.nn.MSELoss() if self.regression else torch.nn.CrossEntropyLoss()
        gen = torch.Generator().manual_seed(seed)
        batch = int(config["batch_size"])
        l1, l2 = float(config["l1"]), float(config["l2"])
        n = len(d["x_train"])
        for _epoch in range(self.max_epochs):
            net.train()
            order = torch.randperm(n, generator=gen)
            for start in range(0, n, batch):
                idx = order[start : start + batch]
                optimizer.zero_grad()
                loss = regularized_loss(loss_fn(net(d["x_train"][idx]), d["y_train"][idx]), net, l1=l1, l2=l2)
                loss.backward()
                optimizer.step()
            net.eval()
            with torch.no_grad():
                value = float(loss_fn(net(d["x_val"]), d["y_val"]))
            yield value if math.isfinite(value) and value < LOSS_CAP else LOSS_CAP

    def _build(self, config: Mapping[str, Any], d: dict[str, Any]) -> Any:
        from workers.models import build_cnn, build_mlp

        if self.model == "cnn":
            return build_cnn(
                1,
                8,
                8,
                10,
                filters=int(config["filters"]),
                dropout=float(config["dropout"]),
                pixel_mean=d["mean"],
                pixel_std=d["std"],
            )
        return build_mlp(
            d["x_train"].shape[1],
            1 if self.regression else d["n_classes"],
            hidden_size=int(config["hidden_size"]),
            num_layers=int(config["num_layers"]),
            dropout=float(config["dropout"]),
            feature_mean=d["mean"],
            feature_std=d["std"],
            # the last (frozen) layer maps back to target units; ``curve`` trains and scores without it
            **({"target_mean": 0.0, "target_std": 1.0} if self.regression else {}),
        )


def _load(dataset: str, val_fraction: float) -> dict[str, Any]:
    import numpy as np
    import torch
    from sklearn import datasets

    from workers.models import column_stats

    loader = {"digits": datasets.load_digits, "breast_cancer": datasets.load_breast_cancer, "diabetes": datasets.load_diabetes}
    x, y = loader[dataset](return_X_y=True)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    n_val = round(len(x) * val_fraction)
    val, train = order[:n_val], order[n_val:]
    x = x.astype(np.float32)
    if dataset == "digits":
        x = x.reshape(-1, 1, 8, 8)
        mean, std = column_stats(x[train], axis=(0, 2, 3))
    else:
        mean, std = column_stats(x[train])
    out: dict[str, Any] = {"x_train": torch.from_numpy(x[train]), "x_val": torch.from_numpy(x[val]), "mean": mean, "std": std}
    if dataset == "diabetes":  # the target standardised by the train rows: the loss is MSE in units of its spread
        y = y.astype(np.float32)
        mu, sd = float(y[train].mean()), float(y[train].std())
        out["y_train"] = torch.from_numpy((y[train] - mu) / sd).reshape(-1, 1)
        out["y_val"] = torch.from_numpy((y[val] - mu) / sd).reshape(-1, 1)
    else:
        out["y_train"] = torch.from_numpy(y[train].astype(np.int64))
        out["y_val"] = torch.from_numpy(y[val].astype(np.int64))
        out["n_classes"] = int(y.max()) + 1
    return out


def _describe(task: Any, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": task.kind,
        "held_out": task.held_out,
        "min_epochs": task.min_epochs,
        "max_epochs": task.max_epochs,
        "space": task.space,
        **extra,
    }


PeerTaskType = SyntheticTask | TrainingTask

TASKS: dict[str, PeerTaskType] = {
    task.name: task
    for task in (
        SyntheticTask(
            "mf_branin",
            {"x1": {"type": "float", "low": -5.0, "high": 10.0}, "x2": {"type": "float", "low": 0.0, "high": 15.0}},
            optimum=0.397887357729738,
            fn=mf_branin,
        ),
        SyntheticTask("mf_hartmann3", _unit(3), optimum=-3.86278, fn=mf_hartmann3),
        SyntheticTask("mf_hartmann6", _unit(6), optimum=-3.32237, fn=mf_hartmann6, held_out=True),
        SyntheticTask(
            "counting_ones",
            {**{f"c{i}": {"type": "categorical", "choices": [0, 1]} for i in range(ONES_BITS)}, **_unit(ONES_BITS)},
            optimum=-2.0 * ONES_BITS,
            fn=None,
        ),
        TrainingTask("cnn_digits", "digits", "cnn", val_fraction=0.5, space=CNN_SPACE),
        TrainingTask("mlp_breast_cancer", "breast_cancer", "mlp", val_fraction=0.4, space=MLP_SPACE),
        TrainingTask("mlp_diabetes", "diabetes", "mlp", val_fraction=0.4, space=MLP_SPACE, held_out=True),
    )
}


def get(name: str) -> PeerTaskType:
    """The task called ``name``; a ``KeyError`` naming the known ones otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown peer task {name!r} (known: {', '.join(TASKS)})") from None
