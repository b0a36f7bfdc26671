"""Volumes and one model for all planes in napari: the widget's Planes choices "volume (3D)"
and "all planes", and ``segment_layer(planes=...)``, on a real (headless) viewer."""

from __future__ import annotations

import numpy as np
import pytest
from test_volumes import FAST, _assert_one_object, _ball

from napari_unsupervised_segmentation import SegmentationParams, segment_layer
from napari_unsupervised_segmentation._napari.layers import layer_input
from napari_unsupervised_segmentation._napari.sample_data import load_sample
from napari_unsupervised_segmentation.core.plan import (
    PLANES,
    plan_plane,
    planes_choice,
    volume_offered,
)

TIMEOUT = 120_000  # ms; generous, the CPU is shared
#: Few iterations for the sample stack's planes (one model trained on all of them).
STACK_FAST = SegmentationParams(
    max_iter=12, min_classes=0, n_superpixels=50, max_classes=8, seed=0, device="cpu"
)


# --- the policy (pure) ---------------------------------------------------------------


def test_planes_choices_say_what_each_trains():
    assert PLANES == ("shown", "all", "each", "volume")
    shown, every, each, volume = map(planes_choice, PLANES)
    assert not shown.all_planes and not shown.one_model and shown.crops_allowed
    assert every.all_planes and every.one_model and not every.volume
    assert each.all_planes and not each.one_model and not each.crops_allowed
    assert volume.volume and volume.one_model
    with pytest.raises(ValueError, match="planes must be one of"):
        planes_choice("volumes")


def test_a_volume_needs_three_axes_besides_channels():
    assert volume_offered((8, 24, 24)) and volume_offered((2, 8, 3, 24, 24), channel_axis=2)
    assert not volume_offered((24, 24)) and not volume_offered((3, 24, 24), channel_axis=0)
    with pytest.raises(ValueError, match="a volume needs 3 axes besides channels"):
        plan_plane((3, 24, 24), channel_axis=0, volume=True)


def test_the_layer_scale_of_z_y_x_is_the_volume_spacing():
    plan = plan_plane((8, 24, 24), volume=True)
    assert plan.is_volume and plan.n_units == 1 and plan.unit_planes(0) == range(8)
    assert plan.volume_spacing((2.0, 0.5, 0.25)) == (2.0, 0.5, 0.25)
    # a time series of volumes with channels (t, z, c, y, x): the scale of z, y, x
    plan = plan_plane((3, 5, 2, 16, 16), channel_axis=2, volume=True)
    assert plan.stack_axes == (0, 1) and plan.n_units == 3 and plan.unit_planes(1) == range(5, 10)
    assert plan.volume_spacing((10.0, 3.0, 1.0, 0.5, 0.5)) == (3.0, 0.5, 0.5)
    assert plan_plane((8, 24, 24), all_planes=True).volume_spacing((2, 1, 1)) is None


def test_a_volume_layer_reaches_the_engine_with_its_scale_as_spacing():
    from napari.layers import Image

    tzcyx = np.zeros((3, 5, 2, 16, 16), np.uint16)
    tzcyx[1, :, 0] = np.arange(5)[:, None, None]
    inp = layer_input(Image(tzcyx, scale=(10, 3, 1, 0.5, 0.5)), channel_axis=2, volume=True)
    assert inp.engine_options == {"spatial_ndim": 3, "spacing": (3.0, 0.5, 0.5)}
    image, channel_axis = inp.unit_image(1)  # the second time point's volume
    assert image.shape == (5, 2, 16, 16) and channel_axis == 1
    np.testing.assert_array_equal(image, tzcyx[1])
    planes = inp.unit_planes(1, np.zeros((5, 16, 16), np.uint8))
    assert [number for number, _ in planes] == [5, 6, 7, 8, 9]
    assert layer_input(Image(tzcyx), channel_axis=2, all_planes=True).engine_options == {}


# --- the widget ----------------------------------------------------------------------


def test_a_volume_is_segmented_as_3d_objects_in_the_widget(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    volume, inside = _ball()
    layer = viewer.add_image(volume, name="ball", scale=(2.0, 1.0, 1.0))
    widget.image.value = layer
    assert widget.planes.native.isVisibleTo(widget.native)
    widget.planes.value = "volume"
    widget.params = FAST
    widget.run()
    qtbot.waitUntil(lambda: not widget.is_running, timeout=TIMEOUT)
    assert widget.updates_shown >= 2  # live, then the final labels
    labels = viewer.layers["ball labels"]
    assert labels.data.shape == (8, 24, 24)
    np.testing.assert_array_equal(labels.scale, (2.0, 1.0, 1.0))
    _assert_one_object(np.asarray(labels.data), inside)  # one label across z
    model = widget.model
    assert model.spatial_ndim == 3
    np.testing.assert_array_equal(labels.data, model.predict(volume))
    assert "one model" in widget.status.value and "the volume" in widget.status.value
    # Apply model labels another volume with the same classes, in 3D
    other, other_inside = _ball(seed=1)
    second = viewer.add_image(other, name="second", scale=(2.0, 1.0, 1.0))
    widget.image.value = second
    widget.apply_model()
    qtbot.waitUntil(lambda: not widget.is_running, timeout=TIMEOUT)
    applied = np.asarray(viewer.layers["second labels"].data)
    _assert_one_object(applied, other_inside)
    assert applied[other_inside][0] == np.asarray(labels.data)[inside][0]


# --- the console ---------------------------------------------------------------------


def test_segment_layer_volume_labels_a_time_series_of_volumes_in_3d(make_napari_viewer):
    viewer = make_napari_viewer()
    (first, inside), (second, _) = _ball(), _ball(seed=1)
    series = np.stack([first, second])  # (t, z, y, x)
    viewer.add_image(series, name="ball", scale=(1.0, 2.0, 1.0, 1.0))
    labels = segment_layer("ball", viewer, FAST, planes="volume")
    data = np.asarray(labels.data)
    assert data.shape == (2, 8, 24, 24)
    for volume in data:  # the ball is one 3D object, with the same label at both times
        _assert_one_object(volume, inside)
    assert data[0][inside][0] == data[1][inside][0]


def test_segment_layer_one_model_labels_a_class_alike_in_every_plane(make_napari_viewer):
    viewer = make_napari_viewer()
    stack, _ = load_sample("stack")  # (6, 2, 160, 160) ZCYX
    stack = stack[:3, :, :64, :64]
    viewer.add_image(stack, name="stack", axis_labels=("z", "c", "y", "x"))
    labels = segment_layer("stack", viewer, STACK_FAST, channel_axis=1, planes="all")
    data = np.asarray(labels.data)
    assert data.shape == (3, 2, 64, 64)  # shown on both channels
    background = stack.max(axis=1) < 300
    common = {int(np.bincount(data[z, 0][background[z]]).argmax()) for z in range(3)}
    assert len(common) == 1  # the background has one label in every plane
    with pytest.raises(ValueError, match="all_planes=True is planes='each'"):
        segment_layer("stack", viewer, STACK_FAST, channel_axis=1, planes="all", all_planes=True)
