"""Sample data: bundled with scikit-image, as napari LayerData and as plain arrays."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unsupervised_segmentation._napari.sample_data import (
    SAMPLES,
    cell,
    coffee,
    ihc,
    load_sample,
    stack,
)


@pytest.mark.parametrize(
    ("loader", "name", "shape"),
    [(coffee, "coffee", (400, 600, 3)), (ihc, "ihc", (512, 512, 3))],
)
def test_layer_data(loader, name, shape):
    [(data, meta, kind)] = loader()
    assert kind == "image"
    assert meta == {"name": name, "rgb": True}
    assert data.shape == shape and data.dtype == np.uint8


def test_load_sample_returns_array_and_axes():
    assert set(SAMPLES) == {"coffee", "ihc", "cell", "stack"}
    image, axes = load_sample("ihc")
    assert axes == "YXS"
    np.testing.assert_array_equal(image, ihc()[0][0])


def test_microscopy_samples_are_grayscale_and_a_16_bit_two_channel_stack():
    [(gray, meta, _)] = cell()
    assert gray.ndim == 2 and meta == {"name": "cell"}
    [(zcyx, meta, _)] = stack()
    assert zcyx.shape == (6, 2, 160, 160) and zcyx.dtype == np.uint16
    assert meta["axis_labels"] == ("z", "c", "y", "x")
    np.testing.assert_array_equal(zcyx, load_sample("stack")[0])  # seeded: always the same
    assert zcyx.max() > 2000 and len(np.unique(zcyx)) > 1000  # a 16-bit range, with noise
    planes = zcyx[:, 0].reshape(6, -1)
    assert not np.array_equal(planes[0], planes[1])  # objects change from plane to plane


def test_load_sample_unknown_name():
    with pytest.raises(ValueError, match="coffee, ihc"):
        load_sample("lena")


def test_samples_open_in_napari_through_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-unsupervised-segmentation", "coffee")
    viewer.open_sample("napari-unsupervised-segmentation", "ihc")
    viewer.open_sample("napari-unsupervised-segmentation", "cell")
    viewer.open_sample("napari-unsupervised-segmentation", "stack")
    assert [layer.name for layer in viewer.layers] == ["coffee", "ihc", "cell", "stack"]
    assert [layer.rgb for layer in viewer.layers] == [True, True, False, False]
    assert viewer.layers["stack"].ndim == 4
