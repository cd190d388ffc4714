"""The ``python_function`` side of a model automl registers: rows of named features in, class
labels (or probabilities) or values out, around the torch module of the same model.

MLflow imports this file from the model itself: :mod:`automl.tracking.servable` copies it into
every such model as ``code/automl_pyfunc.py`` and names it the ``loader_module`` of the model's
``python_function`` flavour, so ``mlflow.pyfunc.load_model`` and ``mlflow models serve`` find it
wherever the model goes (MLflow puts ``code/`` on ``sys.path``). What must stay true: it imports
only numpy, pandas, torch and mlflow, never automl (a serving host need not have automl); all
it knows of the model comes from the model's own ``MLmodel`` metadata (``task``,
``feature_names``, ``class_names``, ``input_shape``), so a copy of this file loads the models
that older copies were shipped with.

Rows come named or in order. MLflow checks a request against the signature before this loader
sees it, and a signature of named columns refuses rows without names (a list of lists, a 2-D
array: MLflow makes them a DataFrame with columns 0, 1, ... and reports the named ones missing).
So a table model's signature is its features' types in order, unnamed, and the names are matched
here: columns named after the features are picked by name in any order, rows without names are
taken in the training order. A model logged with named columns (before) still loads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# The one inference parameter (the signature's params): what ``predict`` returns for a classifier.
PREDICT_METHOD = "predict_method"
PREDICT = "predict"  # the class label of each row
PREDICT_PROBA = "predict_proba"  # one column per class, named after it: the probability of that class
PREDICT_METHODS = (PREDICT, PREDICT_PROBA)
CLASSIFICATION = "classification"
REGRESSION = "regression"
# Rows per forward pass: a large request is scored in chunks.
BATCH_ROWS = 4096


def _load_pyfunc(path: str, model_config: Mapping[str, Any] | None = None) -> TorchModel:
    """Called by ``mlflow.pyfunc.load_model`` with the model's local folder (its flavour names no data path)."""
    import mlflow.pytorch
    from mlflow.models import Model

    metadata = Model.load(path).metadata or {}
    module = mlflow.pytorch.load_model(path, map_location="cpu")
    return TorchModel(module, metadata)


class TorchModel:
    """A trained torch module with what it needs to read a request: its task, feature order and labels.

    Args:
        module: the torch module (standardisation inside it: it takes raw features).
        metadata: the model's metadata, as the trainer saved it with the model.
    """

    def __init__(self, module: Any, metadata: Mapping[str, Any]) -> None:
        self.module = module.eval()
        self.task = metadata.get("task")
        self.feature_names: list[str] = [str(name) for name in metadata.get("feature_names") or []]
        self.class_names: list[str] = [str(name) for name in metadata.get("class_names") or []]
        shape = metadata.get("input_shape") or ([len(self.feature_names)] if self.feature_names else [])
        self.input_shape: list[int] = [int(n) for n in shape]

    def get_raw_model(self) -> Any:
        """The torch module itself (``PyFuncModel.get_raw_model()``), as ``mlflow.pytorch.load_model`` gives it."""
        return self.module

    def predict(self, data: Any, params: Mapping[str, Any] | None = None) -> Any:
        """Predictions for the rows of ``data``.

        A classifier returns the class label of each row (an array of strings), or with
        ``params={"predict_method": "predict_proba"}`` a DataFrame with one column per class
        (named after it) holding its probability; a regressor returns the predicted values.

        Raises:
            ValueError: ``predict_method`` is neither ``predict`` nor ``predict_proba``, or the
                rows do not have the model's features.
        """
        method = str((params or {}).get(PREDICT_METHOD) or PREDICT)
        if method not in PREDICT_METHODS:
            raise ValueError(f"{PREDICT_METHOD} must be one of {', '.join(PREDICT_METHODS)}, got {method!r}")
        if method == PREDICT_PROBA:
            return self.predict_proba(data)
        outputs = self._forward(data)
        if self.task == CLASSIFICATION:
            labels = np.asarray(self.class_names or [str(i) for i in range(outputs.shape[1])], dtype=object)
            return labels[outputs.argmax(axis=1)]
        if self.task == REGRESSION:
            return outputs.reshape(len(outputs), -1)[:, 0].astype(np.float64) if len(outputs) else np.zeros(0)
        return outputs

    def predict_proba(self, data: Any) -> Any:
        """The probability of each class for each row: a DataFrame with one column per class, named after it.

        Raises:
            ValueError: the model is not a classifier.
        """
        import pandas as pd
        import torch

        if self.task != CLASSIFICATION:
            raise ValueError(f"{PREDICT_PROBA} is for classifiers; this model's task is {self.task!r}")
        outputs = self._forward(data)
        probabilities = torch.softmax(torch.from_numpy(outputs).double(), dim=1).numpy()
        columns = self.class_names or [str(i) for i in range(probabilities.shape[1])]
        return pd.DataFrame(probabilities, columns=columns)

    def _forward(self, data: Any) -> np.ndarray:
        import torch

        rows = self._rows(data)
        with torch.no_grad():
            chunks = [self.module(torch.from_numpy(rows[i : i + BATCH_ROWS])) for i in range(0, len(rows), BATCH_ROWS)]
        if not chunks:
            return np.zeros((0, max(1, len(self.class_names))), dtype=np.float32)
        return torch.cat(chunks).cpu().numpy()

    def _rows(self, data: Any) -> np.ndarray:
        """``data`` as a float32 array of shape ``(rows, *input_shape)``: columns picked by name, else by position."""
        import pandas as pd

        if isinstance(data, Mapping):
            data = pd.DataFrame(dict(data))
        if isinstance(data, pd.DataFrame):
            data = self._features_of(data)
        if hasattr(data, "detach"):  # a torch tensor
            data = data.detach().cpu().numpy()
        try:
            rows = np.asarray(data, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the rows must hold numbers only: {exc}") from exc
        if self.feature_names:
            width = len(self.feature_names)
            if rows.ndim == 1 and rows.size in (0, width):  # one row, or none
                rows = rows.reshape(-1, width)
            if rows.ndim != 2 or rows.shape[1] != width:
                raise ValueError(
                    f"each row must have the model's {width} features in this order: {', '.join(self.feature_names)}; "
                    f"got an array of shape {rows.shape}"
                )
        elif self.input_shape:
            per_row = int(np.prod(self.input_shape))
            if rows.size % per_row:
                raise ValueError(f"each row must have {per_row} values ({self.input_shape}), got an array of shape {rows.shape}")
            rows = rows.reshape(-1, *self.input_shape)
        return np.ascontiguousarray(rows)

    def _features_of(self, frame: Any) -> Any:
        """The model's feature columns of ``frame``, by name; ``frame`` itself when its columns are positions.

        Raises:
            ValueError: ``frame``'s columns are named, and not all of them are the model's features.
        """
        if not self.feature_names:
            return frame
        missing = [name for name in self.feature_names if name not in frame.columns]
        if not missing:
            return frame[self.feature_names]
        if _unnamed(frame.columns):
            return frame
        raise ValueError(
            f"the rows lack the model's features {missing} (it takes {self.feature_names}, by name or in this order). "
            f"Through mlflow.pyfunc a model is given the first {len(self.feature_names)} columns only "
            "(its signature's columns are in order): put the features first, or select them"
        )


def _unnamed(columns: Sequence[Any]) -> bool:
    """Whether DataFrame columns are positions (0, 1, ...), as when a list of lists becomes a DataFrame."""
    return all(isinstance(c, (int, np.integer)) for c in columns)
