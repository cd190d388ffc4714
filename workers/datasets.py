"""Loading the data the built-in trainers train on: bundled scikit-learn sets, tables and image arrays.

The bundled sets are named here, and the split is made here; the files a job names are read by
:mod:`workers.data_files`, whose :class:`DataError`, task names and suffixes this module
re-exports (``workers.datasets.DataError`` is the name to catch). What must stay true: the cheap
checks (``check_*``) keep no data; a load is cached per process and file version, its arrays
read-only because every trial of the process shares them; the split depends only on
``val_fraction`` and ``split_seed``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from sklearn import datasets as sk_datasets
from sklearn.model_selection import train_test_split

from workers.data_files import (
    CACHE_SIZE,
    CLASSIFICATION,
    IMAGE_KEYS,
    IMAGE_SUFFIXES,
    MAX_INFERRED_CLASSES,
    REGRESSION,
    TABLE_SUFFIXES,
    TASKS,
    DataError,
    check_feature_columns,
    check_target,
    checked_images,
    checked_table,
    existing_path,
    file_stamp,
    infer_task,
    read_image_file,
    read_tabular_file,
    table_columns,
)

if TYPE_CHECKING:
    # Only for hints: importing workers.trainers here at run time would be circular.
    from workers.trainers.base import DataConfig

__all__ = [
    "BUNDLED",
    "CLASSIFICATION",
    "IMAGE_DATASETS",
    "IMAGE_KEYS",
    "IMAGE_SUFFIXES",
    "MAX_INFERRED_CLASSES",
    "REGRESSION",
    "TABLE_SUFFIXES",
    "TASKS",
    "BundledDataset",
    "DataError",
    "ImageData",
    "TabularData",
    "check_images",
    "check_tabular",
    "infer_task",
    "load_images",
    "load_tabular",
]


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
    columns = table_columns(path)
    target = check_target(data, columns)
    check_feature_columns(path, columns, target)
    inferred = checked_table(path, target, file_stamp(path))
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
    checked_images(path, file_stamp(path))
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
    return _load_tabular_cached(data, file_stamp(data.dataset))


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
    return _load_images_cached(data, file_stamp(data.dataset))


@functools.lru_cache(maxsize=CACHE_SIZE)
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
        features, labels, task, feature_names, class_names = read_tabular_file(_table_path(data), data, requested)

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


@functools.lru_cache(maxsize=CACHE_SIZE)
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
        images, labels, class_names = read_image_file(_image_path(data))

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


def _check_image_name(name: str) -> None:
    if name not in IMAGE_DATASETS:
        raise DataError(
            f"bundled dataset {name!r} is not an image dataset: use one of {', '.join(IMAGE_DATASETS)} "
            f"or a path to a {' or '.join(IMAGE_SUFFIXES)} file"
        )


def _table_path(data: DataConfig) -> str:
    return existing_path(data.dataset, TABLE_SUFFIXES, list(BUNDLED))


def _image_path(data: DataConfig) -> str:
    return existing_path(data.dataset, IMAGE_SUFFIXES, IMAGE_DATASETS)


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
