"""Per-object measurements: the table of :func:`measure_objects`, its CSV, the CLI's
``--measure`` and the console's ``segment_layer(..., measure=True)``."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_unsupervised_segmentation.core.measure import (
    SHAPE_2D,
    SHAPE_3D,
    measure_objects,
    write_measurements_csv,
)


def _rectangle() -> tuple[np.ndarray, np.ndarray]:
    """A 3x4 rectangle (label 5) at rows 1-3, columns 2-5 of a 6x8 image whose pixels inside
    it are 10 and 20 (mean 15) and 100 outside."""
    labels = np.zeros((6, 8), np.uint16)
    labels[1:4, 2:6] = 5
    image = np.full((6, 8), 100.0)
    image[1:4, 2:4] = 10.0
    image[1:4, 4:6] = 20.0
    return labels, image


def test_rectangle_area_centroid_mean_and_shape() -> None:
    labels, image = _rectangle()
    table = measure_objects(labels, image)
    assert list(table) == [
        "label", "area", "centroid-0", "centroid-1", "intensity_mean", *SHAPE_2D
    ]  # fmt: skip
    assert table["label"].tolist() == [5]  # the background has no row
    assert table["area"].tolist() == [12]
    assert table["centroid-0"].tolist() == [2.0]
    assert table["centroid-1"].tolist() == [3.5]
    assert table["intensity_mean"].tolist() == [15.0]
    assert table["solidity"].tolist() == [1.0]
    assert table["axis_major_length"][0] > table["axis_minor_length"][0] > 0
    assert table["perimeter"][0] > 0


def test_spacing_gives_physical_area_and_centroid() -> None:
    labels, _ = _rectangle()
    table = measure_objects(labels, spacing=(2, 0.5))
    assert table["area"].tolist() == [12.0]  # 12 pixels of 2 x 0.5
    assert table["centroid-0"].tolist() == [4.0]
    assert table["centroid-1"].tolist() == [1.75]
    assert np.isnan(table["perimeter"][0])  # unequal sides: not measured
    square = measure_objects(labels, spacing=(2, 2))
    assert square["area"].tolist() == [48.0]
    assert square["perimeter"][0] == 2 * measure_objects(labels)["perimeter"][0]


def test_two_channels_give_two_mean_columns() -> None:
    labels, image = _rectangle()
    channels = np.stack([image, 2 * image])  # channels first
    table = measure_objects(labels, channels, channel_axis=0)
    assert table["intensity_mean-0"].tolist() == [15.0]
    assert table["intensity_mean-1"].tolist() == [30.0]
    assert "intensity_mean" not in table


def test_two_labels_in_label_order() -> None:
    labels, image = _rectangle()
    labels[5, 0] = 2
    table = measure_objects(labels, image)
    assert table["label"].tolist() == [2, 5]
    assert table["area"].tolist() == [1, 12]
    assert table["intensity_mean"].tolist() == [100.0, 15.0]


def test_box_in_3d() -> None:
    labels = np.zeros((4, 5, 6), np.int32)
    labels[1:3, 1:4, 2:6] = 1  # 2 x 3 x 4 = 24 voxels
    labels[0, 0, 0] = 2  # one voxel: no 3D convex hull
    table = measure_objects(labels, labels * 1.5, spacing=(2, 1, 1))
    assert list(table) == [
        "label", "area", "centroid-0", "centroid-1", "centroid-2", "intensity_mean", *SHAPE_3D
    ]  # fmt: skip
    assert table["label"].tolist() == [1, 2]
    assert table["area"].tolist() == [48.0, 2.0]  # voxels of 2 x 1 x 1
    assert [table[f"centroid-{axis}"][0] for axis in range(3)] == [3.0, 2.0, 3.5]
    assert table["intensity_mean"].tolist() == [1.5, 3.0]
    assert table["solidity"][0] == 1.0
    assert np.isnan(table["solidity"][1])


def test_empty_labels_give_an_empty_table() -> None:
    table = measure_objects(np.zeros((3, 3), np.uint8), np.ones((3, 3)))
    assert "label" in table and "area" in table and "intensity_mean" in table
    assert all(len(column) == 0 for column in table.values())


def test_bad_input_is_refused() -> None:
    labels, image = _rectangle()
    with pytest.raises(ValueError, match="2D or 3D"):
        measure_objects(labels[0])
    with pytest.raises(ValueError, match="spacing"):
        measure_objects(labels, spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="does not match"):
        measure_objects(labels, image[:5])
    with pytest.raises(TypeError, match="integers"):
        measure_objects(labels.astype(float))


def test_csv_round_trip(tmp_path) -> None:
    labels, image = _rectangle()
    labels[5, 0] = 2
    table = measure_objects(labels, image)
    path = write_measurements_csv(table, tmp_path / "m.csv")
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["label"]) for row in rows] == [2, 5]
    assert [float(row["area"]) for row in rows] == [1.0, 12.0]
    for name, column in table.items():
        assert [float(row[name]) for row in rows] == pytest.approx(column.tolist(), nan_ok=True)
    assert [p.name for p in tmp_path.iterdir()] == ["m.csv"]  # no temporary file left
    with pytest.raises(FileExistsError):
        write_measurements_csv(table, path, overwrite=False)
    write_measurements_csv(measure_objects(np.zeros((2, 2), int)), path)  # replaced
    assert path.read_text(encoding="utf-8").splitlines()[0].startswith("label,area,")
    assert len(path.read_text(encoding="utf-8").splitlines()) == 1


def test_a_stack_of_planes_is_measured_plane_by_plane() -> None:
    labels, image = _rectangle()
    stack = np.zeros((3, 6, 8), np.uint16)
    stack[0] = labels  # label 5: the 3x4 rectangle
    stack[2, 0, 0] = 7  # one pixel
    stack[2, 4:6, 0:2] = 9  # a 2x2 square
    images = np.stack([image, image, 2 * image])
    table = measure_objects(stack, images, spatial_ndim=2, spacing=(2, 2))
    assert list(table) == [
        "label", "plane", "area", "centroid-0", "centroid-1", "intensity_mean", *SHAPE_2D
    ]  # fmt: skip
    assert table["label"].tolist() == [5, 7, 9]
    assert table["plane"].tolist() == [0, 2, 2]
    assert table["plane"].dtype.kind == "i"
    assert table["area"].tolist() == [48.0, 4.0, 16.0]  # pixels of 2 x 2
    assert table["centroid-0"].tolist() == [4.0, 0.0, 9.0]  # in the plane, not the stack
    assert table["centroid-1"].tolist() == [7.0, 0.0, 1.0]
    assert table["intensity_mean"].tolist() == [15.0, 200.0, 200.0]
    one = measure_objects(labels, image, spacing=(2, 2))  # 2D descriptors, as for one plane
    for name in SHAPE_2D:
        assert table[name][0] == one[name][0]


def test_a_label_in_several_planes_has_a_row_per_plane_in_label_order() -> None:
    stack = np.zeros((2, 4, 4), np.uint8)
    stack[0, 0, 0] = 2
    stack[0, 2:4, 2:4] = 1
    stack[1, 0:2, 0:2] = 1
    stack[1, 3, 3] = 2
    table = measure_objects(stack, spatial_ndim=2)
    assert table["label"].tolist() == [1, 1, 2, 2]
    assert table["plane"].tolist() == [0, 1, 0, 1]
    assert table["area"].tolist() == [4, 4, 1, 1]
    assert table["centroid-0"].tolist() == [2.5, 0.5, 0.0, 3.0]


def test_two_stack_axes_with_names_and_channels() -> None:
    stack = np.zeros((2, 3, 5, 5), np.uint16)  # t, z, y, x
    stack[1, 2, 1:3, 1:4] = 4  # six pixels at t=1, z=2
    stack[0, 1, 4, 4] = 3
    image = np.zeros((2, 2, 3, 5, 5))  # t, c, z, y, x
    image[:, 0] = 1.0
    image[:, 1] = 3.0
    table = measure_objects(stack, image, channel_axis=1, spatial_ndim=2, plane_names="tz")
    assert list(table)[:4] == ["label", "t", "z", "area"]
    assert table["label"].tolist() == [3, 4]
    assert table["t"].tolist() == [0, 1]
    assert table["z"].tolist() == [1, 2]
    assert table["area"].tolist() == [1, 6]
    assert table["intensity_mean-0"].tolist() == [1.0, 1.0]
    assert table["intensity_mean-1"].tolist() == [3.0, 3.0]
    unnamed = measure_objects(stack, spatial_ndim=2)
    assert list(unnamed)[:4] == ["label", "axis_0", "axis_1", "area"]
    assert unnamed["axis_1"].tolist() == [1, 2]


def test_a_series_of_volumes_is_measured_in_3d() -> None:
    series = np.zeros((2, 3, 4, 5), np.int32)  # t, z, y, x
    series[0, 0:2, 0:2, 0:2] = 1  # 8 voxels
    series[1, 1:3, 1:4, 1:5] = 2  # 2 x 3 x 4 = 24 voxels
    table = measure_objects(series, spatial_ndim=3, spacing=(2, 1, 1), plane_names=["t"])
    assert list(table) == [
        "label", "t", "area", "centroid-0", "centroid-1", "centroid-2", *SHAPE_3D
    ]  # fmt: skip
    assert table["t"].tolist() == [0, 1]
    assert table["area"].tolist() == [16.0, 48.0]
    assert table["centroid-0"].tolist() == [1.0, 3.0]
    assert table["solidity"].tolist() == [1.0, 1.0]
    flat = measure_objects(series[1], spatial_ndim=3, spacing=(2, 1, 1))  # no stack axes
    assert "t" not in flat and "plane" not in flat
    assert flat["area"].tolist() == [48.0]


def test_an_empty_stack_gives_an_empty_table_with_its_columns() -> None:
    table = measure_objects(np.zeros((2, 3, 3), np.uint8), np.ones((2, 3, 3)), spatial_ndim=2)
    assert list(table)[:3] == ["label", "plane", "area"] and "intensity_mean" in table
    assert all(len(column) == 0 for column in table.values())
    none = measure_objects(np.zeros((0, 3, 3), np.uint8), spatial_ndim=2, plane_names=["z"])
    assert list(none)[:3] == ["label", "z", "area"]
    assert all(len(column) == 0 for column in none.values())


def test_bad_stack_input_is_refused() -> None:
    stack = np.zeros((2, 4, 4), np.uint8)
    stack[0, 1, 1] = 1
    with pytest.raises(ValueError, match="spatial_ndim"):
        measure_objects(stack, spatial_ndim=4)
    with pytest.raises(ValueError, match="spatial_ndim"):
        measure_objects(stack[0, 0], spatial_ndim=2)
    with pytest.raises(ValueError, match="spacing"):
        measure_objects(stack, spatial_ndim=2, spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="plane_names"):
        measure_objects(stack, spatial_ndim=2, plane_names=["t", "z"])
    with pytest.raises(ValueError, match="plane_names"):
        measure_objects(stack, spatial_ndim=2, plane_names=["area"])
    with pytest.raises(ValueError, match="does not match"):
        measure_objects(stack, np.ones((3, 4, 4)), spatial_ndim=2)


# --- napari's console -------------------------------------------------------------------


def _viewer_image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.random(shape)
    image[..., 8:24, 8:24] += 2.0
    return image


def test_segment_layer_measures_into_the_layers_features(make_napari_viewer) -> None:
    from napari_unsupervised_segmentation import SegmentationParams, segment_layer

    fast = SegmentationParams(max_iter=8, min_classes=0, n_superpixels=50, max_classes=8)
    viewer = make_napari_viewer()
    data = _viewer_image((2, 32, 32))
    data[1] *= 10
    viewer.add_image(data, name="cyx", scale=(1.0, 2.0, 3.0))
    layer = segment_layer("cyx", viewer, fast, channel_axis=0, measure=True)
    labels = np.asarray(layer.data)[0]  # the labels show on both channels
    features = layer.features
    values = [int(v) for v in np.unique(labels) if v]
    assert features["index"].tolist() == values
    assert "label" not in features
    for row, value in enumerate(values):
        mask = labels == value
        assert features["area"][row] == pytest.approx(mask.sum() * 6.0)  # 2 x 3 per pixel
        rows, cols = np.nonzero(mask)
        assert features["centroid-0"][row] == pytest.approx(rows.mean() * 2.0)
        assert features["centroid-1"][row] == pytest.approx(cols.mean() * 3.0)
        assert features["intensity_mean-0"][row] == pytest.approx(data[0][mask].mean())
        assert features["intensity_mean-1"][row] == pytest.approx(data[1][mask].mean())
    again = segment_layer("cyx", viewer, fast, channel_axis=0, seed=1)  # not measured
    assert again is layer
    assert layer.features.shape[1] == 0  # the old measurements are gone with their labels


def test_segment_layer_measures_one_plane_but_not_a_stack(make_napari_viewer) -> None:
    from napari_unsupervised_segmentation import SegmentationParams, segment_layer

    fast = SegmentationParams(max_iter=8, min_classes=0, n_superpixels=50, max_classes=8)
    viewer = make_napari_viewer()
    viewer.add_image(_viewer_image((3, 32, 32)), name="vol", scale=(4.0, 0.5, 0.5))
    layer = segment_layer("vol", viewer, fast, measure=True)  # the shown plane
    plane = np.asarray(layer.data)[0]
    assert layer.features["index"].tolist() == [int(v) for v in np.unique(plane) if v]
    assert layer.features["area"].sum() == pytest.approx(np.count_nonzero(plane) * 0.25)
    volume = segment_layer("vol", viewer, fast, planes="volume", measure=True)
    voxels = np.asarray(volume.data)
    assert volume.features["index"].tolist() == [int(v) for v in np.unique(voxels) if v]
    assert volume.features["area"].sum() == pytest.approx(np.count_nonzero(voxels) * 1.0)
    assert "centroid-2" in volume.features  # 3D: z, y, x
    with pytest.raises(ValueError, match="one plane or one volume"):
        segment_layer("vol", viewer, fast, planes="each", measure=True)


# --- the command line -------------------------------------------------------------------

CLI_FAST = ["--max-iter", "3", "--max-classes", "8", "--n-superpixels", "40", "--device", "cpu"]


def test_cli_measure_writes_a_csv_beside_each_label_tiff(tmp_path, capsys) -> None:
    import tifffile

    from napari_unsupervised_segmentation.cli import main
    from napari_unsupervised_segmentation.io import read_label_tiff

    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp_path / "gray.tif", rng.integers(0, 4000, (20, 30), dtype=np.uint16))
    tifffile.imwrite(tmp_path / "rgb.tif", rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    out = tmp_path / "out"
    inputs = [str(tmp_path / "gray.tif"), str(tmp_path / "rgb.tif")]
    assert main([*inputs, "--out", str(out), "--quiet", "--measure", *CLI_FAST]) == 0
    for name, means in (("gray", ["intensity_mean"]), ("rgb", ["intensity_mean-0",
                        "intensity_mean-1", "intensity_mean-2"])):  # fmt: skip
        labels, _ = read_label_tiff(out / f"{name}_labels.tif")
        with open(out / f"{name}_labels.csv", newline="", encoding="utf-8") as file:
            rows = list(csv.DictReader(file))
        values = [int(v) for v in np.unique(labels) if v]
        assert [int(row["label"]) for row in rows] == values  # one row per label
        assert [float(row["area"]) for row in rows] == [np.sum(labels == v) for v in values]
        assert all(mean in rows[0] for mean in means)
    # an existing CSV is kept without --overwrite, replaced with it
    (out / "gray_labels.tif").unlink()
    with pytest.raises(SystemExit):
        main([inputs[0], "--out", str(out), "--quiet", "--measure", *CLI_FAST])
    assert "gray_labels.csv exists" in capsys.readouterr().err
    args = [inputs[0], "--out", str(out), "--quiet", "--measure", "--overwrite", *CLI_FAST]
    assert main(args) == 0


def test_cli_measure_measures_each_plane_of_a_stack(tmp_path) -> None:
    import tifffile

    from napari_unsupervised_segmentation.cli import main
    from napari_unsupervised_segmentation.io import read_label_tiff

    stack = np.random.default_rng(0).integers(0, 255, (2, 20, 30), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", stack)  # a plain stack: its axis is unnamed
    out = tmp_path / "out"
    args = [str(tmp_path / "stack.tif"), "--out", str(out), "--planes", "--channel-axis", "none"]
    assert main([*args, "--quiet", "--measure", *CLI_FAST]) == 0
    labels, _ = read_label_tiff(out / "stack_labels.tif")
    with open(out / "stack_labels.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    # each plane is numbered from 1: a row per label and plane, in label order
    found = sorted((int(v), z) for z in range(2) for v in np.unique(labels[z]) if v)
    assert [(int(row["label"]), int(row["plane"])) for row in rows] == found
    for row in rows:
        plane = labels[int(row["plane"])]
        assert float(row["area"]) == np.count_nonzero(plane == int(row["label"]))
        assert float(row["intensity_mean"]) == pytest.approx(
            stack[int(row["plane"])][plane == int(row["label"])].mean()
        )


def test_cli_measure_with_calibration_is_in_the_images_unit(tmp_path) -> None:
    import tifffile

    from napari_unsupervised_segmentation.cli import main
    from napari_unsupervised_segmentation.io import read_label_tiff

    image = np.random.default_rng(0).integers(0, 4000, (20, 24), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "fiji.tif", image, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "YX", "unit": "um"})  # fmt: skip
    out = tmp_path / "out"
    args = [str(tmp_path / "fiji.tif"), "--out", str(out), "--quiet", "--calibration"]
    assert main([*args, "--measure", *CLI_FAST]) == 0
    labels, _ = read_label_tiff(out / "fiji_labels.tif")
    with open(out / "fiji_labels.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    values = [int(v) for v in np.unique(labels) if v]
    # 0.5 µm pixels: a quarter of a µm² each
    assert [float(row["area"]) for row in rows] == [np.sum(labels == v) * 0.25 for v in values]


def test_measure_labels_of_an_rgb_layer_has_a_mean_per_colour() -> None:
    from napari.layers import Image

    from napari_unsupervised_segmentation._napari.layers import layer_input, measure_labels

    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    inp = layer_input(Image(rgb, rgb=True, scale=(2.0, 0.5)))
    labels, _ = _rectangle()
    features = measure_labels(inp, labels)
    assert features["index"].tolist() == [5]
    assert features["area"].tolist() == [12.0]  # 12 pixels of 2 x 0.5
    assert features["centroid-0"].tolist() == [4.0]
    means = [features[f"intensity_mean-{c}"].tolist() for c in range(3)]
    assert means == [[10.0], [20.0], [30.0]]


def test_cli_measure_gives_each_plane_of_a_stack_of_two_channels_its_means(tmp_path) -> None:
    import tifffile

    from napari_unsupervised_segmentation.cli import main
    from napari_unsupervised_segmentation.io import read_label_tiff

    rng = np.random.default_rng(1)
    tzcyx = rng.integers(0, 255, (2, 2, 2, 16, 20), dtype=np.uint8)
    tzcyx[:, :, 1] //= 4  # the second channel darker
    tifffile.imwrite(tmp_path / "movie.tif", tzcyx, imagej=True, metadata={"axes": "TZCYX"})
    out = tmp_path / "out"
    args = [str(tmp_path / "movie.tif"), "--out", str(out), "--planes", "--quiet"]
    assert main([*args, "--measure", *CLI_FAST]) == 0
    labels, _ = read_label_tiff(out / "movie_labels.tif")
    assert labels.shape == (2, 2, 16, 20)
    with open(out / "movie_labels.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0])[:4] == ["label", "t", "z", "area"]  # the file's T and Z axes
    assert {(int(row["t"]), int(row["z"])) for row in rows} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    for row in rows:
        t, z, value = int(row["t"]), int(row["z"]), int(row["label"])
        mask = labels[t, z] == value
        assert float(row["area"]) == np.count_nonzero(mask)
        for channel in range(2):
            mean = float(row[f"intensity_mean-{channel}"])
            assert mean == pytest.approx(tzcyx[t, z, channel][mask].mean())
