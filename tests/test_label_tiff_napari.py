"""Label TIFFs through a real napari viewer: ``viewer.open(..., plugin=...)`` and
``layer.save(..., plugin=...)`` with the plugin's npe2 reader and writer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from napari_unsupervised_segmentation._napari.writer import LabelsNotSavedError
from napari_unsupervised_segmentation.io import read_label_tiff, write_label_tiff

PLUGIN = "napari-unsupervised-segmentation"


def _chain(error: BaseException | None) -> str:
    """The messages of an exception and of all its causes."""
    parts = []
    while error is not None:
        parts.append(str(error))
        error = error.__cause__ or error.__context__
    return " | ".join(parts)


def test_open_marked_file_as_labels(make_napari_viewer: Callable[..., Any], tmp_path: Path) -> None:
    labels = np.random.default_rng(1).integers(0, 500, (3, 16, 20)).astype(np.uint16)
    path = write_label_tiff(tmp_path / "nuclei_labels.tif", labels, scale=(2, 0.5, 0.5), units="um")
    viewer = make_napari_viewer()

    [layer] = viewer.open(str(path), plugin=PLUGIN)

    assert layer._type_string == "labels"
    assert layer.name == "nuclei_labels"
    assert layer.data.dtype == np.uint16
    np.testing.assert_array_equal(layer.data, labels)
    np.testing.assert_allclose(layer.scale, (2, 0.5, 0.5))
    assert tuple(layer.axis_labels) == ("z", "y", "x")
    assert str(layer.units[-1]) == "micrometer"


def test_save_and_reopen_4d_uint32(make_napari_viewer: Callable[..., Any], tmp_path: Path) -> None:
    labels = np.arange(2 * 3 * 120 * 300, dtype=np.uint32).reshape(2, 3, 120, 300) % 70_000
    viewer = make_napari_viewer()
    layer = viewer.add_labels(
        labels, name="cells", scale=(10, 2, 0.5, 0.5), axis_labels=("t", "z", "y", "x")
    )
    layer.units = ("second", "micrometer", "micrometer", "micrometer")

    written = layer.save(str(tmp_path / "cells_labels.tif"), plugin=PLUGIN)
    assert [Path(p).name for p in written] == ["cells_labels.tif"]
    data, info = read_label_tiff(tmp_path / "cells_labels.tif")
    assert data.dtype == np.uint32
    assert info["axes"] == "TZYX"
    np.testing.assert_array_equal(data, labels)

    [reopened] = viewer.open(str(tmp_path / "cells_labels.tif"), plugin=PLUGIN)
    np.testing.assert_array_equal(reopened.data, labels)
    np.testing.assert_allclose(reopened.scale, (10, 2, 0.5, 0.5))
    assert reopened.name == "cells_labels"
    assert tuple(reopened.axis_labels) == ("t", "z", "y", "x")
    assert [str(unit) for unit in reopened.units] == ["pixel"] + ["micrometer"] * 3


def test_depth_before_time_keeps_its_order_and_meaning(
    make_napari_viewer: Callable[..., Any], tmp_path: Path
) -> None:
    labels = (np.arange(3 * 2 * 16 * 20).reshape(3, 2, 16, 20) % 50).astype(np.uint8)
    viewer = make_napari_viewer()
    layer = viewer.add_labels(labels, scale=(2, 30, 0.5, 0.5), axis_labels=("z", "t", "y", "x"))
    layer.save(str(tmp_path / "zt_labels.tif"), plugin=PLUGIN)
    [reopened] = viewer.open(str(tmp_path / "zt_labels.tif"), plugin=PLUGIN)
    assert tuple(reopened.axis_labels) == ("z", "t", "y", "x")  # not relabelled t, z, y, x
    np.testing.assert_allclose(reopened.scale, (2, 30, 0.5, 0.5))
    np.testing.assert_array_equal(reopened.data, labels)


def test_save_2d_uint8_for_fiji(make_napari_viewer: Callable[..., Any], tmp_path: Path) -> None:
    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.eye(8, dtype=np.int32) * 7, scale=(0.25, 0.25))

    layer.save(str(tmp_path / "eye.tiff"), plugin=PLUGIN)

    with tifffile.TiffFile(tmp_path / "eye.tiff") as tif:
        assert tif.is_imagej
        assert tif.pages.first.dtype == np.uint8
        assert tif.pages.first.tags["XResolution"].value == (4, 1)


def test_refused_data_shows_an_error_and_writes_nothing(
    make_napari_viewer: Callable[..., Any], tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.array([[0, 2**33]], dtype=np.int64))
    with pytest.raises(LabelsNotSavedError, match=r"too_big\.tif.*uint32"):
        layer.save(str(tmp_path / "too_big.tif"), plugin=PLUGIN)
    assert list(tmp_path.iterdir()) == []


def test_foreign_mask_opens_as_labels_and_image_is_left_to_napari(
    make_napari_viewer: Callable[..., Any], tmp_path: Path
) -> None:
    mask = np.random.default_rng(2).integers(0, 900, (24, 32)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "cells_cp_masks.tif", mask)
    tifffile.imwrite(tmp_path / "cells.tif", mask)
    viewer = make_napari_viewer()

    [labels] = viewer.open(str(tmp_path / "cells_cp_masks.tif"), plugin=PLUGIN)
    assert labels._type_string == "labels"
    np.testing.assert_array_equal(labels.data, mask)

    from napari.plugins import _npe2

    # a plain name is napari's alone: opening it never asks which reader to use
    assert PLUGIN not in _npe2.get_readers(str(tmp_path / "cells.tif"))
    [image] = viewer.open(str(tmp_path / "cells.tif"))
    assert image._type_string == "image"
    # a label name on something that is not labels: offered, then refused
    tifffile.imwrite(tmp_path / "prob_labels.tif", mask.astype(np.float32))
    assert PLUGIN in _npe2.get_readers(str(tmp_path / "prob_labels.tif"))
    with pytest.raises(Exception) as error:  # npe2 error type varies
        viewer.open(str(tmp_path / "prob_labels.tif"), plugin=PLUGIN)
    assert "refused" in _chain(error.value)


def test_truncated_file_error_names_it_and_viewer_keeps_working(
    make_napari_viewer: Callable[..., Any], tmp_path: Path
) -> None:
    raw = write_label_tiff(tmp_path / "good_labels.tif", np.ones((4, 30, 40), np.uint16) * 300)
    broken = tmp_path / "broken_labels.tif"
    broken.write_bytes(raw.read_bytes()[:-200])
    viewer = make_napari_viewer()

    with pytest.raises(Exception) as error:  # napari may wrap the error
        viewer.open(str(broken), plugin=PLUGIN)
    assert "broken_labels.tif" in _chain(error.value)
    assert "truncated" in _chain(error.value)

    assert len(viewer.layers) == 0
    [layer] = viewer.open(str(raw), plugin=PLUGIN)
    assert layer.data.shape == (4, 30, 40)
