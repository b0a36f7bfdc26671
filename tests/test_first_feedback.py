"""Fast first feedback: live labels that never wait for post-processing's image maps, and
final labels that are the same as ever."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_unsupervised_segmentation import PRESETS, SegmentationParams, iter_segment, segment
from napari_unsupervised_segmentation._napari.worker import train_updates
from napari_unsupervised_segmentation.core import boundaries
from napari_unsupervised_segmentation.core.normalize import prepare_image
from napari_unsupervised_segmentation.core.postprocess import LabelFinisher

#: The default preset's post-processing (texture gradient, graph segments, merges), trained
#: briefly on a small image.
POSTPROCESSED = PRESETS["default"].replace(max_iter=8, n_superpixels=60, max_classes=8)
#: The same training, every argmax value one label.
RAW = POSTPROCESSED.replace(label_by="class")
TIMEOUT = 60_000  # ms; generous, the CPU is shared


def _image(shape=(40, 48), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.random((*shape, 3))
    img[8:28, 10:30] += (1.5, 0.2, 0.8)
    img[24:, 30:] *= 0.3
    return (255 * img / img.max()).astype(np.uint8)


@pytest.fixture
def gated_texture_gradient(monkeypatch):
    """The real texture gradient, held back until the returned event is set (as a large
    image's takes long); it records whether it was made."""
    gate = threading.Event()
    made: list[bool] = []
    real = boundaries.texture_gradient

    def gated(*args, **kwargs):
        gate.wait(60)
        result = real(*args, **kwargs)
        made.append(True)
        return result

    monkeypatch.setattr(boundaries, "texture_gradient", gated)
    yield gate, made
    gate.set()  # no background thread is left waiting


def test_preview_before_the_maps_are_made_is_the_networks_classes_numbered_1_to_n():
    post_step = next(iter_segment(_image(), POSTPROCESSED, channel_axis=-1))
    raw_step = next(iter_segment(_image(), RAW, channel_axis=-1))
    preview = post_step.preview_labels
    np.testing.assert_array_equal(preview, raw_step.labels)
    assert preview.dtype == np.uint8
    assert np.array_equal(np.unique(preview), np.arange(1, preview.max() + 1))


def test_preview_is_the_finished_labels_once_the_maps_are_made():
    image = prepare_image(_image(), -1, None)
    prediction = np.random.default_rng(1).integers(0, 4, image.spatial_shape)
    finisher = LabelFinisher(POSTPROCESSED, image)
    assert not finisher.maps_ready
    finisher.preview(prediction)  # starts the maps in the background
    finisher.make_maps()  # waits for them
    assert finisher.maps_ready
    fresh = LabelFinisher(POSTPROCESSED, image)(prediction)
    np.testing.assert_array_equal(finisher.preview(prediction), fresh)


def test_settings_without_post_processing_need_no_maps():
    image = prepare_image(_image(), -1, None)
    assert LabelFinisher(RAW, image).maps_ready


@pytest.mark.parametrize("preset", ["default", "paper"])
def test_final_labels_after_live_previews_equal_segments(preset):
    params = PRESETS[preset].replace(max_iter=8, n_superpixels=60, max_classes=8, min_classes=0)
    steps = list(iter_segment(_image(), params, channel_axis=-1))
    for step in steps:
        step.preview_labels  # noqa: B018  (as a live display reads them)
    np.testing.assert_array_equal(steps[-1].labels, segment(_image(), params, channel_axis=-1))


def test_the_first_update_comes_before_the_maps_are_made(gated_texture_gradient):
    gate, made = gated_texture_gradient
    stop, done = threading.Event(), threading.Event()
    updates = train_updates(_image(), -1, POSTPROCESSED, stop, done, 0.0)
    first = next(updates)
    assert not made  # the gradient is still held back
    raw = next(iter_segment(_image(), RAW, channel_axis=-1)).labels
    np.testing.assert_array_equal(first.labels, raw)
    gate.set()
    rest = list(updates)
    assert rest[-1].is_last and made
    np.testing.assert_array_equal(
        rest[-1].labels, segment(_image(), POSTPROCESSED, channel_axis=-1)
    )


def test_the_viewer_shows_labels_before_the_maps_are_made(
    make_napari_viewer, qtbot, gated_texture_gradient
):
    gate, made = gated_texture_gradient
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(
        "napari-unsupervised-segmentation", "Segment image"
    )
    widget.update_interval = 0.0
    image = _image()
    widget.image.value = viewer.add_image(image, name="img", rgb=True)
    widget.params = POSTPROCESSED
    widget.run()
    try:
        qtbot.waitUntil(lambda: widget.updates_shown >= 1, timeout=TIMEOUT)
        assert not made and widget.is_running  # shown while the gradient is held back
    finally:
        gate.set()
    qtbot.waitUntil(lambda: not widget.is_running, timeout=TIMEOUT)
    expected = segment(image, POSTPROCESSED, channel_axis=-1)
    np.testing.assert_array_equal(viewer.layers["img labels"].data, expected)


def test_a_run_without_post_processing_shows_the_same_labels_live_and_final():
    params = SegmentationParams(max_iter=5, min_classes=0, n_superpixels=40, max_classes=6)
    steps = list(iter_segment(_image(), params, channel_axis=-1))
    for step in steps:
        np.testing.assert_array_equal(step.preview_labels, step.labels)
