"""Lazy layers (zarr, dask) are read region by region by the runs that train one model or
apply one, never copied whole, on a real (headless) napari viewer."""

from __future__ import annotations

from collections import Counter

import dask.array as da
import numpy as np
import pytest
import zarr
from test_predict_tiles import _Reads

from napari_unsupervised_segmentation import SegmentationParams
from napari_unsupervised_segmentation._napari.layers import LazyView, layer_input
from napari_unsupervised_segmentation._napari.widget import ONE_MODEL
from napari_unsupervised_segmentation.core.plan import reads_lazily

PLUGIN = "napari-unsupervised-segmentation"
WIDGET = "Segment image"
#: 100 classes: the model's tiles are 128 x 128 (2 pixels of halo), smaller than a plane.
SETTINGS = SegmentationParams(
    max_iter=3, min_classes=0, n_superpixels=50, max_classes=100, seed=0, device="cpu"
)
TIMEOUT = 120_000  # ms; generous, the CPU is shared


def _stack(shape=(3, 160, 200)) -> np.ndarray:
    """Planes of noise with a bright square, as uint8 (its range needs no reading)."""
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 60, shape).astype(np.uint8)
    stack[:, 40:110, 50:140] += 150
    return stack


def _zarr(array: np.ndarray, chunks: tuple[int, ...] | None = None) -> zarr.Array:
    """``array`` in a zarr array in memory (chunks: a plane's 64 x 64 blocks)."""
    if chunks is None:
        chunks = (1,) * (array.ndim - 2) + (64, 64)
    stored = zarr.create_array(
        zarr.storage.MemoryStore(), shape=array.shape, chunks=chunks, dtype=array.dtype
    )
    stored[...] = array
    return stored


def test_numpy_arrays_are_copied_and_other_array_likes_read_lazily():
    stack = _stack((2, 8, 9))
    assert not reads_lazily(stack)
    assert not reads_lazily(stack[0])  # a numpy view too
    assert reads_lazily(_zarr(stack))
    assert reads_lazily(da.from_array(stack, chunks=(1, 8, 9)))
    assert not reads_lazily([[1, 2], [3, 4]])  # no shape or dtype


def test_a_lazy_view_reads_what_numpy_indexing_gives():
    source = np.arange(4 * 5 * 6 * 3).reshape(4, 5, 6, 3)
    reads = _Reads(_zarr(source, source.shape))
    view = LazyView.of(reads, (slice(None), 2, slice(1, 6), slice(None)))  # (4, 5, 3)
    assert view.shape == (4, 5, 3) and view.dtype == source.dtype and reads.regions == []
    moved = view.transposed((1, 0, 2))  # (5, 4, 3)
    expected = np.transpose(source[:, 2, 1:6, :], (1, 0, 2))
    assert moved.shape == (5, 4, 3)
    np.testing.assert_array_equal(moved[1:4:2, 3], expected[1:4:2, 3])
    assert reads.regions == [(2, 3)]  # only that region
    np.testing.assert_array_equal(moved.view((slice(2, 5), ...))[..., 0], expected[2:5, ..., 0])
    np.testing.assert_array_equal(np.asarray(moved), expected)


def test_a_lazy_layer_that_would_not_fit_memory_is_viewed_not_refused(
    make_napari_viewer, monkeypatch
):
    from napari_unsupervised_segmentation.core import memory

    viewer = make_napari_viewer()
    stack = _stack((3, 48, 56))
    lazy = viewer.add_image(_zarr(stack), name="lazy", contrast_limits=(0, 255))
    copied = viewer.add_image(stack, name="copied")
    monkeypatch.setattr(memory, "available_memory", lambda: 100)  # no copy fits
    with pytest.raises(MemoryError, match="a copy of a stack of 3 48 x 56 planes needs about"):
        layer_input(copied, viewer.dims, params=SETTINGS, all_planes=True, crops_allowed=True)
    inp = layer_input(
        lazy,
        viewer.dims,
        params=SETTINGS,
        all_planes=True,
        crops_allowed=True,
        one_model=True,
        model_labels=np.uint8,
    )
    assert inp.lazy and inp.image.shape == (3, 48, 56)
    assert inp.disk_labels == np.uint8  # its labels go to disk
    # each plane on its own trains it whole: a copy, as for numpy
    monkeypatch.setattr(memory, "available_memory", lambda: None)
    each = layer_input(lazy, viewer.dims, params=SETTINGS, all_planes=True)
    assert not each.lazy and isinstance(each.image, np.ndarray)
    np.testing.assert_array_equal(each.image, stack)


@pytest.fixture
def viewer_widget(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    widget.update_interval = 0.0
    yield viewer, widget
    run = widget._life.run
    if run is not None:
        run.stop.set()
        assert run.done.wait(30)


def test_all_planes_of_a_zarr_layer_are_read_by_crops_and_tiles(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    stack = _stack()  # 3 planes of 160 x 200
    reads = _Reads(_zarr(stack))
    layer = viewer.add_image(reads, name="lazy", contrast_limits=(0, 255))
    widget.image.value = layer
    widget.planes.value = ONE_MODEL
    widget.params = SETTINGS
    reads.regions.clear()  # what the viewer read to show the layer
    widget.run()
    qtbot.waitUntil(lambda: not widget.is_running, timeout=TIMEOUT)
    model = widget.model
    assert model is not None and model.default_tile_shape == (128, 128)
    labels = viewer.layers["lazy labels"].data
    for z in range(3):
        np.testing.assert_array_equal(labels[z], model.predict(stack[z]))
    crops = [shape for shape in reads.regions if shape == (128, 128)]
    tiles = [shape for shape in reads.regions if shape != (128, 128)]
    # the crops trained on, read once each: 2 x 2 crops of 128 x 128 cover a plane
    assert len(crops) == 3 * 2 * 2
    # a plane is labelled in tiles of 128 x 128 read with the 2 pixels of halo around each:
    # every plane once, the plane shown also for each live update
    labelled = Counter(tiles)
    assert set(labelled) == {(130, 130), (130, 74), (34, 130), (34, 74)}
    assert len(set(labelled.values())) == 1 and labelled[(130, 130)] >= 3
    assert all(max(region) < 200 for region in reads.regions)  # never a whole plane


def test_apply_model_reads_a_multiscale_layer_tile_by_tile(viewer_widget, qtbot):
    from napari_unsupervised_segmentation import fit

    viewer, widget = viewer_widget
    stack = _stack()
    widget.model = fit(stack[0], SETTINGS)
    reads = _Reads(_zarr(stack))
    levels = [reads, np.ascontiguousarray(stack[:, ::4, ::4])]  # full resolution first
    layer = viewer.add_image(levels, name="pyramid", multiscale=True, contrast_limits=(0, 255))
    widget.image.value = layer
    widget.planes.value = ONE_MODEL
    reads.regions.clear()  # what the viewer read to show the layer
    widget.apply_model()
    qtbot.waitUntil(lambda: not widget.is_running, timeout=TIMEOUT)
    labels = viewer.layers["pyramid labels"].data
    assert labels.shape == (3, 160, 200)
    for z in range(3):
        np.testing.assert_array_equal(labels[z], widget.model.predict(stack[z]))
    tiles = Counter(reads.regions)  # each plane once, in tiles with their halo
    assert tiles == {(130, 130): 3, (130, 74): 3, (34, 130): 3, (34, 74): 3}


def test_the_console_reads_all_planes_of_a_dask_layer_by_crops_and_tiles(make_napari_viewer):
    from napari_unsupervised_segmentation._napari.console import segment_layer

    viewer = make_napari_viewer()
    stack = _stack()
    reads = _Reads(_zarr(stack))
    layer = viewer.add_image(
        da.from_array(reads, chunks=(1, 160, 200), asarray=True), contrast_limits=(0, 255)
    )
    reads.regions.clear()
    labels = segment_layer(layer, viewer, SETTINGS, planes="all")
    assert labels.data.shape == (3, 160, 200) and labels.data.min() >= 1
    assert reads.regions and all(max(region) < 200 for region in reads.regions)


def test_volumes_of_a_lazy_layer_are_viewed_one_at_a_time(make_napari_viewer):
    viewer = make_napari_viewer()
    volumes = _stack((2, 3, 20, 24))  # two volumes of 3 x 20 x 24
    reads = _Reads(_zarr(volumes))
    layer = viewer.add_image(reads, name="volumes", contrast_limits=(0, 255))
    reads.regions.clear()
    inp = layer_input(layer, viewer.dims, params=SETTINGS, volume=True, one_model=True)
    assert inp.lazy and reads.regions == []
    volume, channel_axis = inp.unit_image(1)
    assert isinstance(volume, LazyView) and channel_axis is None and reads.regions == []
    np.testing.assert_array_equal(np.asarray(volume), volumes[1])
    assert reads.regions == [(3, 20, 24)]


def test_a_large_zarr_plane_is_trained_on_crops_read_one_by_one(viewer_widget, qtbot, monkeypatch):
    from napari_unsupervised_segmentation.core import memory

    viewer, widget = viewer_widget
    settings = SETTINGS.replace(max_classes=8)  # crops take less memory than the plane
    image = _stack((1, 1000, 1100))[0]
    reads = _Reads(_zarr(image))
    layer = viewer.add_image(reads, name="plane", contrast_limits=(0, 255))
    _, other = memory.estimate_bytes(1000, 1100, settings, n_input_channels=1)
    monkeypatch.setattr(memory, "available_memory", lambda: other - 1)  # not whole
    widget.image.value = layer
    widget.params = settings
    reads.regions.clear()  # what the viewer read to show the layer
    widget.run()
    qtbot.waitUntil(lambda: not widget.is_running, timeout=TIMEOUT)
    assert "on crops" in widget.status.value, widget.status.value
    model = widget.model
    np.testing.assert_array_equal(viewer.layers["plane labels"].data, model.predict(image))
    # the crops trained on: 8 x 9 crops of 128 x 128 cover the plane, each read once
    read = Counter(reads.regions)
    assert read.pop((128, 128)) == 8 * 9
    # the rest: tiles of 512 x 512 with 2 pixels of halo where they have neighbours, each
    # as often (every labelling of the plane: live updates, then the final labels)
    assert model.default_tile_shape == (512, 512) and model.halo == 2
    rows, cols = (514, 490), (514, 516, 78)  # 0-514, 510-1000; 0-514, 510-1026, 1022-1100
    assert set(read) == {(height, width) for height in rows for width in cols}
    assert len(set(read.values())) == 1
