"""The dock widget on a real (headless) napari viewer, plus its pure helpers."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from test_boundaries import TEXTURE_MERGE

from napari_unsupervised_segmentation import PRESETS, SegmentationParams, segment
from napari_unsupervised_segmentation._napari.controls import params_from_values
from napari_unsupervised_segmentation._napari.worker import (
    Failure,
    Update,
    should_deliver,
    status_text,
    train_updates,
    update_interval_after,
)

#: Small, fast settings (2-core CPU): every test run takes well under a second of training.
FAST = SegmentationParams(max_iter=12, min_classes=0, n_superpixels=50, max_classes=8)
#: A run that only ends when stopped.
ENDLESS = FAST.replace(max_iter=1_000_000)
TIMEOUT = 60_000  # ms; generous, the CPU is shared


def _image(shape=(32, 32), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.random(shape)
    img[..., 8:24, 8:24] += 2.0
    return img


@pytest.fixture
def errors():
    """A function listing the error notifications shown since the test started."""
    from napari.utils.notifications import NotificationSeverity, notification_manager

    start = len(notification_manager.records)

    def shown() -> list[str]:
        records = notification_manager.records[start:]
        return [str(n.message) for n in records if n.severity == NotificationSeverity.ERROR]

    return shown


def _start(widget, layer, params=FAST):
    widget.image.value = layer
    widget.params = params
    widget.run()


def _wait_done(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.is_running, timeout=TIMEOUT)


def _start_all_planes(viewer, widget, params=FAST):
    """Start a run over all planes of a new 3-plane layer "vol"; return the volume."""
    volume = np.stack([_image(seed=s) for s in range(3)])
    layer = viewer.add_image(volume, name="vol")
    widget.image.value = layer
    widget.planes.value = "each"
    _start(widget, layer, params)
    return volume


# --- pure helpers ---------------------------------------------------------------------


def test_should_deliver_throttles_but_keeps_first_and_last():
    assert should_deliver(0.0, None, 0.2, final=False)
    assert not should_deliver(0.1, 0.0, 0.2, final=False)
    assert should_deliver(0.1, 0.0, 0.2, final=True)
    assert should_deliver(0.25, 0.0, 0.2, final=False)


def test_slow_labels_make_live_updates_rarer():
    assert update_interval_after(0.2, 0.01) == 0.2
    assert update_interval_after(0.2, 1.0) == 10.0  # 1 s of labels, then 9 s of training


def test_params_from_values_maps_seed_minus_one_to_none():
    values = {"max_iter": 5, "seed": -1}
    assert params_from_values(values) == SegmentationParams(max_iter=5, seed=None)
    with pytest.raises(ValueError, match="max_iter"):
        params_from_values({"max_iter": 0})


def test_status_text_mentions_iteration_classes_loss_and_plane():
    text = status_text(Update(3, 5, 0.25, None, False), 10, "plane z=2")
    assert "3/10" in text and "5 classes while training" in text and "0.2500" in text
    assert text.endswith("\nplane z=2")
    stack = Update(3, 5, 0.25, None, False, plane=1, n_planes=4)
    assert status_text(stack, 10).startswith("Plane 2/4 · Iteration 3/10")


def test_stack_updates_train_each_plane_and_say_which():
    from napari_unsupervised_segmentation._napari.worker import train_stack_updates

    stop, done = threading.Event(), threading.Event()
    planes = [_image(seed=s) for s in range(2)]
    items = list(train_stack_updates(planes, None, FAST, stop, done, 0.0))
    assert done.is_set()
    finals = [item for item in items if item.is_last]
    assert [(item.plane, item.n_planes) for item in finals] == [(0, 2), (1, 2)]
    for item, plane in zip(finals, planes, strict=True):
        np.testing.assert_array_equal(item.labels, segment(plane, FAST))
    broken = [_image(), np.full((32, 32), np.nan), _image(seed=1)]
    items = list(train_stack_updates(broken, None, FAST, stop, threading.Event(), 0.0))
    assert isinstance(items[-1], Failure) and items[-1].message.startswith("plane 2/3: ")
    assert {item.plane for item in items[:-1]} == {0}  # the third plane never starts


def test_train_updates_throttles_and_always_sends_the_last():
    stop, done = threading.Event(), threading.Event()
    ticks = iter(np.arange(0.0, 100.0, 0.1))  # a fake clock: 0.1 s per step
    items = list(train_updates(_image(), None, FAST, stop, done, 0.25, lambda: next(ticks)))
    assert done.is_set()
    assert all(isinstance(item, Update) for item in items)
    assert [item.iteration for item in items] == [1, 4, 7, 10, 12]
    assert items[-1].is_last and items[-1].labels is not None
    np.testing.assert_array_equal(items[-1].labels, segment(_image(), FAST))


def test_a_slow_image_map_does_not_hold_live_updates_back(monkeypatch):
    import time

    from napari_unsupervised_segmentation.core import boundaries

    real = boundaries.texture_gradient

    def slow(*args, **kwargs):  # a big image's gradient: made once, for the first labels
        time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(boundaries, "texture_gradient", slow)
    textured = FAST.replace(**TEXTURE_MERGE)
    stop, done = threading.Event(), threading.Event()
    ticks = iter(np.arange(0.0, 100.0, 0.1))
    items = list(train_updates(_image(), None, textured, stop, done, 0.25, lambda: next(ticks)))
    # Counting the 0.5 s would have held the next update back by 2 s (20 steps).
    assert [item.iteration for item in items] == [1, 4, 7, 10, 12]


def test_train_updates_stops_on_request_with_the_current_labels():
    stop, done = threading.Event(), threading.Event()
    gen = train_updates(_image(), None, ENDLESS, stop, done, 0.0)
    first = next(gen)
    stop.set()
    rest = list(gen)
    assert first.iteration == 1
    assert len(rest) <= 1 and done.is_set()


def _clock_that_sets(*events: threading.Event):
    """A fake clock (0.1 s per step) that sets ``events`` during the second step, as a press
    of Stop or a closing viewer does while the worker trains."""
    ticks = iter(np.arange(0.0, 100.0, 0.1))

    def clock() -> float:
        now = float(next(ticks))
        if now > 0.05:
            for event in events:
                event.set()
        return now

    return clock


def test_stop_during_a_step_sends_that_step_with_its_labels():
    stop, done = threading.Event(), threading.Event()
    items = list(train_updates(_image(), None, ENDLESS, stop, done, 10.0, _clock_that_sets(stop)))
    assert [(item.iteration, item.is_last) for item in items] == [(1, False), (2, True)]
    assert items[-1].labels is not None and done.is_set()


def test_a_closing_viewer_makes_no_more_labels():
    stop, done, abandon = threading.Event(), threading.Event(), threading.Event()
    clock = _clock_that_sets(abandon, stop)
    items = list(train_updates(_image(), None, ENDLESS, stop, done, 10.0, clock, abandon=abandon))
    assert [item.iteration for item in items] == [1] and done.is_set()


def test_train_updates_turns_engine_errors_into_a_failure():
    stop, done = threading.Event(), threading.Event()
    bad = _image()
    bad[0, 0] = np.nan
    items = list(train_updates(bad, None, FAST, stop, done))
    assert len(items) == 1 and isinstance(items[0], Failure)
    assert "nan" in items[0].message.lower()
    assert done.is_set()


# --- the widget -----------------------------------------------------------------------


def test_controls_show_default_preset_with_tooltips(viewer_widget):
    _, widget = viewer_widget
    assert widget.preset.value == "default"
    assert widget.params == PRESETS["default"]
    basic = ("max_iter", "min_classes", "merge_threshold", "seed", "device")
    sections = {group: section for group, (_, section) in widget.sections.items()}
    for name in basic:
        control = getattr(widget, name)
        assert control.tooltip, name
        assert not any(control in section for section in sections.values()), name
    # with the preset and the Detail slider, at most 7 controls outside the collapsed sections
    shown = [
        w.name for w in widget if w.name in {*basic, *(n for s in sections.values() for n in s)}
    ]
    assert shown == list(basic) and len([widget.preset, *shown, widget.detail]) <= 7
    assert list(sections) == ["training", "refinement", "post-processing", "runtime"]
    for group, names in {
        "training": ("max_classes", "n_conv", "lr", "momentum", "continuity_weight"),
        "refinement": ("superpixels", "n_superpixels", "compactness", "superpixel_scale"),
        "post-processing": ("label_by", "cut_scale", "merge", "premerge_threshold"),
        "runtime": ("precision",),
    }.items():
        for name in names:
            assert sections[group][name].tooltip, name
    for toggle, section in widget.sections.values():
        assert section.native.isHidden()
        toggle.value = True
        assert not section.native.isHidden()
    assert "Applies with merge='texture'" in widget.spectral_weight.tooltip
    widget.preset.value = "paper"
    assert widget.params == PRESETS["paper"] == SegmentationParams()


def test_a_preset_keeps_the_chosen_device_and_precision(viewer_widget):
    _, widget = viewer_widget
    widget.device.value, widget.precision.value = "cpu", "bf16"
    widget.max_iter.value = 7
    widget.preset.value = "paper"
    assert widget.params == PRESETS["paper"].replace(device="cpu", precision="bf16")


def test_a_preset_mends_settings_that_do_not_fit_together(viewer_widget):
    _, widget = viewer_widget
    widget.preset.value = "paper"
    widget.max_classes.value, widget.min_classes.value = 2, 3  # Run would refuse these
    widget.preset.value = "default"
    assert widget.params == PRESETS["default"]


def test_channel_axis_list_follows_the_chosen_layer_in_order(viewer_widget):
    viewer, widget = viewer_widget
    three = viewer.add_image(np.zeros((3, 32, 32)), name="c3")
    stack = viewer.add_image(np.zeros((5, 16, 32)), name="zyx")
    widget.image.value = three
    widget.channel_axis.value = 0
    widget.image.value = stack
    names = [
        widget.channel_axis.native.itemText(i) for i in range(widget.channel_axis.native.count())
    ]
    assert names == ["none", "axis 0 (size 5)", "axis 1 (size 16)", "axis 2 (size 32)"]
    assert widget.channel_axis.value is None
    labelled = viewer.add_image(np.zeros((3, 2, 16, 16)), name="zcyx", axis_labels="zcyx")
    widget.image.value = labelled
    assert widget.channel_axis.value == 1  # the axis the layer calls "c" is chosen
    box = widget.channel_axis.native
    assert [box.itemText(i) for i in range(box.count())][1:3] == [
        "axis 0 (z, size 3)",
        "axis 1 (c, size 2)",
    ]


def test_settings_of_options_not_chosen_are_greyed_out_and_left_out(viewer_widget):
    _, widget = viewer_widget
    widget.preset.value = "paper"
    assert widget.n_superpixels.enabled and widget.compactness.enabled
    assert not widget.superpixel_scale.enabled
    widget.superpixels.value = "graph"
    assert not widget.n_superpixels.enabled and not widget.compactness.enabled
    params = widget.params
    assert (params.superpixels, params.superpixel_scale, params.n_superpixels) == (
        "graph",
        100,
        None,
    )
    widget.superpixels.value = "slic"
    assert widget.n_superpixels.enabled and not widget.superpixel_scale.enabled
    # the paper's one label per class: no post-processing control applies
    assert not widget.merge.enabled and not widget.merge_threshold.enabled
    assert widget.params.merge is None
    widget.preset.value = "default"
    assert widget.merge_threshold.enabled and widget.spectral_weight.enabled
    widget.merge.value = "colour"  # a colour threshold, and no texture settings
    assert widget.merge_threshold.value == 2.0 and not widget.spectral_weight.enabled
    assert widget.params == PRESETS["default"].replace(merge="colour")
    widget.merge.value = "texture"
    assert widget.params == PRESETS["default"]
    widget.spectral_weight.value = 0.0
    assert not widget.premerge_threshold.enabled
    assert widget.params.premerge_threshold is None


def test_live_updates_into_one_layer_and_final_equals_segment(viewer_widget, qtbot, errors):
    viewer, widget = viewer_widget
    img = _image()
    layer = viewer.add_image(img, name="img")
    inserted = []
    viewer.layers.events.inserted.connect(lambda e: inserted.append(e.value))
    _start(widget, layer)
    assert widget.run_button.text == "Stop"
    _wait_done(qtbot, widget)
    assert widget.run_button.text == "Run"
    assert widget.updates_shown >= 2
    assert [lay.name for lay in inserted] == ["img labels"]
    labels_layer = viewer.layers["img labels"]
    assert labels_layer is widget.labels_layer
    final = segment(img, FAST)
    np.testing.assert_array_equal(labels_layer.data, final)
    # the labels the layer holds, not the classes counted while training
    assert widget.status.value == f"Done after 12 iterations: {final.max()} labels."
    assert not errors()


def test_objects_reach_the_layer_with_background_zero(viewer_widget, qtbot, errors):
    viewer, widget = viewer_widget
    img = _image()
    layer = viewer.add_image(img, name="img")
    widget.preset.value = "objects"
    chosen = widget.params
    assert (chosen.label_by, chosen.object_split, chosen.fill_holes) == ("object", "distance", True)
    objects = FAST.replace(label_by="object", object_min_size=4)
    _start(widget, layer, objects)
    _wait_done(qtbot, widget)
    labels = viewer.layers["img labels"].data
    np.testing.assert_array_equal(labels, segment(img, objects))
    assert labels[0, 0] == 0 and labels[16, 16] > 0
    assert not errors()


def test_running_again_replaces_the_layer_content(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    layer = viewer.add_image(_image(), name="img")
    for seed in (0, 1):
        _start(widget, layer, FAST.replace(seed=seed))
        _wait_done(qtbot, widget)
    assert [lay.name for lay in viewer.layers] == ["img", "img labels"]
    np.testing.assert_array_equal(
        viewer.layers["img labels"].data, segment(_image(), FAST.replace(seed=1))
    )


def test_labels_painted_or_renamed_mid_run_are_left_alone(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    layer = viewer.add_image(_image(), name="img")
    _start(widget, layer, ENDLESS)
    qtbot.waitUntil(lambda: widget.updates_shown >= 1, timeout=TIMEOUT)
    painted = widget.labels_layer
    painted.data[:4, :4] = 99  # the user paints while it trains
    kept = painted.data.copy()
    qtbot.waitUntil(lambda: widget.labels_layer is not painted, timeout=TIMEOUT)
    assert widget.labels_layer.name == "img labels [1]"
    renamed = widget.labels_layer
    renamed.name = "mine"
    qtbot.waitUntil(lambda: widget.labels_layer is not renamed, timeout=TIMEOUT)
    frozen = renamed.data.copy()
    shown = widget.updates_shown
    qtbot.waitUntil(lambda: widget.updates_shown >= shown + 2, timeout=TIMEOUT)
    widget.stop()
    _wait_done(qtbot, widget)
    np.testing.assert_array_equal(painted.data, kept)
    np.testing.assert_array_equal(renamed.data, frozen)
    assert widget.labels_layer.name == "img labels [1]"  # free again after the renaming
    assert [lay.name for lay in viewer.layers] == ["img", "img labels", "mine", "img labels [1]"]


def test_stop_mid_run_keeps_labels_and_ends_the_worker(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    layer = viewer.add_image(_image(), name="img")
    _start(widget, layer, ENDLESS)
    run = widget._life.run
    assert run.progress.total == ENDLESS.max_iter  # napari's progress bar over iterations
    qtbot.waitUntil(lambda: widget.updates_shown >= 1, timeout=TIMEOUT)
    widget.run_button.clicked.emit()  # the Run button is now Stop
    _wait_done(qtbot, widget)
    assert run.done.is_set()
    assert "Stopped" in widget.status.value
    assert widget.run_button.text == "Run" and widget.run_button.enabled
    labels = viewer.layers["img labels"].data
    assert labels.shape == (32, 32) and labels.min() >= 1
    qtbot.waitUntil(lambda: run.progress is None, timeout=TIMEOUT)


def test_run_twice_starts_one_worker(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    layer = viewer.add_image(_image(), name="img")
    _start(widget, layer, ENDLESS)
    run = widget._life.run
    widget.run()  # ignored, with an info message
    assert widget._life.run is run
    widget.stop()
    _wait_done(qtbot, widget)
    assert [lay.name for lay in viewer.layers if lay.name.endswith("labels")] in (
        [],
        ["img labels"],
    )


def test_scale_and_translate_are_carried_to_the_labels(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    layer = viewer.add_image(_image(), name="img", scale=(2.0, 0.5), translate=(10.0, -3.0))
    _start(widget, layer, FAST.replace(max_iter=2))
    _wait_done(qtbot, widget)
    labels = viewer.layers["img labels"]
    np.testing.assert_allclose(labels.scale, (2.0, 0.5))
    np.testing.assert_allclose(labels.translate, (10.0, -3.0))


def test_rgb_layer(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    rgb = (np.stack([_image(seed=s) for s in range(3)], axis=-1) * 80).astype(np.uint8)
    layer = viewer.add_image(rgb, name="rgb", rgb=True)
    _start(widget, layer)
    _wait_done(qtbot, widget)
    np.testing.assert_array_equal(
        viewer.layers["rgb labels"].data, segment(rgb, FAST, channel_axis=-1)
    )


def test_3d_layer_segments_the_displayed_plane(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    volume = np.stack([_image(seed=s) for s in range(4)])
    layer = viewer.add_image(volume, name="vol", scale=(3.0, 1.0, 1.0), translate=(1.0, 0, 0))
    viewer.dims.set_current_step(0, 2)
    _start(widget, layer)
    _wait_done(qtbot, widget)
    labels = viewer.layers["vol labels"]
    assert labels.data.shape == (1, 32, 32)
    np.testing.assert_allclose(labels.translate, (1.0 + 2 * 3.0, 0.0, 0.0))
    np.testing.assert_array_equal(labels.data[0], segment(volume[2], FAST))
    assert "plane" in widget.status.value
    # The labels show on the slice they belong to.
    np.testing.assert_allclose(labels.world_to_data(viewer.dims.point), (0, *viewer.dims.point[1:]))


def test_all_planes_of_a_stack_fill_one_labels_layer(viewer_widget, qtbot):
    from napari.utils.notifications import notification_manager

    viewer, widget = viewer_widget
    volume = np.stack([_image(seed=s) for s in range(3)])
    layer = viewer.add_image(volume, name="vol", scale=(3.0, 1.0, 1.0), translate=(1.0, 0, 0))
    viewer.dims.set_current_step(0, 2)  # the plane shown does not matter
    widget.image.value = layer
    assert widget.planes.native.isVisibleTo(widget.native)
    widget.planes.value = "each"
    _start(widget, layer)
    assert widget._life.run.progress.total == 3 * FAST.max_iter
    _wait_done(qtbot, widget)
    labels = viewer.layers["vol labels"]
    assert labels.data.shape == (3, 32, 32)
    np.testing.assert_allclose(labels.translate, (1.0, 0.0, 0.0))  # the image's own place
    for z in range(3):  # each plane trained on its own, as segment() does it
        np.testing.assert_array_equal(labels.data[z], segment(volume[z], FAST))
    assert widget.status.value.startswith("Done: all 3 planes segmented")
    widget.run()  # again: a stack's labels (hours of training, maybe) are never overwritten
    _wait_done(qtbot, widget)
    assert [lay.name for lay in viewer.layers] == ["vol", "vol labels", "vol labels [1]"]
    np.testing.assert_array_equal(viewer.layers["vol labels [1]"].data, labels.data)
    notes = [str(n.message) for n in notification_manager.records[-3:]]
    assert any("a run over all planes never overwrites labels" in note for note in notes)


def test_a_stack_is_updated_plane_by_plane_in_one_array(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    from napari.layers import Labels

    added = []
    viewer.layers.events.inserted.connect(
        lambda event: isinstance(event.value, Labels) and added.append(event.value.data)
    )
    volume = _start_all_planes(viewer, widget)
    _wait_done(qtbot, widget)
    labels = viewer.layers["vol labels"]
    assert len(added) == 1 and labels.data is added[0]  # no copy of the stack per update
    assert widget.updates_shown >= 3  # every plane shown as it trained
    for z in range(3):
        np.testing.assert_array_equal(labels.data[z], segment(volume[z], FAST))


def test_a_stack_slow_to_redraw_is_redrawn_less_often_and_at_the_end(
    make_napari_viewer, qtbot, monkeypatch, dock_widget
):
    from napari_unsupervised_segmentation._napari import widget as widget_module

    monkeypatch.setattr(widget_module, "LABELS_TIME_FACTOR", 1e9)  # after the first: never due
    viewer = make_napari_viewer(show=True)  # a hidden canvas draws nothing
    widget = dock_widget(viewer)
    volume = _start_all_planes(viewer, widget)
    viewer.dims.set_current_step(0, 2)  # the last plane is shown: trained last
    _wait_done(qtbot, widget)
    viewer.layers["vol"].visible = False
    labels = viewer.layers["vol labels"]
    np.testing.assert_array_equal(labels.data[2], segment(volume[2], FAST))
    drawn = viewer.screenshot(canvas_only=True, flash=False)
    labels.refresh()
    assert drawn[..., :3].any()  # labels drawn (the image is hidden)
    assert np.array_equal(drawn, viewer.screenshot(canvas_only=True, flash=False))


def test_paint_in_a_stack_plane_not_being_trained_stays(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    _start_all_planes(viewer, widget, ENDLESS)  # the first plane never ends by itself
    qtbot.waitUntil(lambda: widget.updates_shown >= 1, timeout=TIMEOUT)
    labels = widget.labels_layer
    labels.data[2, :4, :4] = 99  # the user labels a plane the run has not reached
    shown = widget.updates_shown
    qtbot.waitUntil(lambda: widget.updates_shown >= shown + 2, timeout=TIMEOUT)
    labels.data[0, :4, :4] = 99  # ...and paints in the plane it trains: the layer is theirs
    qtbot.waitUntil(lambda: widget.labels_layer is not labels, timeout=TIMEOUT)
    widget.stop()
    _wait_done(qtbot, widget)
    assert [lay.name for lay in viewer.layers] == ["vol", "vol labels", "vol labels [1]"]
    assert (labels.data[2, :4, :4] == 99).all() and (labels.data[0, :4, :4] == 99).all()
    assert labels.data[0].min() >= 1 and not labels.data[1].any()
    moved = widget.labels_layer  # the run's labels so far, without the user's paint
    assert moved.data[0].min() >= 1 and not moved.data[1:].any()


def test_stop_during_all_planes_keeps_the_planes_done(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    _start_all_planes(viewer, widget, ENDLESS)  # the first plane never ends by itself
    qtbot.waitUntil(lambda: widget.updates_shown >= 1, timeout=TIMEOUT)
    widget.stop()
    _wait_done(qtbot, widget)
    labels = viewer.layers["vol labels"].data
    assert labels.shape == (3, 32, 32) and labels[0].min() >= 1
    assert not labels[1:].any()  # never trained: unlabelled
    assert widget.status.value.startswith(
        f"Stopped: 1 of 3 planes segmented, {labels[0].max()} labels per plane."
    )


def test_planes_are_offered_only_beside_other_planes(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    widget.image.value = viewer.add_image(_image(), name="flat")
    assert not widget.planes.native.isVisibleTo(widget.native)
    widget.image.value = viewer.add_image(np.zeros((3, 2, 16, 16)), name="zcyx")
    assert widget.planes.native.isVisibleTo(widget.native)
    widget.image.value = viewer.add_image(np.zeros((2, 16, 16)), name="cyx")
    assert widget.planes.native.isVisibleTo(widget.native)
    widget.channel_axis.value = 0  # then the only plane there is
    assert not widget.planes.native.isVisibleTo(widget.native)
    widget.planes.value = "each"
    one = viewer.add_image(_image((1, 32, 32)), name="one")
    widget.image.value = one
    assert not widget.planes.native.isVisibleTo(widget.native)
    widget.params = FAST.replace(max_iter=2)
    widget.run()  # the hidden choice counts for nothing: the plane shown, as one plane
    qtbot.waitUntil(lambda: not widget.is_running, timeout=TIMEOUT)
    assert "all" not in widget.status.value and viewer.layers[-1].name == "one labels"


def test_4d_layer_with_channel_axis(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    data = np.stack([np.stack([_image(seed=t + c) for c in range(2)]) for t in range(3)])
    layer = viewer.add_image(data, name="tcyx")  # (T, C, Y, X)
    widget.image.value = layer
    assert widget.channel_axis.native.isVisibleTo(widget.native)
    widget.channel_axis.value = 1
    viewer.dims.set_current_step(0, 1)
    widget.params = FAST
    widget.run()
    _wait_done(qtbot, widget)
    labels = viewer.layers["tcyx labels"].data
    assert labels.shape == (1, 2, 32, 32)
    np.testing.assert_array_equal(labels[0, 0], labels[0, 1])
    expected = segment(np.moveaxis(data[1], 0, -1), FAST, channel_axis=-1)
    np.testing.assert_array_equal(labels[0, 0], expected)


def test_three_channels_on_the_last_axis_of_a_non_rgb_layer_are_stains(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    data = np.random.default_rng(3).integers(0, 4000, (32, 32, 3), dtype=np.uint16)
    data[8:24, 8:24, 1] += 20000
    layer = viewer.add_image(data, name="yxc", rgb=False)
    viewer.dims.order = (2, 0, 1)  # show Y and X; the last axis holds the channels
    widget.image.value = layer
    widget.channel_axis.value = 2
    widget.params = FAST
    widget.run()
    _wait_done(qtbot, widget)
    labels = viewer.layers["yxc labels"].data[..., 0]
    stains = segment(data, FAST, channel_axis=-1, rgb=False)
    np.testing.assert_array_equal(labels, stains)
    assert not np.array_equal(stains, segment(data, FAST, channel_axis=-1))  # not as colour


@pytest.mark.parametrize("kind", ["nan", "too small"])
def test_bad_layer_notifies_and_viewer_keeps_working(viewer_widget, qtbot, kind, errors):
    viewer, widget = viewer_widget
    bad = _image()
    if kind == "nan":
        bad[3, 3] = np.nan
    else:
        bad = bad[:1, :]
    layer = viewer.add_image(bad, name="bad")
    _start(widget, layer)
    _wait_done(qtbot, widget)
    shown = errors()
    assert shown, "the engine's error should be shown as a notification"
    assert ("NaN" if kind == "nan" else "too small") in shown[-1]
    assert "Failed" in widget.status.value
    assert "bad labels" not in viewer.layers
    # Still usable: a good image segments afterwards.
    good = viewer.add_image(_image(), name="good")
    _start(widget, good, FAST.replace(max_iter=2))
    _wait_done(qtbot, widget)
    assert "good labels" in viewer.layers


def test_an_image_too_large_for_the_memory_notifies_and_nothing_starts(
    viewer_widget, qtbot, errors, monkeypatch
):
    from napari_unsupervised_segmentation.core import memory

    viewer, widget = viewer_widget
    layer = viewer.add_image(_image(), name="img")
    monkeypatch.setattr(memory, "available_memory", lambda: 1000)
    _start(widget, layer)
    assert not widget.is_running  # refused before the plane is copied
    assert "needs about" in errors()[-1] and "MemoryError" not in errors()[-1]
    # enough for the plane, not for the network on the CPU: refused as training starts
    network, other = memory.estimate_bytes(32, 32, FAST)
    monkeypatch.setattr(memory, "available_memory", lambda: other + network // 2)
    _start(widget, layer, FAST.replace(device="cpu"))  # the network in the computer's memory
    _wait_done(qtbot, widget)
    assert "needs about" in errors()[-1] and "MemoryError" not in errors()[-1]
    assert [lay.name for lay in viewer.layers] == ["img"]


def test_no_image_layer_notifies(viewer_widget, errors):
    viewer, widget = viewer_widget
    viewer.add_labels(np.zeros((8, 8), dtype=np.uint8), name="not an image")
    widget.run()
    assert not widget.is_running
    assert errors()


def test_removing_layers_mid_run_ends_cleanly(viewer_widget, qtbot, errors):
    viewer, widget = viewer_widget
    layer = viewer.add_image(_image(), name="img")
    _start(widget, layer, ENDLESS)
    qtbot.waitUntil(lambda: "img labels" in viewer.layers, timeout=TIMEOUT)
    viewer.layers.remove("img")
    viewer.layers.remove("img labels")
    shown = widget.updates_shown
    qtbot.waitUntil(lambda: widget.updates_shown > shown + 1, timeout=TIMEOUT)
    widget.stop()
    _wait_done(qtbot, widget)
    assert "img labels" in viewer.layers  # recreated by the next update
    assert not errors()


def test_changing_the_selection_mid_run_changes_nothing(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    first = viewer.add_image(_image(), name="first")
    second = viewer.add_image(_image(seed=5), name="second")
    _start(widget, first)
    widget.image.value = second
    viewer.layers.selection.active = second
    _wait_done(qtbot, widget)
    assert "first labels" in viewer.layers and "second labels" not in viewer.layers
    np.testing.assert_array_equal(viewer.layers["first labels"].data, segment(_image(), FAST))


def test_closing_the_viewer_mid_run_stops_training(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    layer = viewer.add_image(_image(), name="img")
    _start(widget, layer, ENDLESS)
    run = widget._life.run
    qtbot.waitUntil(lambda: widget.updates_shown >= 1, timeout=TIMEOUT)
    viewer.close()
    assert run.done.wait(30), "the training thread should end when the viewer closes"
    assert run.stop.is_set() and run.progress is None
    qtbot.wait(50)  # queued signals from the worker arrive at a closed widget: ignored


def test_closing_the_dock_mid_run_stops_training_and_keeps_the_labels_drawn(viewer_widget, qtbot):
    """The dock's close button (napari removes the dock; the widget lives on, undocked)."""
    from qtpy.QtWidgets import QDockWidget

    viewer, widget = viewer_widget
    layer = viewer.add_image(_image(), name="img")
    _start(widget, layer, ENDLESS)
    run = widget._life.run
    qtbot.waitUntil(lambda: widget.updates_shown >= 1, timeout=TIMEOUT)
    dock = widget.native.parentWidget()
    while not isinstance(dock, QDockWidget):
        dock = dock.parentWidget()
    dock.titleBarWidget().close_button.click()
    drawn = viewer.layers["img labels"].data.copy()
    assert run.done.wait(10), "training should stop when the dock is closed"
    assert run.stop.is_set() and run.abandon.is_set()
    qtbot.wait(100)  # updates the worker had queued are not drawn
    np.testing.assert_array_equal(viewer.layers["img labels"].data, drawn)
    assert not widget.is_running and widget.run_button.text == "Run"


def test_the_sections_have_no_caption_of_their_own(viewer_widget):
    from qtpy.QtWidgets import QLabel

    _, widget = viewer_widget
    for toggle, _ in widget.sections.values():
        toggle.value = True
    captions = [
        label.text().lower()
        for label in widget.native.findChildren(QLabel)
        if label.isVisibleTo(widget.native)
        and not any(s.native.isAncestorOf(label) for _, s in widget.sections.values())
    ]
    assert not any(caption.endswith("settings") for caption in captions), captions


def test_a_long_status_does_not_widen_the_dock(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.show()  # laid out as a user sees it
    qtbot.wait(10)
    width = widget.native.minimumSizeHint().width()
    widget.status.value = "Iteration 1/160 · plane of " + "a_very_long_layer_name" * 20
    qtbot.wait(10)
    assert widget.native.minimumSizeHint().width() == width


def test_a_cancelled_close_keeps_training(qtbot):
    """A user's close that napari's confirmation dialog cancels must not stop the run."""
    import weakref

    from qtpy.QtWidgets import QWidget

    from napari_unsupervised_segmentation._napari.worker import _call_if_hidden

    calls = []
    window = QWidget()
    qtbot.addWidget(window)
    window.show()
    _call_if_hidden(weakref.ref(window), lambda: calls.append("shown"))
    window.hide()
    _call_if_hidden(weakref.ref(window), lambda: calls.append("hidden"))
    _call_if_hidden(lambda: None, lambda: calls.append("gone"))
    assert calls == ["hidden", "gone"]


def test_every_value_a_control_allows_at_its_ends_is_a_valid_setting(qapp):
    from magicgui.widgets import FloatSpinBox, SpinBox

    from napari_unsupervised_segmentation._napari.controls import _make_controls

    controls = _make_controls()
    defaults = {name: control.value for name, control in controls.items()}
    checked = 0
    for name, control in controls.items():
        if isinstance(control, SpinBox | FloatSpinBox):
            for end in (control.min, control.max):
                control.value = end  # what the box shows and hands over, after its rounding
                values = {**defaults, name: control.value}
                # the rules across boxes: fewer classes to stop at than the most classes,
                # and a merge needs a threshold or a cap
                if name == "max_classes":
                    values["min_classes"] = min(values["min_classes"], end - 1)
                if name == "min_classes":
                    values["max_classes"] = controls["max_classes"].max
                if name == "merge_threshold" and end == 0:
                    values["max_segments"] = 1
                params_from_values(values)  # raises if invalid
                checked += 1
            control.value = defaults[name]
    assert checked >= 2 * 20


def test_a_stopping_rule_of_as_many_labels_as_filters_is_refused_at_run(viewer_widget, errors):
    viewer, widget = viewer_widget
    viewer.add_image(_image(), name="img")
    widget.max_classes.value = 3  # min_classes stays 3: training would stop at once
    widget.run()
    assert not widget.is_running and not any(layer.name == "img labels" for layer in viewer.layers)
    assert any("min_classes must be below max_classes" in message for message in errors())


def test_settings_outside_the_controls_are_refused_without_changing_any(viewer_widget):
    _, widget = viewer_widget
    before = widget.params
    with pytest.raises(ValueError, match="lr=0.0001 is outside the widget's 0.001 to 100"):
        widget.params = PRESETS["paper"].replace(lr=1e-4)  # paper differs in most settings
    assert widget.params == before


def test_the_stack_sample_segments_both_channels_of_the_plane_shown(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    [layer] = viewer.open_sample("napari-unsupervised-segmentation", "stack")
    viewer.dims.set_current_step(0, 2)
    widget.image.value = layer
    assert widget.channel_axis.value == 1  # labelled "c": chosen without a click
    widget.params = FAST
    widget.run()
    _wait_done(qtbot, widget)
    labels = widget.labels_layer
    assert labels.data.shape == (1, 2, 160, 160)
    np.testing.assert_allclose(labels.translate, (2, 0, 0, 0))
    expected = segment(layer.data[2], FAST, channel_axis=0)  # (C, Y, X): two stains
    np.testing.assert_array_equal(labels.data[0, 0], expected)
    np.testing.assert_array_equal(labels.data[0, 1], expected)


def _shapes(shape=(40, 56)) -> np.ndarray:
    """A grey image with a dark disc, a bright square and a faint square, plus noise."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    image = np.full(shape, 0.5)
    image[(rows - 20) ** 2 + (cols - 14) ** 2 < 81] = 0.1
    image[6:22, 30:48] = 0.9
    image[26:36, 32:50] = 0.6
    return image + np.random.default_rng(0).normal(0, 0.02, shape)


def test_the_detail_slider_cuts_the_finished_labels_again_without_training(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    assert not widget.detail.enabled and widget.hierarchy is None
    layer = viewer.add_image(_shapes(), name="shapes")
    params = PRESETS["default"].replace(max_iter=8, min_classes=0, n_superpixels=60, max_classes=8)
    _start(widget, layer, params)
    assert not widget.detail.enabled  # not during a run
    _wait_done(qtbot, widget)
    levels = widget.hierarchy
    assert widget.detail.enabled and widget.detail.value == 0.0
    labels_layer = widget.labels_layer
    np.testing.assert_array_equal(labels_layer.data, levels.labels(0.0))
    np.testing.assert_array_equal(labels_layer.data, segment(_shapes(), params))
    low, high = levels.detail_range
    assert widget.detail.min <= low < 0 < high <= widget.detail.max
    for value in (-1.0, widget.detail.max, 0.0):
        widget.detail.value = value
        assert widget.labels_layer is labels_layer  # redrawn in place
        np.testing.assert_array_equal(labels_layer.data, levels.labels(value))
        assert not widget.is_running
    widget.detail.value = widget.detail.min
    assert labels_layer.data.max() < levels.labels(0.0).max()  # fewer, larger segments
    assert "Detail" in widget.status.value
    _start(widget, layer, params)  # a new run: the slider waits for it
    assert not widget.detail.enabled and widget.hierarchy is None
    _wait_done(qtbot, widget)
    assert widget.detail.enabled and widget.detail.value == 0.0
