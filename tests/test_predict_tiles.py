"""A model labels lazy and large images tile by tile, into any writable array."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import zarr
from test_fitted import FAST, _image

from napari_unsupervised_segmentation import fit


@pytest.fixture(scope="module")
def model():
    return fit(_image(), FAST)


@pytest.fixture(scope="module")
def two_channel_model():
    rng = np.random.default_rng(5)
    two = rng.random((2, 30, 34)).astype(np.float32)  # (C, H, W)
    two[0, 5:20, 5:20] += 2
    return fit(two, FAST, channel_axis=0)


class _Reads:
    """An array that records the region of every read and refuses to be loaded whole."""

    def __init__(self, array) -> None:
        self.array = array
        self.shape = array.shape
        self.dtype = array.dtype
        self.ndim = len(array.shape)
        self.size = array.size
        self.regions: list[tuple[int, ...]] = []

    def __getitem__(self, key):
        block = np.asarray(self.array[key])
        self.regions.append(block.shape)
        return block

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole image was loaded")


def _zarr(array: np.ndarray, chunks) -> zarr.Array:
    stored = zarr.create_array(
        zarr.storage.MemoryStore(), shape=array.shape, chunks=chunks, dtype=array.dtype
    )
    stored[...] = array
    return stored


def test_a_zarr_image_is_read_one_tile_and_its_halo_at_a_time(model):
    image = np.stack([_image(1), _image(2)])  # two planes
    expected = model.predict(image)
    source = _Reads(_zarr(image, (1, 16, 16)))
    labels = model.predict(source, tile_shape=(16, 20))
    np.testing.assert_array_equal(labels, expected)
    halo = model.halo
    rows, cols = zip(*source.regions, strict=True)
    assert max(rows) == 16 + 2 * halo and max(cols) == 20 + 2 * halo  # a tile and its halo
    # 3 x 3 tiles in each of the two planes, each read once
    assert len(source.regions) == 2 * 3 * 3


def test_labels_written_into_a_zarr_array_equal_those_in_memory(model, tmp_path):
    image = _image(3, (70, 90))
    expected = model.predict(image)
    out = zarr.create_array(
        tmp_path / "labels.zarr", shape=image.shape, chunks=(32, 32), dtype=np.uint8
    )
    returned = model.predict(_zarr(image, (25, 25)), tile_shape=(32, 32), out=out)
    assert returned is out
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "labels.zarr")[...], expected)
    memmap = np.lib.format.open_memmap(tmp_path / "labels.npy", "w+", np.uint16, image.shape)
    model.predict(image, out=memmap)
    np.testing.assert_array_equal(memmap, expected)
    with pytest.raises(ValueError, match=r"out has shape \(3, 4\)"):
        model.predict(image, out=np.zeros((3, 4), np.uint8))
    with pytest.raises(ValueError, match="out has dtype float32"):
        model.predict(image, out=np.zeros(image.shape, np.float32))


def test_a_dask_image_and_a_multiscale_list_give_the_same_labels(model):
    image = _image(4, (64, 80))
    expected = model.predict(image)
    lazy = da.from_array(image, chunks=(20, 30))
    np.testing.assert_array_equal(model.predict(lazy, tile_shape=(24, 24)), expected)
    np.testing.assert_array_equal(model.predict(lazy), expected)
    levels = [lazy, lazy[::2, ::2], lazy[::4, ::4]]  # napari multiscale: full resolution first
    np.testing.assert_array_equal(model.predict(levels, tile_shape=(30, 50)), expected)
    from napari.layers import Image

    layer = Image(levels, multiscale=True)  # what a napari layer of a large image holds
    np.testing.assert_array_equal(model.predict(layer.data), expected)


def test_the_own_range_of_a_plane_read_in_tiles_is_that_of_the_whole(model, two_channel_model):
    dim = (_image(5, (60, 70)) // 3).astype(np.uint16)
    whole = model.predict(dim, normalise="image", tile_shape=dim.shape)
    for tile_shape in ((16, 16), (7, 70)):
        tiled = model.predict(_Reads(dim), normalise="image", tile_shape=tile_shape)
        np.testing.assert_array_equal(tiled, whole)
    rng = np.random.default_rng(6)
    stack = rng.random((2, 2, 30, 34)) * 50  # (Z, C, H, W) float64
    stack[:, 0, 5:20, 5:20] += 100
    whole = two_channel_model.predict(stack, channel_axis=1, normalise="image", tile_shape=(30, 34))
    tiled = two_channel_model.predict(
        _Reads(stack), channel_axis=1, normalise="image", tile_shape=(8, 11)
    )
    np.testing.assert_array_equal(tiled, whole)
    lazy = da.from_array(stack, chunks=(1, 1, 10, 10))
    np.testing.assert_array_equal(
        two_channel_model.predict(lazy, channel_axis=1, tile_shape=(9, 9)),
        two_channel_model.predict(stack, channel_axis=1),
    )


def test_a_model_that_stretches_contrast_scales_each_plane_to_its_own_range() -> None:
    from napari_unsupervised_segmentation.core.fitted import _Plane, _plane_ranges
    from napari_unsupervised_segmentation.core.normalize import prepare_image

    rng = np.random.default_rng(3)
    bright = _image(7, (48, 56))
    dim = (bright // 8).astype(np.uint8)  # the same scene, an eighth as bright
    dim[:20] = 0  # and many ties, as a dark background gives
    for image in (dim, dim.astype(np.uint16), rng.integers(0, 3000, (40, 30)).astype(np.uint16)):
        expected = prepare_image(image, stretch=True).ranges
        plane = _Plane(image, {}, None)
        assert _plane_ranges(plane, False, (16, 16), stretch=True) == expected
    model = fit(bright, FAST, stretch_contrast=True)
    whole = model.predict(dim, tile_shape=dim.shape)
    np.testing.assert_array_equal(model.predict(_Reads(dim), tile_shape=(16, 16)), whole)
    # stretched, an image twice as bright as another gets exactly its classes
    half = bright // 2
    np.testing.assert_array_equal(model.predict(half * 2), model.predict(half))
    unstretched = fit(bright, FAST)
    assert np.any(unstretched.predict(half * 2) != unstretched.predict(half))
