"""Objects in napari: clicking a class between background and objects, one model's objects
numbered across a stack, and measurements in the Labels layer's features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from test_widget import TIMEOUT, _image

from napari_unsupervised_segmentation import SegmentationParams, segment
from napari_unsupervised_segmentation._napari.layers import (
    in_layer_order,
    in_stack_order,
    stack_index,
)
from napari_unsupervised_segmentation._napari.objects import ClassObjects
from napari_unsupervised_segmentation.core.objects import (
    object_options,
    objects_from_classes,
    objects_in_planes,
)
from napari_unsupervised_segmentation.core.plan import plan_plane

#: Small, fast settings into objects, every object setting explicit.
OBJECTS = SegmentationParams(
    max_iter=12,
    min_classes=0,
    n_superpixels=50,
    max_classes=8,
    label_by="object",
    object_background="border",
    object_split="off",
    object_min_size=4,
    fill_holes=True,
)


@dataclass
class MouseEvent:
    """What napari's canvas hands mouse callbacks (the fields they read)."""

    type: str
    position: tuple[float, ...]
    is_dragging: bool = False
    button: int = 1
    modifiers: tuple[str, ...] = ()
    view_direction: tuple[float, ...] | None = None
    dims_displayed: tuple[int, ...] = (0, 1)


def _click(viewer, position, *, drag_to=None) -> None:
    """Press and release the left button at ``position`` (world), through napari's own
    callback machinery; with ``drag_to``, move there in between."""
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import (
        mouse_move_callbacks,
        mouse_press_callbacks,
        mouse_release_callbacks,
    )

    mouse_press_callbacks(viewer, ReadOnlyWrapper(MouseEvent("mouse_press", position)))
    end = position
    if drag_to is not None:
        end = drag_to
        mouse_move_callbacks(
            viewer, ReadOnlyWrapper(MouseEvent("mouse_move", drag_to, is_dragging=True))
        )
    mouse_release_callbacks(viewer, ReadOnlyWrapper(MouseEvent("mouse_release", end)))


def _wait_done(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.is_running, timeout=TIMEOUT)


# --- pure helpers ---------------------------------------------------------------------


def test_class_objects_are_the_engines_objects_and_toggle_classes():
    from napari_unsupervised_segmentation.core.postprocess import finish_objects

    classes = np.zeros((32, 32), dtype=np.uint8)
    classes[8:16, 8:16] = 2  # an object's rim...
    classes[9:15, 9:15] = 1  # ...and its core: one object
    classes[20:26, 20:26] = 3  # a second object of another class
    source = ClassObjects.of(classes, OBJECTS)
    assert source.background == {0}
    labels = source.labels()
    np.testing.assert_array_equal(labels, finish_objects(classes, OBJECTS))
    assert labels.max() == 2 and labels[0, 0] == 0
    assert len(np.unique(labels[8:16, 8:16])) == 1  # core and rim: one label

    rimless = source.toggled(2)  # the rim turns background: the core stays an object
    assert rimless.background == {0, 2}
    expected = objects_from_classes(classes, background=[0, 2], **object_options(OBJECTS))
    np.testing.assert_array_equal(rimless.labels(), expected)
    assert rimless.labels()[8, 8] == 0 and rimless.labels()[12, 12] > 0
    np.testing.assert_array_equal(rimless.toggled(2).labels(), labels)  # and back
    everything = source.toggled(0)  # no background left: one object over the image
    assert not everything.background and everything.labels().max() == 1
    assert source.class_at((22, 22)) == 3
    assert source.class_at((32, 0)) is None and source.class_at((-1, 0)) is None


def test_class_objects_of_a_stack_are_numbered_across_it():
    classes = np.zeros((3, 16, 16), dtype=np.uint8)
    classes[:, 4:8, 4:8] = 1
    classes[1, 10:14, 10:14] = 2
    source = ClassObjects.of(classes, OBJECTS)
    labels = source.labels()
    assert [sorted(set(np.unique(p)) - {0}) for p in labels] == [[1], [2, 3], [4]]
    np.testing.assert_array_equal(
        labels, objects_in_planes(classes, background=[0], **object_options(OBJECTS))
    )
    # a class toggled in the stack is toggled in every plane
    assert [int(p.max()) for p in source.toggled(1).labels()] == [0, 1, 0]


def test_stack_order_and_a_click_index_follow_the_layers_axes():
    # a (y, z, x) layer shown as (y, x) planes: the stack axis is the middle one
    plan = plan_plane((10, 3, 12), (0, 2), all_planes=True)
    assert plan.stack_axes == (1,) and plan.plane_axes == (0, 2)
    layer_order = np.arange(10 * 3 * 12).reshape(10, 3, 12)
    stacked = in_stack_order(plan, layer_order)
    assert stacked.shape == (3, 10, 12)
    np.testing.assert_array_equal(in_layer_order(plan, stacked), layer_order)
    index = stack_index(plan, (4.4, 2.0, 6.6))  # data coordinates: pixels centred on integers
    assert index == (2, 4, 7)
    assert stacked[index] == layer_order[4, 2, 7]


# --- the widget -----------------------------------------------------------------------


def test_clicking_a_class_toggles_it_and_redraws_without_training(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    img = _image()
    layer = viewer.add_image(img, name="img", scale=(2.0, 2.0))
    widget.image.value = layer
    widget.params = OBJECTS
    assert not widget.click_classes.enabled
    widget.run()
    _wait_done(qtbot, widget)
    labels_layer = viewer.layers["img labels"]
    first = np.asarray(labels_layer.data).copy()
    np.testing.assert_array_equal(first, segment(img, OBJECTS))
    assert first[0, 0] == 0 and first[16, 16] > 0
    assert widget.click_classes.enabled
    assert "Click a class" in widget.status.value
    source = widget._objects[1]
    np.testing.assert_array_equal(source.labels(), first)  # the classes the run made them of

    _click(viewer, (0.0, 0.0))  # not pressed: a click does nothing
    np.testing.assert_array_equal(labels_layer.data, first)
    labels_layer.mode = "paint"
    widget.click_classes.native.click()  # press the button
    assert widget.click_classes.value
    assert labels_layer.mode == "pan_zoom"  # clicks paint nothing meanwhile
    corner = source.class_at((0, 0))
    assert corner in source.background
    _click(viewer, (1.0, 1.0), drag_to=(30.0, 30.0))  # a drag (panning) toggles nothing
    np.testing.assert_array_equal(labels_layer.data, first)
    _click(viewer, (1.0, 1.0))  # world (1, 1): pixel (0, 0) at a scale of 2
    toggled = np.asarray(labels_layer.data)
    expected = objects_from_classes(
        source.classes, background=source.background - {corner}, **object_options(OBJECTS)
    )
    np.testing.assert_array_equal(toggled, expected)
    assert toggled[0, 0] > 0
    assert f"Class {corner} is objects now" in widget.status.value
    assert viewer.layers[-1] is labels_layer and len(viewer.layers) == 2  # redrawn in place
    _click(viewer, (1.0, 1.0))  # and back
    np.testing.assert_array_equal(labels_layer.data, first)
    assert f"Class {corner} is background now" in widget.status.value
    _click(viewer, (500.0, 500.0))  # outside the labels
    assert "inside the labels" in widget.status.value
    widget.click_classes.native.click()  # released: clicks are the viewer's again
    assert widget._click not in viewer.mouse_drag_callbacks


def test_a_run_not_into_objects_offers_no_class_clicks(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    layer = viewer.add_image(_image(), name="img")
    widget.image.value = layer
    widget.params = OBJECTS.replace(label_by="segment")
    widget.run()
    _wait_done(qtbot, widget)
    assert not widget.click_classes.enabled and widget._objects is None


def _stack_run(viewer, widget, qtbot, planes="all", params=OBJECTS):
    stack = np.stack([_image(seed=s) for s in range(3)])
    stack[1, 2:6, 26:30] += 2.0  # a small second object in the middle plane
    layer = viewer.add_image(stack, name="vol", axis_labels=("z", "y", "x"))
    widget.image.value = layer
    widget.planes.value = planes
    widget.params = params
    widget.run()
    _wait_done(qtbot, widget)
    return stack, viewer.layers["vol labels"]


def test_all_planes_give_objects_numbered_across_the_stack_and_toggle_in_every_plane(
    viewer_widget, qtbot
):
    viewer, widget = viewer_widget
    stack, labels_layer = _stack_run(viewer, widget, qtbot)
    classes = np.stack([widget.model.predict(plane) for plane in stack]) - 1
    expected = objects_in_planes(classes, **object_options(OBJECTS))
    labels = np.asarray(labels_layer.data)
    np.testing.assert_array_equal(labels, expected)
    assert labels[:, 0, 0].tolist() == [0, 0, 0]
    per_plane = [set(np.unique(plane)) - {0} for plane in labels]
    assert all(per_plane) and not (per_plane[0] & per_plane[1] or per_plane[1] & per_plane[2])
    assert f"{labels.max()} objects in all 3 planes" in widget.status.value
    assert widget.click_classes.enabled

    viewer.dims.set_point(0, 2)  # the last plane shown: the click toggles the whole stack
    widget.click_classes.value = True
    inside = classes[2, 16, 16]
    _click(viewer, (2.0, 16.0, 16.0))
    background = set(widget._objects[1].background)
    assert inside in background
    toggled = objects_in_planes(classes, background=sorted(background), **object_options(OBJECTS))
    np.testing.assert_array_equal(labels_layer.data, toggled)


def test_apply_model_of_an_objects_run_gives_objects(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    stack, _ = _stack_run(viewer, widget, qtbot)
    other = viewer.add_image(stack[::-1].copy(), name="other", axis_labels=("z", "y", "x"))
    widget.image.value = other
    widget.planes.value = "all"
    widget.apply_model()
    _wait_done(qtbot, widget)
    classes = np.stack([widget.model.predict(plane) for plane in other.data]) - 1
    expected = objects_in_planes(classes, **object_options(OBJECTS))
    np.testing.assert_array_equal(viewer.layers["other labels"].data, expected)
    assert widget.status.value.startswith("Applied the model: one model,")


def test_measure_objects_fills_the_layers_features_and_follows_a_toggle(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    widget.measure.value = True
    stack, labels_layer = _stack_run(viewer, widget, qtbot)
    labels = np.asarray(labels_layer.data)
    features = labels_layer.features
    values = [int(v) for v in np.unique(labels) if v]
    assert features["index"].tolist() == values
    for row, value in enumerate(values):
        z, rows, cols = np.nonzero(labels == value)
        assert features["z"][row] == z[0] and len(set(z)) == 1  # one plane each
        assert features["area"][row] == len(rows)
        assert features["centroid-0"][row] == pytest.approx(rows.mean())
        assert features["intensity_mean"][row] == pytest.approx(stack[labels == value].mean())

    widget.click_classes.value = True
    _click(viewer, (0.0, 0.0, 0.0))  # the background's class becomes objects
    after = np.asarray(labels_layer.data)
    assert labels_layer.features["index"].tolist() == [int(v) for v in np.unique(after) if v]
    widget.measure.value = False  # unchecked: the measurements go
    assert labels_layer.features.shape[1] == 0
    widget.measure.value = True  # checked again: measured at once
    assert labels_layer.features["index"].tolist() == [int(v) for v in np.unique(after) if v]


def test_each_plane_on_its_own_is_not_measured(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    widget.measure.value = True
    _, labels_layer = _stack_run(viewer, widget, qtbot, planes="each")
    assert labels_layer.features.shape[1] == 0
    assert "Not measured" in widget.status.value
    assert not widget.click_classes.enabled  # each plane's classes are its own


# --- the console ----------------------------------------------------------------------


def test_segment_layer_objects_all_planes_and_volume(make_napari_viewer):
    from napari_unsupervised_segmentation import segment_layer

    viewer = make_napari_viewer()
    stack = np.stack([_image(seed=s) for s in range(3)])
    viewer.add_image(stack, name="vol", axis_labels=("t", "y", "x"), scale=(1.0, 0.5, 0.5))
    layer = segment_layer("vol", viewer, OBJECTS, planes="all", measure=True)
    labels = np.asarray(layer.data)
    per_plane = [set(np.unique(plane)) - {0} for plane in labels]
    assert all(per_plane) and sum(map(len, per_plane)) == len(set().union(*per_plane))
    assert layer.features["index"].tolist() == sorted(set().union(*per_plane))
    assert layer.features["t"].tolist() == [
        next(t for t, found in enumerate(per_plane) if v in found) for v in layer.features["index"]
    ]
    assert layer.features["area"].sum() == pytest.approx(np.count_nonzero(labels) * 0.25)

    volume = segment_layer("vol", viewer, OBJECTS, planes="volume", measure=True)
    voxels = np.asarray(volume.data)
    assert voxels[:, 0, 0].tolist() == [0, 0, 0] and voxels[1, 16, 16] > 0
    assert len(np.unique(voxels[:, 16, 16])) == 1  # one 3D object through the planes
    assert "centroid-2" in volume.features and "t" not in volume.features
    with pytest.raises(ValueError, match="one model's objects"):
        segment_layer("vol", viewer, OBJECTS, planes="each", measure=True)


def test_a_volume_run_gives_3d_objects_and_a_click_toggles_the_volume(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    _, labels_layer = _stack_run(viewer, widget, qtbot, planes="volume")
    volume = viewer.layers["vol"].data
    classes = widget.model.predict(volume) - 1  # one (z, y, x) volume
    source = widget._objects[1]
    assert source.spatial_ndim == 3
    np.testing.assert_array_equal(source.classes, classes)
    expected = objects_in_planes(classes, spatial_ndim=3, **object_options(OBJECTS))
    np.testing.assert_array_equal(labels_layer.data, expected)
    count = int(expected.max())
    assert f"{count} object{'s' if count != 1 else ''} in the volume" in widget.status.value
    widget.click_classes.value = True
    corner = classes[1, 0, 0]
    _click(viewer, (1.0, 0.0, 0.0))
    background = sorted(source.background - {corner})
    toggled = objects_in_planes(
        classes, spatial_ndim=3, background=background, **object_options(OBJECTS)
    )
    np.testing.assert_array_equal(labels_layer.data, toggled)
    viewer.dims.ndisplay = 3  # a click in 3D display: no plane to take the class from
    _click(viewer, (1.0, 0.0, 0.0))
    np.testing.assert_array_equal(labels_layer.data, toggled)
    assert widget.status.value == "Switch to 2D display to click a class."


def test_one_models_labels_on_disk_stay_its_classes(make_napari_viewer, tmp_path):
    import dataclasses
    import threading

    from napari_unsupervised_segmentation._napari.layers import DiskLabels, layer_input
    from napari_unsupervised_segmentation._napari.worker import (
        Objects,
        Trained,
        fit_stack_updates,
    )

    viewer = make_napari_viewer()
    stack = np.stack([_image(seed=s) for s in range(2)])
    layer = viewer.add_image(stack, name="vol")
    inp = layer_input(layer, viewer.dims, params=OBJECTS, all_planes=True, one_model=True)
    inp = dataclasses.replace(inp, disk_labels=np.dtype(np.uint8))
    disk = DiskLabels(inp, tmp_path / "labels.zarr")
    events = (threading.Event(), threading.Event())
    items = list(fit_stack_updates(inp, OBJECTS, *events, live=False, disk=disk))
    assert not any(isinstance(item, Objects) for item in items)
    model = next(item.model for item in items if isinstance(item, Trained))
    expected = np.stack([model.predict(plane) for plane in stack])  # classes k + 1
    np.testing.assert_array_equal(disk.array[:], expected)


def test_a_dim_class_made_an_object_by_a_click_keeps_all_its_pixels() -> None:
    classes = np.zeros((40, 60), dtype=int)
    classes[10:20, 10:20] = 1  # bright
    classes[10:20, 35:45] = 2  # as dim as the field: background by brightness
    intensity = np.where(classes == 1, 1.0, np.where(classes == 2, 0.05, 0.0))
    settings = OBJECTS.replace(object_background="intensity")
    source = ClassObjects.of(classes, settings, intensity=intensity)
    assert source.background == {0, 2}
    labels = source.labels()
    assert labels.max() == 1 and (labels[classes == 2] == 0).all()
    toggled = source.toggled(2).labels()
    assert toggled.max() == 2 and (toggled[12:18, 37:43] > 0).all()
    assert source.toggled(2).toggled(2).background == source.background
