"""The widget's model buttons (Save model..., Load model..., Apply model), all planes with
one model and large layers, on a real (headless) napari viewer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unsupervised_segmentation import SegmentationParams
from napari_unsupervised_segmentation._napari.layers import layer_input
from napari_unsupervised_segmentation._napari.sample_data import load_sample
from napari_unsupervised_segmentation._napari.widget import ONE_MODEL

FAST = SegmentationParams(max_iter=12, min_classes=0, n_superpixels=50, max_classes=8, seed=0)
TIMEOUT = 120_000  # ms; generous, the CPU is shared


def _image(shape=(32, 40), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.random(shape)
    img[8:24, 8:24] += 2.0
    return img


def _wait_done(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.is_running, timeout=TIMEOUT)


def _train(qtbot, widget, layer, params=FAST):
    widget.image.value = layer
    widget.params = params
    widget.run()
    _wait_done(qtbot, widget)


def _apply(qtbot, widget, layer):
    widget.image.value = layer
    widget.apply_model()
    _wait_done(qtbot, widget)
    return widget.labels_layer


def test_model_buttons_wait_for_a_model(viewer_widget):
    _, widget = viewer_widget
    assert widget.model is None
    assert not widget.save_button.enabled and not widget.apply_button.enabled
    assert widget.load_button.enabled


def test_save_and_load_round_trip_gives_the_same_labels(viewer_widget, qtbot, tmp_path):
    viewer, widget = viewer_widget
    image = _image()
    layer = viewer.add_image(image, name="img")
    _train(qtbot, widget, layer)
    model = widget.model
    assert model is not None and widget.save_button.enabled and widget.apply_button.enabled
    written = widget.save_model(tmp_path / "img.model")
    assert written == tmp_path / "img.model" and written.is_file()
    applied = _apply(qtbot, widget, layer).data.copy()
    np.testing.assert_array_equal(applied, model.predict(image))
    assert widget.status.value.startswith("Applied the model:")
    widget.model = None
    assert widget.load_model(written) is not None
    assert widget.model is not model
    np.testing.assert_array_equal(_apply(qtbot, widget, layer).data, applied)


def test_a_file_that_is_no_model_is_refused_with_a_message(viewer_widget, tmp_path):
    _, widget = viewer_widget
    (tmp_path / "notes.model").write_text("not a model")
    assert widget.load_model(tmp_path / "notes.model") is None
    assert widget.model is None and "cannot load a model" in widget.status.value


def test_apply_model_on_a_second_layer_gives_the_same_classes(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    image = _image()
    first = viewer.add_image(image, name="img")
    second = viewer.add_image(image[:, 6:], name="shifted")
    _train(qtbot, widget, first)
    model = widget.model
    labels = _apply(qtbot, widget, first).data.copy()
    shifted = _apply(qtbot, widget, second)
    assert shifted.name == "shifted labels"
    halo = model.halo  # a pixel's class depends on its neighbours this far away
    np.testing.assert_array_equal(shifted.data[:, halo:], labels[:, 6 + halo :])
    # the model of the last run stays: applying it again trains nothing
    assert widget.model is model


def test_all_planes_train_one_model_with_the_same_classes_in_every_plane(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    stack, _ = load_sample("stack")  # (6, 2, 160, 160) ZCYX
    stack = stack[:3, :, :64, :64]
    layer = viewer.add_image(stack, name="stack", axis_labels=("z", "c", "y", "x"))
    widget.image.value = layer
    assert widget.channel_axis.value == 1  # named c
    assert widget.planes.native.isVisibleTo(widget.native)
    widget.planes.value = ONE_MODEL
    _train(qtbot, widget, layer)
    model = widget.model
    assert model is not None
    labels = viewer.layers["stack labels"].data
    assert labels.shape == (3, 2, 64, 64)  # shown on both channels
    background = stack.max(axis=1) < 300
    common = []
    for z in range(3):
        expected = model.predict(stack[z], channel_axis=0)
        np.testing.assert_array_equal(labels[z, 0], expected)
        common.append(np.bincount(expected[background[z]]).argmax())
    assert len(set(common)) == 1  # the background has one class in every plane
    assert "one model" in widget.status.value and "all 3 planes" in widget.status.value


def test_a_layer_too_large_to_train_whole_goes_by_crops(make_napari_viewer, monkeypatch):
    from napari_unsupervised_segmentation.core import memory

    viewer = make_napari_viewer()
    layer = viewer.add_image(_image(), name="img")
    network, other = memory.estimate_bytes(32, 40, FAST, n_input_channels=1)
    monkeypatch.setattr(memory, "available_memory", lambda: other // 2)
    with pytest.raises(MemoryError, match="needs about"):  # training whole: refused
        layer_input(layer, viewer.dims, params=FAST)
    inp = layer_input(layer, viewer.dims, params=FAST, crops_allowed=True)
    assert inp.by_crops  # the copy fits: trained on crops
    monkeypatch.setattr(memory, "available_memory", lambda: 100)
    with pytest.raises(MemoryError, match="a copy of a 32 x 40 image needs about"):
        layer_input(layer, viewer.dims, params=FAST, crops_allowed=True)


def test_a_large_layer_is_trained_on_crops_and_labelled(viewer_widget, qtbot, monkeypatch):
    from napari_unsupervised_segmentation.core import memory

    viewer, widget = viewer_widget
    image = _image((1024, 1024)).astype(np.float32)
    layer = viewer.add_image(image, name="big")
    _, other = memory.estimate_bytes(1024, 1024, FAST, n_input_channels=1)
    monkeypatch.setattr(memory, "available_memory", lambda: other - 1)  # not whole
    _train(qtbot, widget, layer, FAST.replace(max_iter=3, device="cpu"))
    assert "on crops" in widget.status.value, widget.status.value
    np.testing.assert_array_equal(viewer.layers["big labels"].data, widget.model.predict(image))


def test_a_stack_is_arranged_planes_first_for_one_model():
    from napari.layers import Image

    volume = np.arange(5 * 4 * 6, dtype=np.float32).reshape(5, 4, 6)
    inp = layer_input(Image(volume), all_planes=True)  # planes along axis 0
    image, channel_axis = inp.arranged()
    assert image.shape == (5, 4, 6) and channel_axis is None
    zcyx = np.zeros((3, 2, 8, 9), np.uint16)
    inp = layer_input(Image(zcyx), channel_axis=1, all_planes=True)
    image, channel_axis = inp.arranged()
    assert image.shape == (3, 2, 8, 9) and channel_axis == 1
    np.testing.assert_array_equal(image[2], inp.plane_image((2,)))


@pytest.fixture
def labels_to_disk(monkeypatch, tmp_path):
    """Any labels of a one-model run go to disk, in a temporary folder of the test's."""
    import tempfile

    from napari_unsupervised_segmentation.core import plan

    monkeypatch.setattr(plan, "LABELS_MEMORY_SHARE", 0.0)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path / "napari-unsupervised-segmentation"


def test_labels_too_large_for_memory_go_to_a_zarr_array(viewer_widget, qtbot, labels_to_disk):
    import zarr

    viewer, widget = viewer_widget
    stack, _ = load_sample("stack")  # (6, 2, 160, 160) ZCYX
    stack = stack[:3, :, :48, :48]
    layer = viewer.add_image(stack, name="stack", axis_labels=("z", "c", "y", "x"))
    widget.image.value = layer
    widget.planes.value = ONE_MODEL
    _train(qtbot, widget, layer)
    model = widget.model
    labels = viewer.layers["stack labels"]
    assert isinstance(labels.data, zarr.Array)
    (folder,) = labels_to_disk.iterdir()
    assert folder.name.startswith("stack-") and folder.suffix == ".zarr"
    assert str(folder) in widget.status.value
    assert zarr.open_array(str(folder), mode="r").shape == (3, 2, 48, 48)
    for z in range(3):
        expected = model.predict(stack[z], channel_axis=0)
        for c in range(2):  # shown on both channels
            np.testing.assert_array_equal(labels.data[z, c], expected)

    # Apply model on such a layer: a new zarr array, the same labels
    applied = _apply(qtbot, widget, layer)
    assert applied is viewer.layers["stack labels [1]"]
    assert isinstance(applied.data, zarr.Array) and len(list(labels_to_disk.iterdir())) == 2
    np.testing.assert_array_equal(applied.data[:], labels.data[:])
    assert widget.status.value.startswith("Applied the model:")


def test_apply_model_writes_a_plane_on_disk(viewer_widget, qtbot, labels_to_disk):
    import zarr

    viewer, widget = viewer_widget
    image = _image()
    layer = viewer.add_image(image, name="img")
    _train(qtbot, widget, layer)  # one plane trained whole: its labels stay in memory
    assert isinstance(viewer.layers["img labels"].data, np.ndarray)
    assert not labels_to_disk.exists()
    applied = _apply(qtbot, widget, layer)
    assert isinstance(applied.data, zarr.Array)
    np.testing.assert_array_equal(applied.data[:], widget.model.predict(image))
    (folder,) = labels_to_disk.iterdir()
    assert folder.name.startswith("img-") and str(folder) in widget.status.value


def test_a_volume_is_written_in_place_on_disk(labels_to_disk, tmp_path):
    from napari.layers import Image

    from napari_unsupervised_segmentation._napari.layers import DiskLabels

    layer = Image(np.zeros((2, 4, 5, 6), np.float32))  # two volumes of 4 x 5 x 6
    inp = layer_input(layer, volume=True, model_labels=np.uint8)
    assert inp.disk_labels == np.uint8 and inp.labels_shape == (2, 4, 5, 6)
    disk = DiskLabels(inp, tmp_path / "volumes.zarr")
    out = disk.unit_out(1)
    assert out.shape == (4, 5, 6) and out.dtype == np.uint8
    volume = np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6) % 7 + 1
    out[...] = volume
    out[1:2, :2, 3:] = np.full((1, 2, 3), 9, np.uint8)
    volume[1:2, :2, 3:] = 9
    np.testing.assert_array_equal(disk.array[1], volume)
    assert not disk.array[0].any()
    assert out.classes == {1, 2, 3, 4, 5, 6, 7, 9}
