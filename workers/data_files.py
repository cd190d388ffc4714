"""Reading the data files a job may name: tables (``.csv``/``.parquet``) and image archives (``.npz``).

Each reader refuses what the trainers cannot train on, naming the file, the column or the array:
a missing target or feature column, infinite values (or numbers beyond float32), an array of the
wrong shape, a label count that does not match. What must stay true: every refusal is a
:class:`DataError` whose message says what to do; a whole file is read at most once per version
(modification time and size) for the driver's checks, which keep the answer, never the data;
nothing here knows the bundled datasets (:mod:`workers.datasets` does) or imports torch.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    # Only for hints, as in workers.datasets: nothing here needs the trainers at run time.
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
CACHE_SIZE = 8


class DataError(ValueError):
    """The data named by a job spec cannot be used; the message says which and what to do."""


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


def read_tabular_file(
    path: str, data: DataConfig, requested: str | None
) -> tuple[np.ndarray, np.ndarray, str, tuple[str, ...], tuple[str, ...]]:
    """The table at ``path`` as float32 features, labels, the task, the feature names and the class names.

    Non-numeric feature columns are one-hot encoded; rows with a missing value are dropped; the
    task is ``requested`` (the spec's), else inferred from the target column.

    Raises:
        DataError: an unreadable table, a missing target or feature column, infinite values, no row
            left, a feature column that is not numbers, or a non-numeric regression target.
    """
    frame = _read_table(path)
    frame.columns = [str(column) for column in frame.columns]
    target = check_target(data, list(frame.columns))
    check_feature_columns(path, list(frame.columns), target)
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


def read_image_file(path: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """The images of an ``.npz`` archive as float32 (N, C, H, W), their labels as class indices, and the class names.

    Raises:
        DataError: an unreadable archive, a missing ``images``/``labels`` array, NaN or infinite
            pixels, an unsupported shape, or not one label per image.
    """
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
    return images, labels, class_names


def _unknown_dataset(name: str, known: tuple[str, ...] | list[str], suffixes: tuple[str, ...]) -> DataError:
    return DataError(
        f"unknown dataset {name!r}: use a bundled dataset ({', '.join(known)}) or a path to a {' or '.join(suffixes)} file"
    )


def existing_path(name: str, suffixes: tuple[str, ...], known: tuple[str, ...] | list[str]) -> str:
    """``name`` if it is a file with one of ``suffixes``; else a DataError listing the ``known`` bundled names."""
    if not name.lower().endswith(suffixes):
        raise _unknown_dataset(name, known, suffixes)
    if not os.path.isfile(name):
        raise DataError(f"dataset file {name!r} does not exist (looked from {os.getcwd()!r}); check the path")
    return name


def file_stamp(name: str) -> tuple[int, int] | None:
    """The file's version (modification time in ns, size) for a cache key; ``None`` when it is not a file."""
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


def table_columns(path: str) -> list[str]:
    """The column names of a table, read from its header (CSV) or schema (Parquet) alone."""
    try:
        if path.lower().endswith(".parquet"):
            import pyarrow.parquet as pq

            return [str(name) for name in pq.read_schema(path).names]
        return [str(name) for name in pd.read_csv(path, nrows=0).columns]
    except (OSError, ValueError, ImportError) as error:
        raise DataError(f"could not read the header of table {path!r}: {error}") from None


def check_target(data: DataConfig, columns: list[str]) -> str:
    """The target column ``data`` names, refused when it is not given or not among ``columns``."""
    if not data.target:
        raise DataError(f"table {data.dataset!r} needs a target column: set trainer.target to one of {', '.join(columns)}")
    if data.target not in columns:
        raise DataError(f"table {data.dataset!r} has no target column {data.target!r}; available columns: {', '.join(columns)}")
    return data.target


def check_feature_columns(path: str, columns: list[str], target: str) -> None:
    """Refuse a table with no column besides its target."""
    if all(column == target for column in columns):
        raise DataError(
            f"{path}: no feature column besides the target column {target!r}; "
            "add the columns to predict it from, or pick another target"
        )


@functools.lru_cache(maxsize=CACHE_SIZE)
def checked_table(path: str, target: str, stamp: tuple[int, int] | None) -> str:
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


@functools.lru_cache(maxsize=CACHE_SIZE)
def checked_images(path: str, stamp: tuple[int, int] | None) -> None:
    """Check an archive's arrays once per file version and refuse non-finite pixels; nothing is kept."""
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
