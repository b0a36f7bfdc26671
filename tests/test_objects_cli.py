"""The command line's objects (``--preset objects``, ``label_by="object"``): numbered across
a stack or a series of volumes, from one model's classes or from each plane's training, and
measured plane by plane (``--measure``)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unsupervised_segmentation.cli import main
from napari_unsupervised_segmentation.core.objects import objects_in_planes
from napari_unsupervised_segmentation.io import read_label_tiff

FAST = ["--max-iter", "3", "--max-classes", "8", "--n-superpixels", "40", "--device", "cpu"]
#: Object settings given outright, so that the tests do not follow the preset's defaults.
OBJECTS = ["--preset", "objects", "--object-split", "off", "--object-min-size", "10"]
OBJECTS += ["--fill-holes", "--object-background", "border"]
OPTIONS = {"split": "off", "min_size": 10, "fill_holes": True}

#: Disc centres of the three planes of the z-stack: 2, 1 and 3 discs.
CENTRES = [[(12, 12), (28, 28)], [(20, 20)], [(10, 28), (28, 10), (28, 30)]]


def _discs(centres, seed: int, shape=(40, 40), radius: int = 6) -> np.ndarray:
    """Bright discs (radius 6) on a dark, noisy uint16 plane."""
    rows, cols = np.indices(shape)
    plane = np.random.default_rng(seed).integers(0, 2000, shape).astype(np.uint16)
    for row, col in centres:
        plane[(rows - row) ** 2 + (cols - col) ** 2 <= radius**2] += 40000
    return plane


def _zstack(folder: Path) -> tuple[Path, np.ndarray]:
    stack = np.stack([_discs(centres, seed) for seed, centres in enumerate(CENTRES)])
    path = folder / "zstack.tif"
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "ZYX"})
    return path, stack


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def _assert_discs_are_objects(labels: np.ndarray) -> None:
    """One object per disc, numbered across the stack in plane order, background 0."""
    start = 1
    for plane, centres in zip(labels, CENTRES, strict=True):
        values = sorted(int(v) for v in np.unique(plane) if v)
        assert values == list(range(start, start + len(centres)))  # no label in two planes
        assert sorted(int(plane[centre]) for centre in centres) == values  # one per disc
        assert plane[0, 0] == plane[-1, -1] == plane[0, -1] == 0  # background
        start += len(centres)


def _assert_measured(rows: list[dict[str, str]], labels: np.ndarray, column: str) -> None:
    """A row per object, in label order, saying which plane it is in and its area."""
    values = [int(v) for v in np.unique(labels) if v]
    assert [int(row["label"]) for row in rows] == values
    for row in rows:
        value, plane = int(row["label"]), int(row[column])
        assert np.count_nonzero(labels[plane] == value) == float(row["area"])
        assert np.count_nonzero(labels == value) == float(row["area"])  # in that plane only


def test_one_model_gives_objects_numbered_across_the_stack_and_measures_each_plane(
    tmp_path, capsys
):
    from napari_unsupervised_segmentation import load_model

    path, stack = _zstack(tmp_path)
    out, model_path = tmp_path / "out", tmp_path / "discs.model"
    args = [str(path), "--out", str(out), "--planes", "--one-model", "--measure", "--quiet"]
    assert main([*args, "--save-model", str(model_path), *OBJECTS, *FAST]) == 0
    labels, info = read_label_tiff(out / "zstack_labels.tif")
    assert info["axes"] == "ZYX"
    _assert_discs_are_objects(labels)
    model = load_model(model_path)
    assert model.settings.label_by == "object"  # the saved model keeps its objects
    expected = objects_in_planes(model.predict(stack), spatial_ndim=2, **OPTIONS)
    np.testing.assert_array_equal(labels, expected)
    rows = _rows(out / "zstack_labels.csv")
    assert [int(row["z"]) for row in rows] == [0, 0, 1, 2, 2, 2]  # the TIFF's Z axis
    _assert_measured(rows, labels, "z")
    printed = capsys.readouterr().out
    assert re.search(r"zstack: 3 planes, 6 objects \(1 to 3 per plane\), no training", printed)


def test_a_saved_model_gives_objects_as_its_settings_or_the_command_line_say(tmp_path, capsys):
    from napari_unsupervised_segmentation import load_model

    path, stack = _zstack(tmp_path)
    single = tmp_path / "single.tif"
    tifffile.imwrite(single, stack[2])
    classes_model, objects_model = tmp_path / "classes.model", tmp_path / "objects.model"
    train = [str(single), "--out", str(tmp_path / "train"), "--quiet", *FAST]
    assert main([*train, "--preset", "paper", "--save-model", str(classes_model)]) == 0
    assert main([*train, *OBJECTS, "--save-model", str(objects_model), "--overwrite"]) == 0

    def apply(model: Path, out: str, *extra: str) -> tuple[np.ndarray, np.ndarray]:
        inputs = [str(path), str(single), "--planes", "--model", str(model), "--quiet"]
        assert main([*inputs, "--out", str(tmp_path / out), *extra]) == 0
        return (
            read_label_tiff(tmp_path / out / "zstack_labels.tif")[0],
            read_label_tiff(tmp_path / out / "single_labels.tif")[0],
        )

    # a model trained for objects gives objects: numbered across the stack, and from 1 in
    # a file of its own
    capsys.readouterr()
    planes, one = apply(objects_model, "objects")
    _assert_discs_are_objects(planes)
    printed = capsys.readouterr().out
    assert "zstack: 3 planes, 6 objects (1 to 3 per plane), no training" in printed
    assert "single: 3 objects, no training" in printed
    model = load_model(objects_model)
    np.testing.assert_array_equal(one, objects_in_planes(model.predict(stack[2]), **OPTIONS))
    np.testing.assert_array_equal(np.unique(one), [0, 1, 2, 3])
    expected = objects_in_planes(model.predict(stack), spatial_ndim=2, **OPTIONS)
    np.testing.assert_array_equal(planes, expected)
    # the command line's settings win over the model's
    planes, _ = apply(objects_model, "classes", "--label-by", "class")
    np.testing.assert_array_equal(planes, model.predict(stack))
    planes, _ = apply(objects_model, "none", "--object-min-size", "1000")  # discs are smaller
    assert not planes.any()
    # a model trained for classes gives classes, unless told to give objects
    classes = load_model(classes_model).predict(stack)
    planes, _ = apply(classes_model, "as-saved")
    np.testing.assert_array_equal(planes, classes)
    planes, _ = apply(classes_model, "told", *OBJECTS)
    _assert_discs_are_objects(planes)
    np.testing.assert_array_equal(planes, objects_in_planes(classes, **OPTIONS))
    # object settings without objects are refused before any image is read
    with pytest.raises(SystemExit) as stop:
        apply(classes_model, "refused", "--object-min-size", "5")
    assert stop.value.code == 2
    assert "object_min_size applies only with label_by='object'" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists() or not any((tmp_path / "refused").iterdir())


def test_training_each_plane_numbers_its_objects_on_across_the_stack(tmp_path, capsys):
    from napari_unsupervised_segmentation import segment
    from napari_unsupervised_segmentation.cli import build_parser, params_from_args

    path, stack = _zstack(tmp_path)
    out = tmp_path / "out"
    flags = [*OBJECTS, *FAST]
    assert main([str(path), "--out", str(out), "--planes", "--measure", *flags]) == 0
    labels, _ = read_label_tiff(out / "zstack_labels.tif")
    _assert_discs_are_objects(labels)
    settings = params_from_args(build_parser().parse_args(["--out", "x", *flags]))
    offset = 0
    for plane, image in zip(labels, stack, strict=True):
        alone = segment(image, settings)  # each plane's objects 1..n, numbered on
        np.testing.assert_array_equal(plane, np.where(alone > 0, alone + offset, 0))
        offset += int(alone.max())
    _assert_measured(_rows(out / "zstack_labels.csv"), labels, "z")
    assert "zstack: 3 planes, 6 objects (1 to 3 per plane), 9 iterations" in (
        capsys.readouterr().out
    )


# --- volumes ----------------------------------------------------------------------------

VOLUME_FAST = ["--max-iter", "20", "--min-classes", "2", "--n-superpixels", "150"]
VOLUME_FAST += ["--compactness", "0.1", "--max-classes", "8", "--n-conv", "1", "--device", "cpu"]


def _series(folder: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A time series of two volumes (TZYX), each a bright ball, planes 2 µm apart."""
    from test_volumes import _ball

    first, first_inside = _ball(0)
    second, second_inside = _ball(1)
    series = np.stack([first, second[:, :, ::-1]])
    inside = np.stack([first_inside, second_inside[:, :, ::-1]])
    path = folder / "movie.tif"
    tifffile.imwrite(path, series, imagej=True, resolution=(1.0, 1.0),
                     metadata={"axes": "TZYX", "spacing": 2.0, "unit": "um"})  # fmt: skip
    return path, series, inside


def _assert_balls_are_objects(labels: np.ndarray, inside: np.ndarray) -> None:
    """One 3D object per volume (the ball), numbered across the series, background 0."""
    from scipy import ndimage

    for number, (volume, ball) in enumerate(zip(labels, inside, strict=True), start=1):
        np.testing.assert_array_equal(np.unique(volume), [0, number])
        assert (volume[ball] == number).mean() >= 0.99
        assert volume[0, 0, 0] == volume[-1, -1, -1] == 0
        assert ndimage.label(volume)[1] == 1  # one face-connected 3D object


def test_volumes_give_3d_objects_numbered_across_the_series_and_measured(tmp_path, capsys):
    path, _, inside = _series(tmp_path)
    out = tmp_path / "out"
    args = [str(path), "--out", str(out), "--volume", "--measure", "--calibration", "--quiet"]
    assert main([*args, *OBJECTS, *VOLUME_FAST]) == 0
    labels, info = read_label_tiff(out / "movie_labels.tif")
    assert info["axes"] == "TZYX" and labels.shape == (2, 8, 24, 24)
    _assert_balls_are_objects(labels, inside)
    rows = _rows(out / "movie_labels.csv")
    assert [(int(row["label"]), int(row["t"])) for row in rows] == [(1, 0), (2, 1)]
    assert "z" not in rows[0] and "centroid-2" in rows[0]  # z is a spatial axis: 3D
    for row, volume in zip(rows, labels, strict=True):  # voxels of 2 x 1 x 1 µm
        assert float(row["area"]) == pytest.approx(2.0 * np.count_nonzero(volume))
        assert float(row["centroid-0"]) == pytest.approx(2.0 * np.nonzero(volume)[0].mean())
    assert "movie: 2 volumes, 2 objects (1 per volume)" in capsys.readouterr().out


def test_a_volume_model_gives_3d_objects_across_a_series(tmp_path):
    from napari_unsupervised_segmentation import load_model

    path, series, inside = _series(tmp_path)
    first = tmp_path / "first.tif"
    tifffile.imwrite(first, series[0], imagej=True, resolution=(1.0, 1.0),
                     metadata={"axes": "ZYX", "spacing": 2.0, "unit": "um"})  # fmt: skip
    model_path, out = tmp_path / "ball.model", tmp_path / "out"
    train = [str(first), "--out", str(tmp_path / "train"), "--volume", "--quiet"]
    assert main([*train, "--save-model", str(model_path), *VOLUME_FAST]) == 0
    args = [str(path), "--out", str(out), "--volume", "--model", str(model_path), "--quiet"]
    assert main([*args, *OBJECTS, "--measure"]) == 0
    labels, _ = read_label_tiff(out / "movie_labels.tif")
    _assert_balls_are_objects(labels, inside)
    classes = load_model(model_path).predict(series)
    expected = objects_in_planes(classes, spatial_ndim=3, spacing=(2.0, 1.0, 1.0), **OPTIONS)
    np.testing.assert_array_equal(labels, expected)
    rows = _rows(out / "movie_labels.csv")
    assert [(int(row["label"]), int(row["t"])) for row in rows] == [(1, 0), (2, 1)]
    assert [float(row["area"]) for row in rows] == [np.count_nonzero(v) for v in labels]
