"""Label TIFF reader and writer: the pure functions and the npe2 adapters, without a viewer."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from napari_unsupervised_segmentation._napari.reader import get_reader
from napari_unsupervised_segmentation._napari.writer import LabelsNotSavedError, write_labels
from napari_unsupervised_segmentation.io import (
    LabelTiffError,
    has_label_name,
    is_label_tiff,
    label_dtype,
    read_label_tiff,
    write_label_tiff,
)

RNG = np.random.default_rng(0)


def _labels(shape: tuple[int, ...], high: int, dtype: type = np.int64) -> np.ndarray:
    """Random labels 0..high (with ``high`` present) for round trips."""
    data = RNG.integers(0, high, shape).astype(dtype)
    data.flat[-1] = high
    return data


def _siblings(path: Path) -> list[str]:
    """Names in the folder of ``path``: shows left-over temporary files."""
    return sorted(p.name for p in path.parent.iterdir())


# --- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "high", "dtype", "stored", "axes"),
    [
        ((12, 10), 200, np.uint8, np.uint8, "YX"),
        ((3, 12, 10), 300, np.int64, np.uint16, "ZYX"),  # int64 that fits uint16
        ((2, 3, 12, 10), 70_000, np.int32, np.uint32, "TZYX"),
        ((2, 2, 2, 6, 5), 9, np.uint16, np.uint8, "TZCYX"),
        ((8, 9), 1, bool, np.uint8, "YX"),
        # axes of size 1 (the widget's plane of a stack) are kept, also in last place
        ((1, 12, 10), 200, np.uint8, np.uint8, "ZYX"),
        ((3, 1, 12, 10), 70_000, np.int32, np.uint32, "TZYX"),
        ((12, 10, 1), 5, np.uint8, np.uint8, "ZYX"),
        ((2, 3, 12, 1), 300, np.uint16, np.uint16, "TZYX"),
    ],
)
def test_round_trip_keeps_values_dtype_axes_and_scale(
    tmp_path: Path, shape: tuple[int, ...], high: int, dtype: type, stored: type, axes: str
) -> None:
    labels = _labels(shape, high, dtype)
    scale = [3.0, 2.0, 1.0, 0.25, 0.125][-len(shape) :]
    path = write_label_tiff(tmp_path / "seg.tif", labels, scale=scale, units="um")

    data, info = read_label_tiff(path)

    assert path == tmp_path / "seg.tif"
    assert data.dtype == stored
    np.testing.assert_array_equal(data, labels)
    assert info["axes"] == axes
    expected = [1.0 if axis == "C" else s for axis, s in zip(axes, scale, strict=True)]
    np.testing.assert_allclose(info["scale"], expected, rtol=1e-6)
    assert info["units"] == "micrometer"
    assert info["marker"] is True
    assert info["name"] == "seg"
    assert is_label_tiff(path)
    assert _siblings(path) == ["seg.tif"]


@pytest.mark.parametrize("high", [200, 70_000])  # ImageJ hyperstack, OME-TIFF
@pytest.mark.parametrize("shape", [(1, 12, 10), (12, 10, 1), (2, 3, 12, 1)])
def test_other_readers_read_planes_with_axes_of_size_1(
    tmp_path: Path, shape: tuple[int, ...], high: int
) -> None:
    labels = _labels(shape, high, np.int64)
    path = write_label_tiff(tmp_path / "seg.tif", labels)
    read = tifffile.imread(path)  # drops leading axes of size 1, keeps the values in order
    assert read.size == labels.size and read.shape[-2:] == shape[-2:]
    np.testing.assert_array_equal(read.ravel(), labels.ravel())


def test_more_than_65535_labels_survive_as_uint32(tmp_path: Path) -> None:
    labels = np.arange(1, 70_001, dtype=np.int64).reshape(280, 250)
    data, info = read_label_tiff(write_label_tiff(tmp_path / "many.tiff", labels))
    assert data.dtype == np.uint32
    np.testing.assert_array_equal(data, labels)
    assert len(np.unique(data)) == 70_000
    assert info["scale"] == (1.0, 1.0)
    assert info["units"] is None


def test_explicit_axes_time_series_of_planes(tmp_path: Path) -> None:
    labels = _labels((4, 6, 7), 5)
    path = write_label_tiff(tmp_path / "track.tif", labels, axes="tyx", scale=(30.0, 1, 1))
    data, info = read_label_tiff(path)
    assert info["axes"] == "TYX"
    assert info["scale"] == (30.0, 1.0, 1.0)
    np.testing.assert_array_equal(data, labels)


@pytest.mark.parametrize("shape", [(2, 3, 8, 9), (1, 3, 8, 9), (2, 1, 8, 9)])
def test_axes_out_of_imagej_order_are_kept_in_an_ome_tiff(
    tmp_path: Path, shape: tuple[int, ...]
) -> None:
    # depth before time (a napari layer labelled z, t, y, x): an ImageJ hyperstack would
    # call the first axis T; OME keeps any order, and Fiji opens it through Bio-Formats
    labels = _labels(shape, 40)
    path = write_label_tiff(tmp_path / "zt.tif", labels, axes="ZTYX", scale=(2, 30, 0.5, 0.5))
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome and not tif.is_imagej
    data, info = read_label_tiff(path)
    assert info["axes"] == "ZTYX" and data.dtype == np.uint8
    assert info["scale"] == (2.0, 30.0, 0.5, 0.5)
    np.testing.assert_array_equal(data, labels)


def test_rewriting_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "a_labels.tif"
    write_label_tiff(path, np.ones((4, 4), np.uint8))
    write_label_tiff(path, np.full((5, 5), 2, np.uint8))
    np.testing.assert_array_equal(read_label_tiff(path)[0], np.full((5, 5), 2))
    assert _siblings(path) == ["a_labels.tif"]


def test_without_overwrite_an_existing_file_is_kept(tmp_path: Path) -> None:
    path = write_label_tiff(tmp_path / "a_labels.tif", np.ones((4, 4), np.uint8))
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        write_label_tiff(path, np.full((4, 4), 2, np.uint8), overwrite=False)
    assert path.read_bytes() == before
    assert _siblings(path) == ["a_labels.tif"]


def _no_hard_links(source: Any, target: Any) -> None:
    """``os.link`` on a file system without hard links (FAT, exFAT, some network shares)."""
    raise OSError(errno.EPERM, "Operation not permitted")


@pytest.mark.parametrize("hard_links", [True, False])
def test_without_overwrite_a_file_written_meanwhile_by_another_program_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hard_links: bool
) -> None:
    path = tmp_path / "cells_labels.tif"
    theirs = b"another program's labels"
    real_imwrite = tifffile.imwrite

    def and_meanwhile(file: Any, data: Any, **kwargs: Any) -> None:
        real_imwrite(file, data, **kwargs)
        path.write_bytes(theirs)  # published by another program while this one wrote

    monkeypatch.setattr(tifffile, "imwrite", and_meanwhile)
    if not hard_links:
        monkeypatch.setattr(os, "link", _no_hard_links)
    with pytest.raises(FileExistsError):
        write_label_tiff(path, _labels((5, 6), 7), overwrite=False)
    assert path.read_bytes() == theirs
    assert _siblings(path) == ["cells_labels.tif"]


def test_without_hard_links_a_new_file_is_still_written_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "link", _no_hard_links)
    labels = _labels((3, 5, 6), 70_000)
    path = write_label_tiff(tmp_path / "new_labels.tif", labels, overwrite=False)
    np.testing.assert_array_equal(read_label_tiff(path)[0], labels)
    assert _siblings(path) == ["new_labels.tif"]


# --- interoperability ----------------------------------------------------------------------


def test_imagej_hyperstack_metadata_read_by_tifffile(tmp_path: Path) -> None:
    labels = _labels((2, 3, 8, 9), 400)
    path = write_label_tiff(tmp_path / "s.tif", labels, scale=(5, 2, 0.5, 0.25), units="µm")
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej
        page = tif.pages.first
        assert page.compression in (tifffile.COMPRESSION.ADOBE_DEFLATE, 8)
        assert tif.series[0].axes == "TZYX"
        meta = tif.imagej_metadata
        assert (meta["frames"], meta["slices"]) == (2, 3)
        assert meta["spacing"] == 2.0
        assert meta["finterval"] == 5.0
        assert meta["unit"] == "micron"
        assert meta["Info"].splitlines()[0] == "napari labels"
        assert page.tags["XResolution"].value == (4, 1)  # pixels per micron
        assert page.tags["YResolution"].value == (2, 1)
    np.testing.assert_array_equal(tifffile.imread(path), labels)


def test_uint32_is_ome_tiff_with_physical_sizes(tmp_path: Path) -> None:
    labels = _labels((3, 8, 9), 100_000)
    path = write_label_tiff(tmp_path / "big.tif", labels, scale=(2, 0.5, 0.5), units="nm")
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        assert not tif.is_imagej
        assert tif.series[0].axes == "ZYX"
        pixels = next(
            e for e in ElementTree.fromstring(tif.ome_metadata).iter() if e.tag.endswith("Pixels")
        )
    assert pixels.attrib["Type"] == "uint32"
    assert float(pixels.attrib["PhysicalSizeZ"]) == 2.0
    assert pixels.attrib["PhysicalSizeXUnit"] == "nm"
    np.testing.assert_array_equal(tifffile.imread(path), labels)


@pytest.mark.parametrize(
    ("stem", "xml_name"),
    [
        ("a\x01b\x1b[31m", "a\ufffdb\ufffd[31m"),  # control characters: no XML holds them
        ("<&\"'>", "<&\"'>"),  # escaped
        pytest.param(
            os.fsdecode(b"cells\xff"),  # a name that is not UTF-8 (Linux allows it)
            "cells\ufffd",
            marks=pytest.mark.skipif(sys.platform != "linux", reason="a Linux file name"),
        ),
    ],
)
def test_any_file_name_makes_a_readable_ome_tiff(tmp_path: Path, stem: str, xml_name: str) -> None:
    labels = _labels((5, 6), 70_000)  # uint32: an OME-TIFF, whose XML holds the name
    path = write_label_tiff(tmp_path / f"{stem}_labels.tif", labels)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        image = next(
            e for e in ElementTree.fromstring(tif.ome_metadata).iter() if e.tag.endswith("Image")
        )
        np.testing.assert_array_equal(tif.series[0].asarray(), labels)
    assert image.attrib["Name"] == f"{xml_name}_labels"
    data, info = read_label_tiff(path)
    np.testing.assert_array_equal(data, labels)
    assert info["marker"] is True and info["name"] == f"{stem}_labels"


def test_scikit_image_reads_the_files(tmp_path: Path) -> None:
    from skimage import io as skio

    for name, labels in [("a.tif", _labels((6, 7), 9)), ("b.tif", _labels((2, 6, 7), 80_000))]:
        path = write_label_tiff(tmp_path / name, labels)
        np.testing.assert_array_equal(skio.imread(path), labels)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cells_labels.tif", True),
        ("cells_label.tiff", True),
        ("img_cp_masks.tif", True),
        ("nuclei-mask.TIF", True),
        ("CELLS_SEG.TIFF", True),
        ("x_labels.ome.tif", True),
        ("labels.tif", False),  # no separator: not a name's ending
        ("img labels [1].tif", True),  # napari's name for a second "img labels" layer
        ("cellmask.tif", False),
        ("cells.tif", False),
        ("masked_cells.tif", False),
        ("segmentation.tif", False),
    ],
)
def test_label_names(name: str, expected: bool) -> None:
    assert has_label_name(name) is expected


def test_foreign_uint16_mask_is_labels_and_plain_images_are_not(tmp_path: Path) -> None:
    mask = _labels((20, 30), 700, np.uint16)
    tifffile.imwrite(tmp_path / "cells_cp_masks.tif", mask)  # as Cellpose writes its masks
    tifffile.imwrite(tmp_path / "cells.tif", mask)  # same data, name of an image
    tifffile.imwrite(tmp_path / "prob_labels.tif", mask * 0.5)
    tifffile.imwrite(tmp_path / "rgb_mask.tif", np.zeros((5, 6, 3), np.uint8), photometric="rgb")

    assert is_label_tiff(tmp_path / "cells_cp_masks.tif")
    assert not is_label_tiff(tmp_path / "cells.tif")
    assert not is_label_tiff(tmp_path / "prob_labels.tif")  # float
    assert not is_label_tiff(tmp_path / "rgb_mask.tif")
    data, info = read_label_tiff(tmp_path / "cells_cp_masks.tif")
    np.testing.assert_array_equal(data, mask)
    assert info["marker"] is False
    assert info["name"] == "cells_cp_masks"


def test_small_uncompressed_files_are_read_into_memory(tmp_path: Path) -> None:
    path = tmp_path / "cells_cp_masks.tif"  # Cellpose saves its masks uncompressed
    mask = _labels((16, 16), 50, np.uint16)
    tifffile.imwrite(path, mask)
    data, info = read_label_tiff(path)
    assert info["memory_mapped"] is False and not isinstance(data.base, np.memmap)
    os.replace(path, tmp_path / "moved.tif")  # the file is not held open
    np.testing.assert_array_equal(data, mask)


def test_large_uncompressed_files_are_memory_mapped_copy_on_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import napari_unsupervised_segmentation.io._label_tiff as label_tiff

    path = tmp_path / "stack_labels.tif"
    mask = _labels((4, 16, 16), 50, np.uint16)
    tifffile.imwrite(path, mask, photometric="minisblack")
    before = path.read_bytes()
    monkeypatch.setattr(label_tiff, "MEMORY_MAP_MIN_BYTES", mask.nbytes)  # "large"

    data, info = read_label_tiff(path)
    assert info["memory_mapped"] is True
    data[0, 0, 0] = 999  # painting works and stays in memory
    del data
    assert path.read_bytes() == before


def test_memory_mapped_labels_can_be_saved_over_their_own_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import napari_unsupervised_segmentation.io._label_tiff as label_tiff

    monkeypatch.setattr(label_tiff, "MEMORY_MAP_MIN_BYTES", 1)
    path = tmp_path / "edit_labels.tif"
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint16), photometric="minisblack")
    data, info = read_label_tiff(path)
    assert info["memory_mapped"] is True
    data[1, 2:4, 2:4] = 5
    write_label_tiff(path, data)  # fine on Linux and macOS; Windows refuses, see below
    np.testing.assert_array_equal(read_label_tiff(path)[0], data)


def test_big_endian_file_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "be_labels.tif"
    mask = _labels((6, 7), 3000, np.uint16)
    tifffile.imwrite(path, mask, byteorder=">")
    data, info = read_label_tiff(path)
    assert info["memory_mapped"] is False
    assert data.dtype.isnative
    np.testing.assert_array_equal(data, mask)


# --- wrong data ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (np.array([[0, 255]]), np.uint8),
        (np.array([[0, 256]], np.int64), np.uint16),
        (np.array([[0, 65536]]), np.uint32),
        (np.array([[0.0, 3.0]]), np.uint8),
        (np.array([[True]]), np.uint8),
    ],
)
def test_label_dtype_is_smallest_unsigned(labels: np.ndarray, expected: type) -> None:
    assert label_dtype(labels) == expected


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array([[0, -3]]), ">= 0"),
        (np.array([[0.0, 1.5]]), "whole numbers"),
        (np.array([[0.0, np.nan]]), "NaN"),
        (np.array([[0, 2**32]], np.int64), "uint32"),
        (np.array([["a"]]), "integers"),
        (np.zeros((0, 3), np.uint8), "empty"),
    ],
)
def test_wrong_data_is_refused_without_a_file(
    tmp_path: Path, labels: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        write_label_tiff(tmp_path / "bad.tif", labels)
    assert _siblings(tmp_path / "bad.tif") == []


@pytest.mark.parametrize(
    ("name", "shape", "kwargs", "message"),
    [
        ("a.png", (4, 4), {}, r"\.tif"),
        ("a.tif", (4,), {}, "2 to 5 dimensions"),
        ("a.tif", (1, 1, 1, 1, 2, 2), {}, "2 to 5 dimensions"),
        ("a.tif", (2, 4, 4), {"axes": "YXZ"}, "end in YX"),
        ("a.tif", (2, 4, 4), {"axes": "YX"}, "TZCYX"),
        ("a.tif", (2, 4, 4), {"axes": "QYX"}, "TZCYX"),
        ("a.tif", (2, 2, 4, 4), {"axes": "ZZYX"}, "distinct"),
        ("a.tif", (2, 4, 4), {"scale": (1, 1)}, "scale"),
        ("a.tif", (4, 4), {"scale": (1, -1)}, "scale"),
        ("a.tif", (4, 4), {"units": "parsec"}, "unit"),
    ],
)
def test_wrong_arguments_are_refused(
    tmp_path: Path, name: str, shape: tuple[int, ...], kwargs: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        write_label_tiff(tmp_path / name, np.ones(shape, np.uint8), **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_refused_data_leaves_an_existing_file_alone(tmp_path: Path) -> None:
    path = write_label_tiff(tmp_path / "keep.tif", np.ones((4, 4), np.uint8))
    before = path.read_bytes()
    with pytest.raises(ValueError, match=">= 0"):
        write_label_tiff(path, -np.ones((4, 4), np.int32))
    assert path.read_bytes() == before


# --- failures while writing ----------------------------------------------------------------


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failure_midway_keeps_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    path = write_label_tiff(tmp_path / "old_labels.tif", _labels((5, 6), 7))
    before = path.read_bytes()

    def fail_midway(file: Any, data: Any, **kwargs: Any) -> None:
        file.write(b"II*\x00" + b"\x00" * 100)  # a partial TIFF
        raise error

    monkeypatch.setattr(tifffile, "imwrite", fail_midway)
    with pytest.raises(type(error)):
        write_label_tiff(path, _labels((5, 6), 9))
    assert path.read_bytes() == before
    assert _siblings(path) == ["old_labels.tif"]


def test_a_file_that_cannot_be_replaced_is_named_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_label_tiff(tmp_path / "open_labels.tif", _labels((5, 6), 7))
    before = path.read_bytes()

    def refuse(source: Any, target: Any) -> None:  # Windows, for a file mapped or open
        raise PermissionError(13, "Access is denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError, match="open_labels.tif.*save under another name"):
        write_label_tiff(path, _labels((5, 6), 9))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _siblings(path) == ["open_labels.tif"]


_STALLED_WRITER = """
import sys, time
import numpy as np
import tifffile
from napari_unsupervised_segmentation.io import write_label_tiff

def stall(file, data, **kwargs):
    file.write(b"II*\\x00")  # the start of a TIFF, and no more
    file.flush()
    print("writing", flush=True)
    time.sleep(600)

tifffile.imwrite = stall
write_label_tiff(sys.argv[1], np.ones((4, 4), np.uint8))
"""


def _child_environment() -> dict[str, str]:
    """The environment of a child Python that imports this copy of the package."""
    import napari_unsupervised_segmentation

    source = str(Path(napari_unsupervised_segmentation.__file__).parents[1])
    paths = [source, *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


@pytest.mark.skipif(os.name == "nt", reason="Windows cannot tell a writer still runs")
def test_a_temporary_file_of_a_killed_writer_is_removed_when_the_file_is_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cells_labels.tif"
    writer = subprocess.Popen(
        [sys.executable, "-c", _STALLED_WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env=_child_environment(),
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "writing\n"
    finally:
        writer.send_signal(signal.SIGKILL)  # no cleanup can run
        writer.wait()
    (left,) = [name for name in _siblings(path) if name.endswith(".tmp")]
    assert left.startswith(f".cells_labels.tif.{writer.pid}-")
    # temporary files of a writer that runs (this process), or of another file, are kept
    running = left.replace(f".{writer.pid}-", f".{os.getpid()}-")
    other_file = left.replace("cells_labels", "other_labels")
    for name in (running, other_file):
        (tmp_path / name).write_bytes(b"II*\x00")
    write_label_tiff(path, np.ones((4, 4), np.uint8))
    assert _siblings(path) == sorted([other_file, running, "cells_labels.tif"])
    np.testing.assert_array_equal(read_label_tiff(path)[0], np.ones((4, 4)))


def test_labels_too_big_for_a_classic_tiff_are_written_as_ome_bigtiff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # beyond 4 GiB tifffile's ImageJ writer truncates the file (with a warning) instead of
    # failing: the size decides before writing (a small limit stands in for 3.75 GiB)
    from napari_unsupervised_segmentation.io import _label_tiff

    monkeypatch.setattr(_label_tiff, "CLASSIC_TIFF_MAX_BYTES", 90)
    small = write_label_tiff(tmp_path / "small.tif", _labels((2, 5, 6), 9))  # 60 bytes
    with tifffile.TiffFile(small) as tif:
        assert tif.is_imagej and not tif.is_bigtiff
    labels = _labels((3, 5, 6), 9)  # 90 bytes
    path = write_label_tiff(tmp_path / "huge.tif", labels, scale=(2, 1, 1))
    assert _siblings(path) == ["huge.tif", "small.tif"]  # no temporary file left
    with tifffile.TiffFile(path) as tif:
        assert tif.is_bigtiff
        assert tif.is_ome
    data, info = read_label_tiff(path)
    np.testing.assert_array_equal(data, labels)
    assert info["marker"] is True
    assert info["scale"] == (2.0, 1.0, 1.0)


def test_ome_sizes_in_different_units_are_read_in_one(tmp_path: Path) -> None:
    # OME gives each axis its unit: Z in nm beside X and Y in µm, the interval in ms
    path = tmp_path / "cells_labels.ome.tif"
    tifffile.imwrite(path, _labels((2, 3, 8, 9), 5).astype(np.uint8), ome=True,
                     metadata={"axes": "TZYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2,
                               "PhysicalSizeZ": 500, "PhysicalSizeZUnit": "nm",
                               "TimeIncrement": 100, "TimeIncrementUnit": "ms"})  # fmt: skip
    _, info = read_label_tiff(path)
    assert info["units"] == "micrometer"
    np.testing.assert_allclose(info["scale"], (0.1, 0.5, 0.2, 0.2))


def test_imagej_units_of_y_z_and_time_are_read_in_one(tmp_path: Path) -> None:
    path = tmp_path / "series_labels.tif"
    tifffile.imwrite(path, _labels((2, 3, 8, 9), 5).astype(np.uint8), imagej=True,
                     resolution=(2.0, 2.0),
                     metadata={"axes": "TZYX", "unit": "um", "spacing": 500.0, "zunit": "nm",
                               "finterval": 5.0, "tunit": "min"})  # fmt: skip
    _, info = read_label_tiff(path)
    assert info["units"] == "micrometer"
    np.testing.assert_allclose(info["scale"], (300.0, 0.5, 0.5, 0.5))
    # Fiji writes µ as an ASCII escape; a unit not known here drops that size
    tifffile.imwrite(path, _labels((2, 8, 9), 5).astype(np.uint8), imagej=True,
                     resolution=(2.0, 2.0),
                     metadata={"axes": "TYX", "unit": "um", "finterval": 2.5,
                               "tunit": "\\u00B5s", "yunit": "furlong"})  # fmt: skip
    _, info = read_label_tiff(path)
    np.testing.assert_allclose(info["scale"], (2.5e-6, 1.0, 0.5))


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])  # ImageJ and OME layout
def test_a_layers_units_per_axis_are_saved_in_one_length_unit_and_seconds(
    tmp_path: Path, dtype: type
) -> None:

    labels = _labels((2, 3, 8, 9), 5).astype(dtype)
    meta = {
        "scale": np.array([100.0, 500.0, 0.2, 0.2]),  # a layer's scale is an array
        "units": ("millisecond", "nanometer", "micrometer", "micrometer"),  # napari's names
        "axis_labels": ("t", "z", "y", "x"),
    }
    [written] = write_labels(str(tmp_path / "cells_labels.tif"), labels, meta)
    data, info = read_label_tiff(written)
    np.testing.assert_array_equal(data, labels)
    assert info["units"] == "micrometer"
    np.testing.assert_allclose(info["scale"], (0.1, 0.5, 0.2, 0.2))
    # a spatial axis in pixels: no common unit, the sizes are kept as they are
    meta["units"] = ("second", "pixel", "micrometer", "micrometer")
    [written] = write_labels(str(tmp_path / "mixed_labels.tif"), labels, meta)
    _, info = read_label_tiff(written)
    assert info["units"] is None
    np.testing.assert_allclose(info["scale"], (100.0, 500.0, 0.2, 0.2))


def test_one_bit_masks_are_labels_0_and_1(tmp_path: Path) -> None:
    from PIL import Image

    mask = np.zeros((12, 20), bool)
    mask[3:9, 5:15] = True
    tifffile.imwrite(tmp_path / "tf_mask.tif", mask)  # tifffile writes bool as 1 bit
    Image.fromarray(mask).convert("1").save(tmp_path / "pil_mask.tif")
    for name in ("tf_mask.tif", "pil_mask.tif"):
        assert is_label_tiff(tmp_path / name)
        data, _ = read_label_tiff(tmp_path / name)
        assert data.dtype == np.uint8
        np.testing.assert_array_equal(data, mask)


def test_a_compression_tifffile_alone_cannot_read_asks_for_imagecodecs(tmp_path: Path) -> None:
    import importlib.util

    from PIL import Image

    if importlib.util.find_spec("imagecodecs") is not None:
        pytest.skip("imagecodecs is installed: LZW files simply read")
    path = tmp_path / "qupath_labels.tif"  # LZW: PIL's, OpenCV's and QuPath's usual choice
    Image.fromarray(np.eye(8, dtype=np.uint8)).save(path, compression="tiff_lzw")
    assert is_label_tiff(path)
    with pytest.raises(LabelTiffError, match="qupath_labels.tif.*pip install imagecodecs"):
        read_label_tiff(path)


def test_a_pixel_size_a_tiff_cannot_hold_is_refused_with_advice(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nm instead of m"):
        write_label_tiff(tmp_path / "tiny.tif", _labels((4, 5), 3), scale=(1e-10, 1e-10), units="m")
    assert not list(tmp_path.iterdir())
    path = write_label_tiff(tmp_path / "tiny.tif", _labels((4, 5), 3), scale=(0.1, 0.1), units="nm")
    assert read_label_tiff(path)[1]["scale"] == (0.1, 0.1)


def test_labels_converted_to_32_bit_in_fiji_are_not_claimed(tmp_path: Path) -> None:
    # Fiji keeps the Info property (and so the marker) through Image > Type > 32-bit
    path = write_label_tiff(tmp_path / "cells.tif", _labels((20, 30), 9))
    with tifffile.TiffFile(path) as tif:
        info = tif.imagej_metadata["Info"]
    assert is_label_tiff(path)
    as_float = tmp_path / "cells_labels.tif"
    tifffile.imwrite(
        as_float,
        _labels((20, 30), 9).astype(np.float32),
        imagej=True,
        metadata={"axes": "YX", "Info": info},
    )
    assert read_label_tiff(as_float)[1]["marker"] is True
    assert not is_label_tiff(as_float)  # napari cannot show floats as labels


# --- corrupt and truncated files -------------------------------------------------------------


def test_not_a_tiff_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "junk_labels.tif"
    path.write_bytes(b"this is not a TIFF file at all")
    with pytest.raises(LabelTiffError, match="junk_labels.tif"):
        read_label_tiff(path)
    assert not is_label_tiff(path)


@pytest.mark.parametrize("high", [300, 100_000])  # ImageJ and OME layout
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_truncated_file_names_the_file(tmp_path: Path, high: int, keep: float) -> None:
    raw = write_label_tiff(tmp_path / "full.tif", _labels((4, 20, 30), high)).read_bytes()
    path = tmp_path / "cut_labels.tif"
    path.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(LabelTiffError, match="cut_labels.tif"):
        read_label_tiff(path)


def test_truncated_file_is_still_recognised_from_its_header(tmp_path: Path) -> None:
    raw = write_label_tiff(tmp_path / "full.tif", _labels((4, 20, 30), 300)).read_bytes()
    path = tmp_path / "cut.tif"
    path.write_bytes(raw[: len(raw) // 2])
    assert is_label_tiff(path)  # only the header is read


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_label_tiff(tmp_path / "nothing_labels.tif")


# --- npe2 reader and writer functions ------------------------------------------------------


def test_plugin_reader_and_writer_round_trip(tmp_path: Path) -> None:
    labels = _labels((2, 3, 10, 12), 90_000)
    meta = {
        "name": "cells",
        "scale": [4.0, 2.0, 0.5, 0.5],
        "axis_labels": ("t", "z", "y", "x"),
        "units": ("second", "micrometer", "micrometer", "micrometer"),
        "multiscale": False,
    }
    [written] = write_labels(str(tmp_path / "cells.tif"), labels, meta)
    reader = get_reader(written)
    assert reader is not None
    [(data, layer_meta, layer_type)] = reader(written)

    assert layer_type == "labels"
    np.testing.assert_array_equal(data, labels)
    assert layer_meta["name"] == "cells"
    assert layer_meta["scale"] == (4.0, 2.0, 0.5, 0.5)
    assert layer_meta["axis_labels"] == ("t", "z", "y", "x")
    assert layer_meta["units"] == ("pixel", "micrometer", "micrometer", "micrometer")


def test_plugin_writer_defaults_without_axis_labels(tmp_path: Path) -> None:
    meta = {"scale": [-2.0, 1.0, 1.0], "axis_labels": ("-3", "-2", "-1"), "units": None}
    [written] = write_labels(str(tmp_path / "v.tiff"), _labels((3, 4, 5), 2), meta)
    _, info = read_label_tiff(written)
    assert info["axes"] == "ZYX"
    assert info["scale"] == (2.0, 1.0, 1.0)


def test_plugin_writer_refuses_negative_labels(tmp_path: Path) -> None:
    with pytest.raises(LabelsNotSavedError, match=r"n\.tif.*>= 0"):
        write_labels(str(tmp_path / "n.tif"), np.array([[-1, 0]]), {"scale": [1, 1]})
    assert list(tmp_path.iterdir()) == []


def test_plugin_reader_claims_only_label_tiffs(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "image.tif", _labels((5, 5), 9, np.uint16))
    tifffile.imwrite(tmp_path / "a_masks.tif", _labels((5, 5), 9, np.uint16))
    (tmp_path / "broken_seg.tif").write_bytes(b"II*\x00garbage")
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")

    assert get_reader(str(tmp_path / "image.tif")) is None
    assert get_reader(str(tmp_path / "broken.tif")) is None
    assert get_reader(str(tmp_path / "notes_labels.txt")) is None
    assert get_reader([str(tmp_path / "a_masks.tif"), str(tmp_path / "image.tif")]) is None
    assert get_reader(str(tmp_path / "a_masks.tif")) is not None
    reader = get_reader(str(tmp_path / "broken_seg.tif"))
    assert reader is not None  # claimed, so that the error names the file
    with pytest.raises(ValueError, match="broken_seg.tif"):
        reader(str(tmp_path / "broken_seg.tif"))
