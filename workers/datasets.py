"""Loading the data the built-in trainers train on: bundled scikit-learn sets, tables and image arrays."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd
from sklearn import datasets as sk_datasets
from sklearn.model_selection import train_test_split

if TYPE_CHECKING:
    # Only for hints: importing workers.trainers here at run time would be circular.
    from workers.trainers.base import DataConfig

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)

TABLE_SUFFIXES = (".csv", ".parquet")
IMAGE_SUFFIXES = (".npz",)
IMAGE_KEYS = ("images", "labels")

# A numeric target with at most this many distinct integer values is taken for class labels.
MAX_INFERRED_CLASSES = 20

# The trainers compute in float32: a larger magnitude becomes infinity there, like an ``inf`` in the file.
_FLOAT32_MAX = float(np.finfo(np.float32).max)

# Loads kept per process: Ray runs many trials of a job in one worker process.
_CACHE_SIZE = 8


class DataError(ValueError):
    """The data named by a job spec cannot be used; the message says which and what to do."""


class BundledDataset(NamedTuple):
    """A dataset shipped inside scikit-learn (no download)."""

    loader: Callable[..., Any]
    task: str
    images: bool = False


BUNDLED: dict[str, BundledDataset] = {
    "iris": BundledDataset(sk_datasets.load_iris, CLASSIFICATION),
    "wine": BundledDataset(sk_datasets.load_wine, CLASSIFICATION),
    "breast_cancer": BundledDataset(sk_datasets.load_breast_cancer, CLASSIFICATION),
    "digits": BundledDataset(sk_datasets.load_digits, CLASSIFICATION, images=True),
    "diabetes": BundledDataset(sk_datasets.load_diabetes, REGRESSION),
}

IMAGE_DATASETS = tuple(name for name, entry in BUNDLED.items() if entry.images)


@dataclass(frozen=True)
class TabularData:
    """A table split into training and validation rows.

    Features are float32; labels are int64 class indices for classification and float32
    for regression. ``n_classes`` is 0 for regression and ``class_names`` then empty.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    task: str
    n_features: int
    n_classes: int
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]


@dataclass(frozen=True)
class ImageData:
    """Images shaped (N, C, H, W), float32, split into training and validation; int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    n_classes: int
    channels: int
    height: int
    width: int
    class_names: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# Cheap checks, for validating a job spec before anything runs
# ---------------------------------------------------------------------------------------------


def check_tabular(data: DataConfig) -> str:
    """Check that ``data`` names a usable table; return its task.

    Reads a file's header (or Parquet schema) first, then the whole table once (remembered per
    file version): a value the trainers cannot train on must be refused before any trial runs,
    since a trial would otherwise turn it into NaN losses and a meaningless result.

    Raises:
        DataError: unknown name, missing file, unsupported suffix, missing target column, no
            feature column, infinite values, or a task that does not fit the data.
    """
    _check_split(data)
    requested = _requested_task(data)
    if data.dataset in BUNDLED:
        return _bundled_task(data.dataset, requested)
    path = _table_path(data)
    columns = _table_columns(path)
    target = _check_target(data, columns)
    _check_feature_columns(path, columns, target)
    inferred = _checked_table(path, target, _file_stamp(path))
    return requested or inferred


def check_images(data: DataConfig) -> str:
    """Check that ``data`` names a usable image set without loading the arrays; return its task.

    Reads the ``images`` array once (remembered per file version) to refuse infinite pixels.

    Raises:
        DataError: unknown name, missing file, unsupported suffix, missing ``images``/``labels``
            key, infinite pixel values, or a task other than classification.
    """
    _check_split(data)
    _image_task(data)
    if data.dataset in BUNDLED:
        _check_image_name(data.dataset)
        return CLASSIFICATION
    path = _image_path(data)
    _checked_images(path, _file_stamp(path))
    return CLASSIFICATION


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def load_tabular(data: DataConfig) -> TabularData:
    """Load a bundled dataset or a ``.csv``/``.parquet`` table and split it.

    Non-numeric feature columns are one-hot encoded; rows with a missing value are dropped.
    String class labels become indices into ``class_names`` (sorted). The split is stratified
    for classification and depends only on ``data.val_fraction`` and ``data.split_seed``.
    Results are cached per process; the arrays are read-only because they are shared.

    Raises:
        DataError: see :func:`check_tabular`; also an empty table after dropping missing
            values, or too few rows of a class to split.
    """
    return _load_tabular_cached(data, _file_stamp(data.dataset))


def load_images(data: DataConfig) -> ImageData:
    """Load ``digits`` (as 1x8x8 images) or an ``.npz`` with ``images`` and ``labels``, and split it.

    Layout of ``images`` in an ``.npz``:

    * ``(N, H, W)``: one channel.
    * ``(N, C, H, W)`` when dimension 1 is 1 or 3 (channels first; checked first, so an
      ``(N, 3, H, 3)`` array is read as channels first).
    * ``(N, H, W, C)`` when dimension 3 is 1 or 3 (channels last).

    Pixel values are kept as they are (the model standardises them); labels may be integers
    or strings and become indices into ``class_names`` (sorted).

    Raises:
        DataError: see :func:`check_images`; also an unsupported array shape or label count.
    """
    return _load_images_cached(data, _file_stamp(data.dataset))


def infer_task(target: pd.Series) -> str:
    """Classification for non-numeric targets or few distinct integer values, else regression.

    An integer column with more than ``MAX_INFERRED_CLASSES`` distinct values is taken for a
    regression target (counts, prices in cents...), not for hundreds of classes.
    """
    if not pd.api.types.is_numeric_dtype(target) or pd.api.types.is_bool_dtype(target):
        return CLASSIFICATION
    values = target.to_numpy(dtype=np.float64)
    integral = bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))
    if integral and target.nunique() <= MAX_INFERRED_CLASSES:
        return CLASSIFICATION
    return REGRESSION


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _load_tabular_cached(data: DataConfig, stamp: tuple[int, int] | None) -> TabularData:
    # ``stamp`` is only part of the cache key: a rewritten file is loaded again.
    _check_split(data)
    requested = _requested_task(data)
    if data.dataset in BUNDLED:
        task = _bundled_task(data.dataset, requested)
        bunch = BUNDLED[data.dataset].loader()
        features = np.asarray(bunch.data, dtype=np.float32)
        feature_names = tuple(str(name) for name in getattr(bunch, "feature_names", ())) or tuple(
            f"x{i}" for i in range(features.shape[1])
        )
        if task == CLASSIFICATION:
            labels = np.asarray(bunch.target, dtype=np.int64)
            class_names = tuple(str(name) for name in bunch.target_names)
        else:
            labels = np.asarray(bunch.target, dtype=np.float32)
            class_names = ()
    else:
        features, labels, task, feature_names, class_names = _read_tabular_file(data, requested)

    x_train, x_val, y_train, y_val = _split(data, features, labels, stratify=task == CLASSIFICATION)
    return TabularData(
        x_train=_frozen(x_train),
        y_train=_frozen(y_train),
        x_val=_frozen(x_val),
        y_val=_frozen(y_val),
        task=task,
        n_features=features.shape[1],
        n_classes=len(class_names),
        feature_names=feature_names,
        class_names=class_names,
    )


def _read_tabular_file(
    data: DataConfig, requested: str | None
) -> tuple[np.ndarray, np.ndarray, str, tuple[str, ...], tuple[str, ...]]:
    path = _table_path(data)
    frame = _read_table(path)
    frame.columns = [str(column) for column in frame.columns]
    target = _check_target(data, list(frame.columns))
    _check_feature_columns(path, list(frame.columns), target)
    _check_finite_table(path, frame)
    frame = frame.dropna()
    if frame.empty:
        raise DataError(f"{path}: no row is left after dropping rows with missing values; fill or drop them first")

    features_frame = pd.get_dummies(frame.drop(columns=[target]), dtype=np.float32)
    try:
        features = features_frame.to_numpy(dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise DataError(f"{path}: a feature column could not be read as numbers ({error})") from None
    feature_names = tuple(str(column) for column in features_frame.columns)

    task = requested or infer_task(frame[target])
    if task == CLASSIFICATION:
        labels, class_names = _encode_labels(frame[target].to_numpy())
    else:
        if not pd.api.types.is_numeric_dtype(frame[target]):
            raise DataError(
                f"{path}: target column {target!r} is not numeric, so it cannot be a regression target; "
                "set task to classification or pick another column"
            )
        labels, class_names = frame[target].to_numpy(dtype=np.float32), ()
    return features, labels, task, feature_names, class_names


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _load_images_cached(data: DataConfig, stamp: tuple[int, int] | None) -> ImageData:
    _check_split(data)
    _image_task(data)
    if data.dataset in BUNDLED:
        _check_image_name(data.dataset)
        bunch = BUNDLED[data.dataset].loader()
        images = np.asarray(bunch.images, dtype=np.float32)[:, None, :, :]
        labels = np.asarray(bunch.target, dtype=np.int64)
        class_names = tuple(str(name) for name in bunch.target_names)
    else:
        path = _image_path(data)
        with _open_npz(path) as archive:
            _check_image_keys(path, archive.files)
            raw_images, raw_labels = archive["images"], archive["labels"]
        _check_finite_images(path, raw_images)  # before float32, which turns 1e39 into inf
        images = _channels_first(path, raw_images)
        raw_labels = np.asarray(raw_labels).reshape(-1)
        if raw_labels.shape[0] != images.shape[0]:
            raise DataError(
                f"{path}: 'images' holds {images.shape[0]} images but 'labels' holds {raw_labels.shape[0]} labels; "
                "give one label per image"
            )
        labels, class_names = _encode_labels(raw_labels)

    x_train, x_val, y_train, y_val = _split(data, images, labels, stratify=True)
    _, channels, height, width = images.shape
    return ImageData(
        x_train=_frozen(x_train),
        y_train=_frozen(y_train),
        x_val=_frozen(x_val),
        y_val=_frozen(y_val),
        n_classes=len(class_names),
        channels=channels,
        height=height,
        width=width,
        class_names=class_names,
    )


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _check_split(data: DataConfig) -> None:
    if not 0.0 < data.val_fraction < 1.0:
        raise DataError(f"val_fraction must be between 0 and 1 (exclusive), got {data.val_fraction}")


def _requested_task(data: DataConfig) -> str | None:
    if data.task is not None and data.task not in TASKS:
        raise DataError(f"unknown task {data.task!r} for dataset {data.dataset!r}; use one of {', '.join(TASKS)}")
    return data.task


def _bundled_task(name: str, requested: str | None) -> str:
    task = BUNDLED[name].task
    if requested is not None and requested != task:
        raise DataError(f"bundled dataset {name!r} is a {task} dataset; set task to {task} or leave it out")
    return task


def _image_task(data: DataConfig) -> None:
    if _requested_task(data) not in (None, CLASSIFICATION):
        raise DataError(f"image dataset {data.dataset!r}: only classification is supported, got task {data.task!r}")


def _unknown_dataset(name: str, known: tuple[str, ...] | list[str], suffixes: tuple[str, ...]) -> DataError:
    return DataError(
        f"unknown dataset {name!r}: use a bundled dataset ({', '.join(known)}) or a path to a {' or '.join(suffixes)} file"
    )


def _check_image_name(name: str) -> None:
    if name not in IMAGE_DATASETS:
        raise DataError(
            f"bundled dataset {name!r} is not an image dataset: use one of {', '.join(IMAGE_DATASETS)} "
            f"or a path to a {' or '.join(IMAGE_SUFFIXES)} file"
        )


def _existing_path(name: str, suffixes: tuple[str, ...], known: tuple[str, ...] | list[str]) -> str:
    if not name.lower().endswith(suffixes):
        raise _unknown_dataset(name, known, suffixes)
    if not os.path.isfile(name):
        raise DataError(f"dataset file {name!r} does not exist (looked from {os.getcwd()!r}); check the path")
    return name


def _table_path(data: DataConfig) -> str:
    return _existing_path(data.dataset, TABLE_SUFFIXES, list(BUNDLED))


def _image_path(data: DataConfig) -> str:
    return _existing_path(data.dataset, IMAGE_SUFFIXES, IMAGE_DATASETS)


def _file_stamp(name: str) -> tuple[int, int] | None:
    try:
        status = os.stat(name)
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size


def _read_table(path: str, columns: list[str] | None = None) -> pd.DataFrame:
    try:
        if path.lower().endswith(".parquet"):
            return pd.read_parquet(path, columns=columns)
        return pd.read_csv(path, usecols=columns)
    except (OSError, ValueError, ImportError) as error:
        raise DataError(f"could not read table {path!r}: {error}") from None


def _table_columns(path: str) -> list[str]:
    try:
        if path.lower().endswith(".parquet"):
            import pyarrow.parquet as pq

            return [str(name) for name in pq.read_schema(path).names]
        return [str(name) for name in pd.read_csv(path, nrows=0).columns]
    except (OSError, ValueError, ImportError) as error:
        raise DataError(f"could not read the header of table {path!r}: {error}") from None


def _check_target(data: DataConfig, columns: list[str]) -> str:
    if not data.target:
        raise DataError(f"table {data.dataset!r} needs a target column: set trainer.target to one of {', '.join(columns)}")
    if data.target not in columns:
        raise DataError(f"table {data.dataset!r} has no target column {data.target!r}; available columns: {', '.join(columns)}")
    return data.target


def _check_feature_columns(path: str, columns: list[str], target: str) -> None:
    if all(column == target for column in columns):
        raise DataError(
            f"{path}: no feature column besides the target column {target!r}; "
            "add the columns to predict it from, or pick another target"
        )


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _checked_table(path: str, target: str, stamp: tuple[int, int] | None) -> str:
    """Read the whole table once per file version, refuse infinite values; return the inferred task.

    Only the task is remembered, not the table: the driver keeps no data in memory.
    """
    frame = _read_table(path)
    frame.columns = [str(column) for column in frame.columns]
    _check_finite_table(path, frame)
    return infer_task(frame[target].dropna())


def _check_finite_table(path: str, frame: pd.DataFrame) -> None:
    """Refuse infinite numbers (and those float32 cannot hold) in any numeric column, target included.

    Missing values are left to the loader, which drops their rows; an infinite one would be
    kept and turn every loss into NaN.
    """
    numeric = frame.select_dtypes(include=["number", "bool"])
    if numeric.shape[1] == 0:
        return
    bad = _beyond_float32(numeric.to_numpy(dtype=np.float64, na_value=np.nan))
    if not bad.any():
        return
    per_column = bad.sum(axis=0)
    counts = ", ".join(f"column {column!r}: {int(n)}" for column, n in zip(numeric.columns, per_column, strict=True) if n)
    rows = np.flatnonzero(bad.any(axis=1))
    raise DataError(
        f"{path}: {_count(len(rows), 'row')} hold{'s' if len(rows) == 1 else ''} infinite values or numbers beyond "
        f"float32's ±3.4e38 ({counts}; first at data row {int(rows[0]) + 1}); "
        "replace them with finite numbers or drop those rows"
    )


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _checked_images(path: str, stamp: tuple[int, int] | None) -> None:
    with _open_npz(path) as archive:
        _check_image_keys(path, archive.files)
        images = archive["images"]
    if images.dtype.kind in "fc":
        _check_finite_images(path, images)


def _check_finite_images(path: str, images: np.ndarray) -> None:
    """Refuse NaN, infinite or beyond-float32 pixels: images have no missing-value rule, every pixel is used."""
    if images.dtype.kind not in "fc" or images.ndim == 0 or images.size == 0:
        return  # integers and booleans are always finite; a wrong shape is _channels_first's to name
    values = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    bad = _beyond_float32(values) | np.isnan(values)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise DataError(
            f"{path}: {_count(len(rows), 'image')} in 'images' hold{'s' if len(rows) == 1 else ''} NaN, infinite "
            f"or beyond-float32 pixels (first: image {int(rows[0])}); replace those pixels or drop those images"
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _beyond_float32(values: np.ndarray) -> np.ndarray:
    """Where ``values`` are infinite or too large for the float32 the trainers compute in (NaN is not)."""
    with np.errstate(invalid="ignore"):
        return np.abs(values) > _FLOAT32_MAX


def _open_npz(path: str) -> Any:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"could not read {path!r} as an .npz archive: {error}") from None


def _check_image_keys(path: str, files: list[str]) -> None:
    missing = [key for key in IMAGE_KEYS if key not in files]
    if missing:
        raise DataError(
            f"{path}: missing array {', '.join(repr(key) for key in missing)}; "
            f"the archive holds {', '.join(files) or 'nothing'}; save it with np.savez(path, images=..., labels=...)"
        )


def _channels_first(path: str, images: np.ndarray) -> np.ndarray:
    if images.ndim == 3:
        images = images[:, None, :, :]
    elif images.ndim == 4 and images.shape[1] in (1, 3):
        pass
    elif images.ndim == 4 and images.shape[3] in (1, 3):
        images = images.transpose(0, 3, 1, 2)
    else:
        raise DataError(f"{path}: 'images' has shape {images.shape}; use (N, H, W), (N, C, H, W) or (N, H, W, C) with C 1 or 3")
    try:
        return np.ascontiguousarray(images, dtype=np.float32)
    except (TypeError, ValueError):
        raise DataError(f"{path}: 'images' must hold numbers, got dtype {images.dtype}") from None


def _encode_labels(values: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class labels as indices into the sorted distinct values, and those values as names."""
    if values.dtype.kind == "f" and np.all(values == np.round(values)):
        values = values.astype(np.int64)  # 1.0 and 2.0 are named "1" and "2"
    classes, indices = np.unique(values.astype(str) if values.dtype.kind == "O" else values, return_inverse=True)
    return indices.astype(np.int64).reshape(-1), tuple(str(name) for name in classes)


def _split(
    data: DataConfig, features: np.ndarray, labels: np.ndarray, *, stratify: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    try:
        return train_test_split(
            features,
            labels,
            test_size=data.val_fraction,
            random_state=data.split_seed,
            stratify=labels if stratify else None,
        )
    except ValueError as error:
        raise DataError(
            f"dataset {data.dataset!r} cannot be split with val_fraction={data.val_fraction}: {error}; "
            "use more rows per class or another val_fraction"
        ) from None


def _frozen(array: np.ndarray) -> np.ndarray:
    # Cached arrays are shared by every trial in the process: a trial must not change them.
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array
