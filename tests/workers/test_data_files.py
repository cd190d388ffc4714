"""Unit tests of workers.data_files: reading image archives and tables, and the checks remembered per file version."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workers.data_files import (
    MAX_INFERRED_CLASSES,
    DataError,
    checked_table,
    file_stamp,
    infer_task,
    read_image_file,
)


def test_an_archive_needs_one_label_per_image(tmp_path) -> None:
    path = tmp_path / "images.npz"
    np.savez(path, images=np.zeros((6, 4, 4), dtype=np.float32), labels=np.arange(5))
    with pytest.raises(DataError, match="6 images but 'labels' holds 5 labels"):
        read_image_file(str(path))


def test_labels_become_indices_into_sorted_names(tmp_path) -> None:
    path = tmp_path / "images.npz"
    np.savez(path, images=np.zeros((4, 4, 4, 3), dtype=np.uint8), labels=np.array([2.0, 1.0, 2.0, 1.0]))
    images, labels, names = read_image_file(str(path))

    assert images.shape == (4, 3, 4, 4) and images.dtype == np.float32  # channels last, read channels first
    assert names == ("1", "2")  # integral floats are named as integers
    assert labels.tolist() == [1, 0, 1, 0] and labels.dtype == np.int64


def test_a_table_check_is_remembered_per_file_version(tmp_path) -> None:
    path = tmp_path / "table.csv"
    assert file_stamp(str(path)) is None
    pd.DataFrame({"x": [0.0, 1.0], "y": [0, 1]}).to_csv(path, index=False)
    assert checked_table(str(path), "y", file_stamp(str(path))) == "classification"

    pd.DataFrame({"x": [0.0, float("inf"), 2.0], "y": [0, 1, 0]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="infinite"):
        checked_table(str(path), "y", file_stamp(str(path)))


def test_task_inference_limits() -> None:
    assert infer_task(pd.Series([True, False, True])) == "classification"
    assert infer_task(pd.Series(["a", "b"])) == "classification"
    assert infer_task(pd.Series(range(MAX_INFERRED_CLASSES))) == "classification"
    assert infer_task(pd.Series(range(MAX_INFERRED_CLASSES + 1))) == "regression"
    assert infer_task(pd.Series([0.5, 1.0])) == "regression"
