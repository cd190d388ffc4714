"""Unit tests of workers.datasets: bundled sets, tables, image archives, checks and the split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris

from workers.datasets import (
    BUNDLED,
    DataError,
    check_images,
    check_tabular,
    load_images,
    load_tabular,
)
from workers.trainers.base import DataConfig

EXPECTED = {
    # name: (task, n_features, n_classes, n_rows)
    "iris": ("classification", 4, 3, 150),
    "wine": ("classification", 13, 3, 178),
    "breast_cancer": ("classification", 30, 2, 569),
    "digits": ("classification", 64, 10, 1797),
    "diabetes": ("regression", 10, 0, 442),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bundled_dataset_loads_with_task_and_shapes(name: str) -> None:
    task, n_features, n_classes, n_rows = EXPECTED[name]
    data = load_tabular(DataConfig(name))

    assert (data.task, data.n_features, data.n_classes) == (task, n_features, n_classes)
    assert check_tabular(DataConfig(name)) == task
    assert len(data.x_train) + len(data.x_val) == n_rows
    assert len(data.x_val) == pytest.approx(0.2 * n_rows, abs=1)
    assert data.x_train.shape[1] == data.x_val.shape[1] == n_features
    assert data.x_train.dtype == np.float32
    assert len(data.feature_names) == n_features
    assert len(data.class_names) == n_classes
    if task == "classification":
        assert data.y_train.dtype == np.int64
        assert set(np.unique(data.y_train)) == set(range(n_classes))
    else:
        assert data.y_train.dtype == np.float32


def test_registry_covers_the_documented_names() -> None:
    assert set(BUNDLED) == set(EXPECTED)


def _iris_frame() -> pd.DataFrame:
    frame = load_iris(as_frame=True).frame
    frame["species"] = np.asarray(load_iris().target_names)[frame.pop("target")]
    # A text feature to one-hot encode, and two rows with a missing value to drop.
    frame["colour"] = np.where(np.arange(len(frame)) % 2 == 0, "red", "blue")
    frame.loc[3, "sepal length (cm)"] = np.nan
    frame.loc[7, "colour"] = None
    return frame


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_with_target_column(tmp_path, suffix: str) -> None:
    path = tmp_path / f"iris{suffix}"
    frame = _iris_frame()
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    config = DataConfig(str(path), target="species")

    data = load_tabular(config)

    assert check_tabular(config) == "classification"
    assert data.task == "classification"
    assert data.class_names == ("setosa", "versicolor", "virginica")
    assert data.n_classes == 3
    assert data.feature_names == (
        "sepal length (cm)",
        "sepal width (cm)",
        "petal length (cm)",
        "petal width (cm)",
        "colour_blue",
        "colour_red",
    )
    assert len(data.x_train) + len(data.x_val) == 148  # two rows with a missing value dropped
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    # Stratified: each class keeps its share in the validation rows.
    assert np.bincount(data.y_val).tolist() == [10, 10, 10]


def test_task_inference_from_the_target(tmp_path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=200),
            "price": rng.normal(100.0, 10.0, size=200),  # float, many values
            "grade": rng.integers(0, 4, size=200),  # int, few values
            "stars": rng.integers(1, 6, size=200).astype(float),  # float but integral, few values
        }
    )
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)

    assert check_tabular(DataConfig(str(path), target="price")) == "regression"
    assert check_tabular(DataConfig(str(path), target="grade")) == "classification"
    assert check_tabular(DataConfig(str(path), target="stars")) == "classification"
    assert check_tabular(DataConfig(str(path), target="grade", task="regression")) == "regression"

    regression = load_tabular(DataConfig(str(path), target="price"))
    assert regression.task == "regression" and regression.n_classes == 0
    assert regression.y_train.dtype == np.float32
    stars = load_tabular(DataConfig(str(path), target="stars"))
    assert stars.class_names == ("1", "2", "3", "4", "5")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_missing_target_column_names_it_and_lists_columns(tmp_path, suffix: str) -> None:
    path = tmp_path / f"table{suffix}"
    frame = pd.DataFrame({"alpha": [1.0, 2.0], "beta": [3.0, 4.0]})
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    config = DataConfig(str(path), target="gamma")

    for call in (check_tabular, load_tabular):
        with pytest.raises(DataError, match="gamma") as info:
            call(config)
        assert "alpha" in str(info.value) and "beta" in str(info.value)


def test_table_without_target_asks_for_one(tmp_path) -> None:
    path = tmp_path / "table.csv"
    pd.DataFrame({"alpha": [1.0], "beta": [2.0]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="target"):
        check_tabular(DataConfig(str(path)))


def test_missing_file_is_a_data_error(tmp_path) -> None:
    path = str(tmp_path / "nowhere.csv")
    with pytest.raises(DataError, match=r"nowhere\.csv"):
        check_tabular(DataConfig(path, target="y"))
    with pytest.raises(DataError, match=r"nowhere\.csv"):
        load_tabular(DataConfig(path, target="y"))


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(DataError, match="mnist") as info:
        check_tabular(DataConfig("mnist"))
    for name in EXPECTED:
        assert name in str(info.value)
    with pytest.raises(DataError, match="digits"):
        check_images(DataConfig("mnist"))


def test_bundled_task_conflict_is_a_data_error() -> None:
    with pytest.raises(DataError, match="diabetes"):
        check_tabular(DataConfig("diabetes", task="classification"))
    with pytest.raises(DataError, match="task"):
        check_tabular(DataConfig("iris", task="clustering"))


def test_split_depends_only_on_split_seed() -> None:
    from workers import datasets

    first = load_tabular(DataConfig("wine", split_seed=3))
    datasets._load_tabular_cached.cache_clear()  # so the second load really splits again
    again = load_tabular(DataConfig("wine", split_seed=3))
    other = load_tabular(DataConfig("wine", split_seed=4))

    assert again is not first
    np.testing.assert_array_equal(first.x_train, again.x_train)
    np.testing.assert_array_equal(first.y_val, again.y_val)
    assert not np.array_equal(first.x_val, other.x_val)


def test_loads_are_cached_and_read_only() -> None:
    config = DataConfig("breast_cancer")
    data = load_tabular(config)

    assert load_tabular(config) is data
    with pytest.raises(ValueError):
        data.x_train[0, 0] = 1.0


def test_rewritten_file_is_loaded_again(tmp_path) -> None:
    path = tmp_path / "table.csv"
    pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "y": [0, 1, 0, 1]}).to_csv(path, index=False)
    config = DataConfig(str(path), target="y", val_fraction=0.5)
    assert load_tabular(config).n_features == 1

    pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "z": [5.0] * 4, "y": [0, 1, 0, 1]}).to_csv(path, index=False)
    assert load_tabular(config).n_features == 2


def _good_rows(n: int = 40) -> list[str]:
    return [f"{i / n},{i % 7},{i % 2}" for i in range(n)]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_infinite_values_are_refused_naming_file_columns_and_rows(tmp_path, suffix: str) -> None:
    # inf, -inf, and 1e400 (which a CSV reader makes inf) among good rows; 1e39 is finite in
    # float64 but infinite in the float32 the trainers use. Before, they were kept and every loss was NaN.
    lines = ["a,b,label", *_good_rows(), "inf,1,0", "-inf,2,1", "1e400,3,0", "0.5,1e39,1"]
    path = tmp_path / f"table{suffix}"
    if suffix == ".csv":
        path.write_text("\n".join(lines) + "\n")
    else:
        csv = tmp_path / "source.csv"
        csv.write_text("\n".join(lines) + "\n")
        pd.read_csv(csv).to_parquet(path)
    config = DataConfig(str(path), target="label")

    for call in (check_tabular, load_tabular):
        with pytest.raises(DataError) as info:
            call(config)
        message = str(info.value)
        assert message.startswith(f"{path}: 4 rows hold infinite values"), message
        assert "column 'a': 3, column 'b': 1" in message and "first at data row 41" in message
        assert "replace them with finite numbers or drop those rows" in message
        assert "\n" not in message


def test_an_infinite_regression_target_is_refused_and_missing_values_still_drop_rows(tmp_path) -> None:
    path = tmp_path / "table.csv"
    path.write_text("x,y\n" + "".join(f"{i},{i * 0.37}\n" for i in range(30)) + "3,inf\n")
    with pytest.raises(DataError, match=r"1 row holds infinite values .*column 'y': 1"):
        check_tabular(DataConfig(str(path), target="y"))

    path.write_text("x,y\n" + "".join(f"{i},{i * 0.37}\n" for i in range(30)) + "3,\n,4\n")
    assert check_tabular(DataConfig(str(path), target="y")) == "regression"
    data = load_tabular(DataConfig(str(path), target="y"))
    assert len(data.y_train) + len(data.y_val) == 30


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_table_holding_only_the_target_column_is_refused(tmp_path, suffix: str) -> None:
    # It used to pass the check, then every trial failed with pandas' "No objects to concatenate".
    path = tmp_path / f"labels{suffix}"
    frame = pd.DataFrame({"label": [0, 1] * 10})
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    config = DataConfig(str(path), target="label")

    for call in (check_tabular, load_tabular):
        with pytest.raises(DataError, match="no feature column besides the target column 'label'; add the columns"):
            call(config)


# --- images ---------------------------------------------------------------------------------


def test_digits_as_images() -> None:
    data = load_images(DataConfig("digits"))
    assert (data.channels, data.height, data.width, data.n_classes) == (1, 8, 8, 10)
    assert data.x_train.shape[1:] == (1, 8, 8) and data.x_train.dtype == np.float32
    assert data.y_train.dtype == np.int64
    assert len(data.x_train) + len(data.x_val) == 1797
    assert check_images(DataConfig("digits")) == "classification"


def test_tabular_only_bundled_name_is_not_an_image_dataset() -> None:
    with pytest.raises(DataError, match="iris"):
        check_images(DataConfig("iris"))
    with pytest.raises(DataError, match="iris"):
        load_images(DataConfig("iris"))


def _labelled_images(shape_of_one: tuple[int, ...], channel_axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """40 images whose pixels hold their channel index, so a wrong transpose shows."""
    images = np.zeros((40, *shape_of_one), dtype=np.uint8)
    if channel_axis is not None:
        for channel in range(images.shape[channel_axis]):
            index = [slice(None)] * images.ndim
            index[channel_axis] = channel
            images[tuple(index)] = channel
    labels = np.array(["cat", "dog"] * 20)
    return images, labels


@pytest.mark.parametrize(
    ("shape_of_one", "channel_axis", "expected"),
    [
        ((5, 6), None, (1, 5, 6)),  # (N, H, W)
        ((1, 5, 6), 1, (1, 5, 6)),  # (N, 1, H, W)
        ((3, 5, 6), 1, (3, 5, 6)),  # (N, C, H, W)
        ((5, 6, 3), 3, (3, 5, 6)),  # (N, H, W, C)
        ((5, 6, 1), 3, (1, 5, 6)),  # (N, H, W, 1)
    ],
)
def test_npz_layouts(tmp_path, shape_of_one, channel_axis, expected) -> None:
    images, labels = _labelled_images(shape_of_one, channel_axis)
    path = tmp_path / "images.npz"
    np.savez(path, images=images, labels=labels)
    config = DataConfig(str(path), split_seed=1)

    data = load_images(config)

    assert check_images(config) == "classification"
    assert (data.channels, data.height, data.width) == expected
    assert data.x_train.shape == (32, *expected) and data.x_val.shape == (8, *expected)
    assert data.x_train.dtype == np.float32
    assert data.class_names == ("cat", "dog") and data.n_classes == 2
    for channel in range(data.channels):
        assert np.all(data.x_train[:, channel] == channel)


def test_npz_bad_shape_is_a_data_error(tmp_path) -> None:
    path = tmp_path / "images.npz"
    np.savez(path, images=np.zeros((10, 4, 5, 6)), labels=np.zeros(10))
    with pytest.raises(DataError, match="shape"):
        load_images(DataConfig(str(path)))


def test_npz_missing_key_names_it(tmp_path) -> None:
    path = tmp_path / "images.npz"
    np.savez(path, images=np.zeros((10, 4, 4)), targets=np.zeros(10))
    config = DataConfig(str(path))

    for call in (check_images, load_images):
        with pytest.raises(DataError, match="'labels'") as info:
            call(config)
        assert "targets" in str(info.value)


def test_npz_split_is_stratified_and_repeatable(tmp_path) -> None:
    images, labels = _labelled_images((4, 4), None)
    path = tmp_path / "images.npz"
    np.savez(path, images=images + np.arange(40, dtype=np.uint8)[:, None, None], labels=labels)

    first = load_images(DataConfig(str(path), split_seed=5))
    second = load_images(DataConfig(str(path), split_seed=5, task="classification"))

    np.testing.assert_array_equal(first.x_val, second.x_val)
    assert np.bincount(first.y_val).tolist() == [4, 4]


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e39])
def test_npz_with_nan_or_infinite_pixels_is_refused(tmp_path, bad: float) -> None:
    images, labels = _labelled_images((4, 4), None)
    images = images.astype(np.float64)
    images[3, 1, 2] = bad
    path = tmp_path / "images.npz"
    np.savez(path, images=images, labels=labels)
    config = DataConfig(str(path))

    for call in (check_images, load_images):
        with pytest.raises(
            DataError, match=r"1 image in 'images' holds NaN, infinite or beyond-float32 pixels \(first: image 3\)"
        ):
            call(config)
