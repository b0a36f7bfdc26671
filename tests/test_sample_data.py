"""Sample data: bundled with scikit-image, as napari LayerData and as plain arrays."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unsupervised_segmentation._sample_data import SAMPLES, coffee, ihc, load_sample


@pytest.mark.parametrize(
    ("loader", "name", "shape"),
    [(coffee, "coffee", (400, 600, 3)), (ihc, "ihc", (512, 512, 3))],
)
def test_layer_data(loader, name, shape):
    [(data, meta, kind)] = loader()
    assert kind == "image"
    assert meta == {"name": name, "rgb": True}
    assert data.shape == shape and data.dtype == np.uint8


def test_load_sample_returns_array_and_channel_axis():
    assert set(SAMPLES) == {"coffee", "ihc"}
    image, channel_axis = load_sample("ihc")
    assert channel_axis == -1
    np.testing.assert_array_equal(image, ihc()[0][0])


def test_load_sample_unknown_name():
    with pytest.raises(ValueError, match="coffee, ihc"):
        load_sample("lena")


def test_samples_open_in_napari_through_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-unsupervised-segmentation", "coffee")
    viewer.open_sample("napari-unsupervised-segmentation", "ihc")
    assert [layer.name for layer in viewer.layers] == ["coffee", "ihc"]
    assert all(layer.rgb for layer in viewer.layers)
