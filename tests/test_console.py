"""segment_layer (napari's console) and the README's console examples, on a real viewer."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import zarr
from test_core import CountingArray

from napari_unsupervised_segmentation import (
    SegmentationParams,
    iter_segment,
    segment,
    segment_layer,
)
from napari_unsupervised_segmentation._napari.layers import (
    PlaneStack,
    holds_last_write,
    layer_displayed_axes,
    layer_input,
    show_labels,
    write_plane,
)
from napari_unsupervised_segmentation._napari.sample_data import coffee
from napari_unsupervised_segmentation.core.plan import plan_plane

ROOT = Path(__file__).resolve().parents[1]
FAST = SegmentationParams(max_iter=8, min_classes=0, n_superpixels=50, max_classes=8)
EXAMPLE = re.compile(r"```python\n(# console example \((\w)\)\n.*?)```", re.DOTALL)


def _image(shape=(32, 32), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.random(shape)
    img[..., 8:24, 8:24] += 2.0
    return img


def console_examples() -> dict[str, str]:
    """The console examples (a) to (f) as written in docs/napari.md."""
    page = (ROOT / "docs" / "napari.md").read_text(encoding="utf-8")
    found = {key: code for code, key in EXAMPLE.findall(page)}
    assert set(found) == set("abcdef"), "docs/napari.md lacks '# console example (x)' blocks"
    return found


# --- pure helpers ---------------------------------------------------------------------


def test_layer_displayed_axes_follows_napari_axis_order():
    assert layer_displayed_axes((0, 1, 2), 2, 3) == (1, 2)
    assert layer_displayed_axes((0, 2, 1), 2, 3) == (2, 1)
    assert layer_displayed_axes((0, 1, 2, 3), 2, 2) == (0, 1)  # 2D layer in a 4D world
    assert layer_displayed_axes((0, 1), 2, 3) == (1, 2)  # more layer axes than world axes
    assert layer_displayed_axes((0, 1, 2), 3, 3) == (0, 1, 2)
    # a 3D layer beside a 4D one, world axes rolled: the layer keeps world axes 1..3 in
    # their world order (1, 2, 3) -> layer axes (0, 1, 2); it shows (1, 2), not (0, 2)
    assert layer_displayed_axes((1, 2, 0, 3), 2, 3) == (1, 2)
    assert layer_displayed_axes((3, 0, 2, 1), 2, 2) == (1, 0)


def test_layer_displayed_axes_agrees_with_napari_for_every_axis_order():
    from itertools import permutations

    from napari.layers.base import base

    # napari's own mapping, private: on the layers' slicing state (0.9) or on Layer (older)
    owner = getattr(base, "_LayerSlicingState", base.Layer)
    to_layer = getattr(owner, "_world_to_layer_dims_impl", None)
    if to_layer is None:
        pytest.skip("this napari has no _world_to_layer_dims_impl to compare with")
    for world_ndim in range(2, 6):
        for layer_ndim in range(2, 6):
            for order in permutations(range(world_ndim)):
                for ndisplay in (2, 3):
                    napari_order = to_layer(order, world_ndim, layer_ndim)
                    expected = tuple(int(a) for a in napari_order[-min(ndisplay, layer_ndim) :])
                    assert layer_displayed_axes(order, ndisplay, layer_ndim) == expected


def test_plan_plane_picks_displayed_axes_and_clips_the_index():
    plan = plan_plane((5, 6, 7, 8), displayed=(2, 3), data_point=(1.6, 99.0, 0, 0))
    assert plan.plane_axes == (2, 3) and plan.index == (2, 5, None, None)
    plan = plan_plane((3, 6, 7), displayed=(1, 2), data_point=(0, 0, 0), channel_axis=0)
    assert plan.channel_axis == 0 and plan.index == (None, None, None)
    plan = plan_plane((4, 6, 7), displayed=(0, 1, 2), data_point=(2, 3, 0))  # 3D display
    assert plan.plane_axes == (1, 2) and plan.index == (2, None, None)


@pytest.mark.parametrize(
    ("shape", "displayed", "channel_axis", "message"),
    [
        ((5,), (0,), None, "at least 2"),
        ((3, 4, 5), (1, 2), 1, "both the channel axis and a displayed axis"),
        ((4, 5), (0, 1), 0, "at least 3 dimensions"),
        ((3, 4, 5), (1, 2), 7, "out of range"),
    ],
)
def test_plan_plane_errors(shape, displayed, channel_axis, message):
    with pytest.raises(ValueError, match=message):
        plan_plane(shape, displayed, [0] * len(shape), channel_axis)


def test_plan_plane_for_all_planes_keeps_every_other_axis_whole():
    plan = plan_plane((4, 2, 6, 7), (2, 3), (1, 0, 0, 0), channel_axis=1, all_planes=True)
    assert plan.plane_axes == (2, 3) and plan.stack_axes == (0,) and plan.stack_shape == (4,)
    assert plan.index == (None, None, None, None)
    assert plan.stack_indices() == [(0,), (1,), (2,), (3,)]
    # the planes shown may lie before the stack axis (napari's dims order changed)
    plan = plan_plane((5, 6, 3), (0, 1), (0, 0, 0), all_planes=True)
    assert plan.plane_axes == (0, 1) and plan.stack_axes == (2,)


def test_plane_stack_puts_planes_in_the_layers_axis_order():
    from napari_unsupervised_segmentation._napari.layers import PlaneStack

    plan = plan_plane((5, 6, 3), (0, 1), (0, 0, 0), all_planes=True)
    stack = PlaneStack(plan, (5, 6))
    planes = [np.full((5, 6), k + 1, np.uint8) for k in range(3)]
    planes[2] = np.full((5, 6), 300, np.uint16)  # many labels: the dtype widens
    for number, labels in enumerate(planes):
        stack.put(number, labels)
    snapshot = stack.snapshot()
    assert snapshot.shape == (5, 6, 3) and snapshot.dtype == np.uint16
    assert [int(snapshot[0, 0, k]) for k in range(3)] == [1, 2, 300]


@pytest.mark.parametrize("channel_axis", [0.0, True])
def test_plan_plane_wants_an_integer_channel_axis(channel_axis):
    with pytest.raises(TypeError, match="channel_axis must be an integer"):
        plan_plane((3, 4, 5), (1, 2), [0, 0, 0], channel_axis)


# --- on a viewer ----------------------------------------------------------------------


def test_segment_layer_adds_then_updates_one_layer(make_napari_viewer):
    viewer = make_napari_viewer()
    img = _image()
    viewer.add_image(img, name="img", scale=(2.0, 3.0), translate=(1.0, -1.0))
    first = segment_layer("img", viewer, FAST)
    assert first.name == "img labels"
    np.testing.assert_array_equal(first.data, segment(img, FAST))
    np.testing.assert_allclose(first.scale, (2.0, 3.0))
    np.testing.assert_allclose(first.translate, (1.0, -1.0))
    second = segment_layer(viewer.layers["img"], viewer, FAST, seed=1)
    assert second is first
    assert [layer.name for layer in viewer.layers] == ["img", "img labels"]
    np.testing.assert_array_equal(second.data, segment(img, FAST, seed=1))


def test_segment_layer_defaults_to_the_current_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(_image(), name="img")
    labels_layer = segment_layer("img", params=FAST)
    assert labels_layer in viewer.layers


def test_segment_layer_on_a_3d_layer_uses_the_displayed_plane(make_napari_viewer):
    viewer = make_napari_viewer()
    volume = np.stack([_image(seed=s) for s in range(3)])
    viewer.add_image(volume, name="vol", scale=(4.0, 1.0, 1.0))
    viewer.dims.set_current_step(0, 1)
    labels = segment_layer("vol", viewer, FAST)
    assert labels.data.shape == (1, 32, 32)
    np.testing.assert_allclose(labels.translate, (4.0, 0.0, 0.0))
    np.testing.assert_array_equal(labels.data[0], segment(volume[1], FAST))


def test_segment_layer_with_a_channel_axis(make_napari_viewer):
    viewer = make_napari_viewer()
    data = np.stack([_image(seed=c) for c in range(2)])  # (C, Y, X)
    viewer.add_image(data, name="cyx")
    labels = segment_layer("cyx", viewer, FAST, channel_axis=0)
    assert labels.data.shape == (2, 32, 32)
    expected = segment(np.moveaxis(data, 0, -1), FAST, channel_axis=-1)
    np.testing.assert_array_equal(labels.data[1], expected)


def test_segment_layer_all_planes_of_a_zcyx_stack(make_napari_viewer):
    viewer = make_napari_viewer()
    data = np.stack([np.stack([_image(seed=z + c) for c in range(2)]) for z in range(3)])
    viewer.add_image(data, name="zcyx", scale=(5.0, 1.0, 0.5, 0.5))
    labels = segment_layer("zcyx", viewer, FAST, channel_axis=1, all_planes=True)
    assert labels.data.shape == (3, 2, 32, 32)  # every plane, shown on both channels
    np.testing.assert_allclose(labels.scale, (5.0, 1.0, 0.5, 0.5))
    np.testing.assert_allclose(labels.translate, (0.0, 0.0, 0.0, 0.0))
    for z in range(3):
        expected = segment(np.moveaxis(data[z], 0, -1), FAST, channel_axis=-1)
        np.testing.assert_array_equal(labels.data[z, 0], expected)
        np.testing.assert_array_equal(labels.data[z, 1], expected)


def test_segment_layer_errors(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_labels(np.zeros((8, 8), dtype=np.uint8), name="seg")
    with pytest.raises(ValueError, match="no layer named 'nope'.*'seg'"):
        segment_layer("nope", viewer)
    with pytest.raises(ValueError, match="choose an image layer"):
        segment_layer("seg", viewer)
    rgb = viewer.add_image(np.zeros((8, 8, 3), dtype=np.uint8), rgb=True)
    with pytest.raises(ValueError, match="RGB"):
        layer_input(rgb, viewer.dims, channel_axis=0)


def test_console_examples_from_the_docs(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    examples = console_examples()
    assert sorted(examples) == ["a", "b", "c", "d", "e", "f"]
    viewer = make_napari_viewer()
    data, meta, _ = coffee()[0]
    viewer.add_image(data[::16, ::16], **meta)  # a small "coffee" keeps the test fast
    namespace = {"viewer": viewer}

    exec(examples["a"], namespace)
    labels_layer = viewer.layers["coffee labels"]
    assert labels_layer.data.shape == (25, 38)
    expected = namespace["labels"].copy()

    exec(examples["b"], namespace)
    widget = namespace["widget"]
    assert widget.is_running
    qtbot.waitUntil(lambda: not widget.is_running, timeout=120_000)
    # the layer added by hand in (a) is not the plugin's: kept, the widget adds its own
    assert widget.labels_layer is viewer.layers["coffee labels [1]"]

    exec(examples["c"], namespace)
    assert namespace["labels_layer"] is widget.labels_layer  # the plugin's layer, reused
    names = [layer.name for layer in viewer.layers]
    assert names == ["coffee", "coffee labels", "coffee labels [1]"]
    # (a), (b) and (c) use the same settings and seed, so they agree.
    for layer in viewer.layers[1:]:
        np.testing.assert_array_equal(layer.data, expected)

    monkeypatch.chdir(tmp_path)  # (d) saves its model in the working folder
    exec(examples["d"], namespace)
    model, crop = namespace["model"], viewer.layers["crop classes"].data
    whole = model.predict(viewer.layers["coffee"].data, channel_axis=-1)
    # a class keeps its label in another field of view (away from the crop's edge)
    halo = model.halo
    np.testing.assert_array_equal(
        crop[halo:-halo, halo:-halo], whole[10:, 20:][halo:-halo, halo:-halo]
    )
    loaded = namespace["load_model"](tmp_path / "coffee.model")
    np.testing.assert_array_equal(loaded.predict(viewer.layers["crop"].data, channel_axis=-1), crop)

    exec(examples["e"], namespace)  # labels into a zarr array in the working folder
    on_disk = viewer.layers["coffee classes"].data
    assert isinstance(on_disk, zarr.Array) and on_disk.shape == (25, 38)
    stored = zarr.open_array(str(tmp_path / "coffee_labels.zarr"), mode="r")
    expected = namespace["model"].predict(viewer.layers["coffee"].data, channel_axis=-1)
    np.testing.assert_array_equal(stored[:], expected)
    np.testing.assert_array_equal(on_disk[:], expected)


def test_console_example_of_objects_in_a_stack(make_napari_viewer, monkeypatch):
    from napari_unsupervised_segmentation import PRESETS
    from napari_unsupervised_segmentation._napari.sample_data import stack

    # the objects preset, made fast (the example's training takes a minute on 2 cores)
    fast = PRESETS["objects"].replace(max_iter=10, n_superpixels=100, max_classes=8)
    monkeypatch.setitem(PRESETS, "objects", fast)
    viewer = make_napari_viewer()
    data, meta, _ = stack()[0]
    viewer.add_image(data[:3, :, ::4, ::4], **meta)  # (z, c, y, x) = (3, 2, 40, 40)
    namespace = {"viewer": viewer}
    exec(console_examples()["f"], namespace)
    nuclei = namespace["nuclei"]
    labels = np.asarray(nuclei.data)[:, 0]  # the labels show on both channels
    per_plane = [set(np.unique(plane)) - {0} for plane in labels]
    assert all(per_plane) and labels[:, 0, 0].tolist() == [0, 0, 0]
    assert sum(map(len, per_plane)) == len(set().union(*per_plane))  # numbered across
    features = nuclei.features
    assert features["index"].tolist() == sorted(set().union(*per_plane))
    assert features["z"].tolist() == [
        next(z for z, found in enumerate(per_plane) if value in found)
        for value in features["index"]
    ]
    assert {"intensity_mean-0", "intensity_mean-1"} <= set(features)


def test_a_users_layer_of_the_same_name_is_never_overwritten(make_napari_viewer):
    viewer = make_napari_viewer()
    mine = viewer.add_labels(np.full((32, 32), 7, dtype=np.uint8), name="img labels")
    flat = viewer.add_labels(np.ones((32, 32), dtype=np.uint8), name="vol labels")  # 2D
    viewer.add_image(_image(), name="img")
    viewer.add_image(np.stack([_image(seed=s) for s in range(2)]), name="vol")
    labels = segment_layer("img", viewer, FAST)
    assert labels is not mine and labels.name == "img labels [1]"
    assert (mine.data == 7).all()
    vol_labels = segment_layer("vol", viewer, FAST)
    assert vol_labels is not flat and vol_labels.data.shape == (1, 32, 32)
    assert flat in viewer.layers and (flat.data == 1).all()
    assert segment_layer("img", viewer, FAST, seed=1) is labels  # its own layer: reused

    # a copy with the same data, name and metadata (napari's "Duplicate Layer") is not it
    viewer.layers.remove(labels)
    twin = viewer.add_labels(labels.data.copy(), name=labels.name, metadata=labels.metadata)
    assert twin.metadata == labels.metadata and twin.name == labels.name
    assert segment_layer("img", viewer, FAST) is not twin


def test_another_image_of_the_same_name_does_not_take_over_its_labels(make_napari_viewer):
    # two files called sample.tif, or two console images called "img": same name and shape
    viewer = make_napari_viewer()
    viewer.add_image(_image(seed=0), name="img")
    first = segment_layer("img", viewer, FAST)
    kept = first.data.copy()
    viewer.layers.remove("img")
    viewer.add_image(_image(seed=1), name="img")
    second = segment_layer("img", viewer, FAST)
    assert second is not first and second.name == "img labels [1]"
    np.testing.assert_array_equal(first.data, kept)
    assert segment_layer("img", viewer, FAST, seed=1) is second  # its own layer: reused


def test_edited_or_renamed_labels_are_kept_and_a_new_layer_is_added(make_napari_viewer):
    from napari.utils.notifications import notification_manager

    viewer = make_napari_viewer()
    viewer.add_image(_image(), name="img")
    first = segment_layer("img", viewer, FAST)
    first.data[:4, :4] = 99  # painted, filled or set from the console
    painted = first.data.copy()
    shown = len(notification_manager.records)
    second = segment_layer("img", viewer, FAST)
    assert second is not first and second.name == "img labels [1]"
    messages = [str(n.message) for n in notification_manager.records[shown:]]
    assert any("'img labels' is kept" in m and "'img labels [1]'" in m for m in messages)
    np.testing.assert_array_equal(first.data, painted)
    second.name = "keep this"
    third = segment_layer("img", viewer, FAST)
    assert third not in (first, second)
    assert segment_layer("img", viewer, FAST, seed=1) is third  # unedited: reused
    np.testing.assert_array_equal(second.data, segment(_image(), FAST))


def test_each_plane_of_a_stack_keeps_its_labels_layer(make_napari_viewer):
    viewer = make_napari_viewer()
    volume = np.stack([_image(seed=s) for s in range(3)])
    viewer.add_image(volume, name="vol")
    viewer.dims.set_current_step(0, 2)
    plane_2 = segment_layer("vol", viewer, FAST)
    viewer.dims.set_current_step(0, 0)
    plane_0 = segment_layer("vol", viewer, FAST)
    assert plane_0 is not plane_2
    np.testing.assert_array_equal(plane_2.data[0], segment(volume[2], FAST))
    np.testing.assert_allclose(plane_2.translate, (2.0, 0.0, 0.0))
    np.testing.assert_array_equal(plane_0.data[0], segment(volume[0], FAST))
    assert segment_layer("vol", viewer, FAST) is plane_0


def test_a_plane_too_large_for_the_memory_is_refused_with_a_message(
    make_napari_viewer, monkeypatch
):
    from napari_unsupervised_segmentation.core import memory

    viewer = make_napari_viewer()
    layer = viewer.add_image(_image(), name="img")
    monkeypatch.setattr(memory, "available_memory", lambda: 1000)
    with pytest.raises(MemoryError, match="a 32 x 32 image needs about"):
        layer_input(layer, viewer.dims, params=FAST)  # checked before the plane is copied
    with pytest.raises(MemoryError, match="crop or a downscaled copy"):
        segment_layer("img", viewer, FAST)
    assert [layer.name for layer in viewer.layers] == ["img"]


def test_a_stack_is_checked_for_its_copy_and_labels_too(make_napari_viewer, monkeypatch):
    from napari_unsupervised_segmentation.core import memory

    viewer = make_napari_viewer()
    layer = viewer.add_image(np.stack([_image(seed=s) for s in range(3)]), name="vol")
    plane_needs = memory.estimate_bytes(32, 32, FAST)[1]  # the computer's share of one plane
    monkeypatch.setattr(memory, "available_memory", lambda: plane_needs + 1000)
    assert layer_input(layer, viewer.dims, params=FAST).n_planes == 1  # one plane fits
    with pytest.raises(MemoryError, match="a stack of 3 32 x 32 planes needs about.*plane shown"):
        layer_input(layer, viewer.dims, params=FAST, all_planes=True)  # the copy does not


def test_four_uint8_channels_of_a_layer_are_all_used(make_napari_viewer):
    viewer = make_napari_viewer()
    data = np.zeros((4, 32, 32), np.uint8)
    data[3, 8:24, 8:24] = 200  # the square exists only in the fourth channel
    viewer.add_image(data, name="c4")
    inp = layer_input(viewer.layers["c4"], viewer.dims, channel_axis=0)
    assert inp.image.shape == (4, 32, 32) and inp.channel_axis == 0 and not inp.rgb  # no RGBA
    labels = segment_layer("c4", viewer, FAST, channel_axis=0)
    np.testing.assert_array_equal(labels.data[0], segment(data, FAST, channel_axis=0))
    assert len(np.unique(labels.data[0])) > 1


def test_colour_comes_from_the_layer_not_from_where_the_channels_lie(make_napari_viewer):
    viewer = make_napari_viewer()
    photo = np.zeros((32, 32, 3), np.uint8)
    photo[:, 16:] = (200, 40, 40)
    viewer.add_image(photo, name="photo")  # napari takes (H, W, 3) uint8 as RGB
    viewer.add_image(photo, name="stains", rgb=False)  # a 3D stack; its last axis: channels
    colour = layer_input(viewer.layers["photo"], viewer.dims)
    assert colour.rgb and colour.channel_axis == -1
    viewer.dims.order = (2, 0, 1)  # display the stack's first two axes
    stains = layer_input(viewer.layers["stains"], viewer.dims, channel_axis=2)
    assert not stains.rgb and stains.image.shape == (32, 32, 3) and stains.channel_axis == 2
    labels = segment_layer("stains", viewer, FAST, channel_axis=2)
    expected = segment(photo, FAST, channel_axis=-1, rgb=False)
    np.testing.assert_array_equal(labels.data[..., 0], expected)
    assert not np.array_equal(expected, segment(photo, FAST, channel_axis=-1))  # not colour
    with pytest.raises(TypeError, match="takes colour from the layer") as refused:
        segment_layer("photo", viewer, FAST, rgb=False)
    # the advice works as written
    assert "viewer.dims.order = (2, 0, 1)" in str(refused.value)
    viewer.add_image(photo, name="again", rgb=False)
    viewer.dims.order = (2, 0, 1)
    again = segment_layer("again", viewer, FAST, channel_axis=-1)
    np.testing.assert_array_equal(again.data[..., 0], expected)


def test_four_uint16_channels_that_napari_calls_rgba_are_all_used(make_napari_viewer):
    viewer = make_napari_viewer()
    data = np.random.default_rng(0).integers(0, 4000, (40, 40, 4), dtype=np.uint16)
    data[10:30, 10:30, 3] += 30000  # the square exists only in the fourth channel
    layer = viewer.add_image(data, name="four")
    assert layer.rgb  # napari's guess from the shape alone
    inp = layer_input(layer, viewer.dims)
    assert not inp.rgb and inp.image.shape == (40, 40, 4)
    labels = segment_layer("four", viewer, FAST)
    np.testing.assert_array_equal(labels.data, segment(data, FAST, channel_axis=-1, rgb=False))


def _stack_run_layer(viewer, data, channel_axis=None):
    """A layer of ``data`` and the labels layer a run over all its planes starts with
    (its first plane's labels: all 1), as the widget makes it."""
    image = viewer.add_image(data, name="vol")
    inp = layer_input(image, viewer.dims, channel_axis, FAST, all_planes=True)
    stack = PlaneStack(inp.plan, inp.plane_shape)
    stack.put(0, np.ones(inp.plane_shape, np.uint8))
    return inp, stack, show_labels(viewer, inp, stack.snapshot())


def test_write_plane_writes_one_plane_in_place_and_keeps_paint_elsewhere(make_napari_viewer):
    viewer = make_napari_viewer()
    inp, stack, layer = _stack_run_layer(viewer, np.zeros((3, 16, 16)))
    data = layer.data
    layer.brush_size = 1
    layer.paint((0, 3, 3), 7)  # the user corrects a finished plane during the run
    plane = np.full((16, 16), 2, np.uint8)
    assert write_plane(layer, inp, 1, plane)
    assert layer.data is data  # written in place: no copy of the stack
    np.testing.assert_array_equal(layer.data[1], plane)
    assert layer.data[0, 3, 3] == 7 and layer.data[0, 0, 0] == 1  # the paint stays
    assert not layer.data[2].any()
    assert write_plane(layer, inp, 2, plane)  # and the run goes on in this layer
    layer.data[0, 3, 3] = 1  # the paint undone: the layer is as the plugin wrote it
    assert holds_last_write(layer, inp)


def test_write_plane_refuses_a_plane_painted_since_and_a_renamed_layer(make_napari_viewer):
    viewer = make_napari_viewer()
    inp, stack, layer = _stack_run_layer(viewer, np.zeros((3, 16, 16)))
    layer.brush_size = 1
    layer.paint((0, 3, 3), 7)  # painted in the plane the run is training
    before = layer.data.copy()
    assert not write_plane(layer, inp, 0, np.full((16, 16), 2, np.uint8))
    np.testing.assert_array_equal(layer.data, before)  # nothing written: it is the user's
    layer.paint((2, 3, 3), 8)  # painted in a plane the run has not reached: refused there
    assert not write_plane(layer, inp, 2, np.full((16, 16), 2, np.uint8))
    assert write_plane(layer, inp, 1, np.full((16, 16), 2, np.uint8))  # untouched: written
    assert not holds_last_write(layer, inp)  # the layer as a whole was edited
    before = layer.data.copy()
    layer.name = "mine"
    assert not write_plane(layer, inp, 1, np.full((16, 16), 3, np.uint8))
    np.testing.assert_array_equal(layer.data, before)


def test_write_plane_fills_every_channel_and_widens_the_dtype(make_napari_viewer):
    viewer = make_napari_viewer()
    inp, stack, layer = _stack_run_layer(viewer, np.zeros((3, 2, 16, 16)), channel_axis=1)
    assert layer.data.shape == (3, 2, 16, 16)
    layer.data[0, :, 5, 5] = 9  # edited from the console, on both channels: kept
    plane = np.arange(256, dtype=np.uint16).reshape(16, 16) + 1  # 256 labels: uint16
    assert write_plane(layer, inp, 2, plane)
    assert layer.data.dtype == np.uint16
    np.testing.assert_array_equal(layer.data[2, 0], plane)
    np.testing.assert_array_equal(layer.data[2, 1], plane)
    assert (layer.data[0, :, 5, 5] == 9).all()
    assert not write_plane(layer, inp, 0, plane)  # widened, plane 0 is still known as edited
    assert write_plane(layer, inp, 1, plane)


def test_write_plane_redraws_the_plane_shown(make_napari_viewer):
    viewer = make_napari_viewer(show=True)  # a hidden canvas draws nothing
    inp, stack, layer = _stack_run_layer(viewer, np.zeros((3, 16, 16)))
    viewer.layers["vol"].visible = False
    viewer.dims.set_current_step(0, 1)
    before = viewer.screenshot(canvas_only=True, flash=False)
    assert write_plane(layer, inp, 1, np.full((16, 16), 5, np.uint8))
    after = viewer.screenshot(canvas_only=True, flash=False)
    assert not np.array_equal(before, after)  # the new labels are drawn, not only stored


def test_the_status_note_names_the_plane_and_channels_as_the_viewer_shows_them(
    make_napari_viewer,
):
    viewer = make_napari_viewer()
    data = np.zeros((5, 2, 16, 16))
    named = viewer.add_image(data, name="tcyx", axis_labels=("t", "c", "y", "x"))
    viewer.dims.set_current_step(0, 3)
    assert layer_input(named, viewer.dims, channel_axis=1).note == "plane t=3 · 2 channels (c)"
    stack = layer_input(named, viewer.dims, channel_axis=1, all_planes=True)
    assert stack.note == "all 5 planes along t · 2 channels (c)"
    assert layer_input(named, viewer.dims).note == "plane t=3, c=0"
    viewer.layers.clear()

    unnamed = viewer.add_image(data, name="4d")  # napari labels its axes '-4' ... '-1'
    viewer.dims.set_current_step(0, 3)
    note = layer_input(unnamed, viewer.dims, channel_axis=1).note
    assert note == "plane 3 along axis 0 · 2 channels (axis 1)"
    assert layer_input(unnamed, viewer.dims, channel_axis=0).note == (
        "plane 0 along axis 1 · 5 channels (axis 0)"
    )
    viewer.layers.clear()

    assert layer_input(viewer.add_image(np.zeros((16, 16))), viewer.dims).note == ""
    viewer.layers.clear()

    # the viewer shows z, x: the plane is held at y
    volume = viewer.add_image(np.zeros((6, 8, 10)), axis_labels=("z", "y", "x"))
    viewer.dims.order = (1, 0, 2)
    viewer.dims.set_current_step(1, 4)
    assert layer_input(volume, viewer.dims).note == "plane y=4 (z, x)"


def test_a_layer_without_axis_labels_takes_the_names_the_viewer_shows(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((2, 3, 16, 16)), axis_labels=("t", "z", "y", "x"))
    volume = viewer.add_image(np.zeros((3, 16, 16)))  # on the viewer's z, y, x axes
    viewer.dims.set_current_step(1, 2)
    assert layer_input(volume, viewer.dims).note == "plane z=2"


def test_a_layers_channels_count_in_the_memory_check(make_napari_viewer, monkeypatch):
    from napari_unsupervised_segmentation.core import memory

    viewer = make_napari_viewer()
    three = viewer.add_image(np.zeros((3, 32, 32), np.float32), name="three")
    cube = viewer.add_image(np.zeros((300, 32, 32), np.float32), name="cube")
    # the computer's share of a 3-channel plane, and its float32 copy
    three_needs = memory.estimate_bytes(32, 32, FAST, 3)[1] + 3 * 32 * 32 * 4
    monkeypatch.setattr(memory, "available_memory", lambda: three_needs)
    assert layer_input(three, viewer.dims, channel_axis=0, params=FAST).image.shape == (3, 32, 32)
    with pytest.raises(MemoryError, match="a 32 x 32 image with 300 channels needs about"):
        layer_input(cube, viewer.dims, channel_axis=0, params=FAST)


def test_a_lazy_layer_is_read_only_where_it_is_segmented(make_napari_viewer):
    viewer = make_napari_viewer()
    volume = CountingArray(np.stack([_image(seed=s) for s in range(3)]))
    layer = viewer.add_image(volume, name="lazy", contrast_limits=(0, 3))
    volume.pixels_read = 0  # napari has read what it shows
    viewer.dims.set_current_step(0, 1)
    volume.pixels_read = 0
    assert layer_input(layer, viewer.dims, params=FAST).image.shape == (32, 32)
    assert volume.pixels_read == 32 * 32  # the plane shown, not the stack
    volume.pixels_read = 0
    with pytest.raises(ValueError, match="out of range"):
        segment_layer("lazy", viewer, FAST, channel_axis=5)
    with pytest.raises(ValueError, match="both the channel axis and a displayed axis"):
        segment_layer("lazy", viewer, FAST, channel_axis=-1)
    assert volume.pixels_read == 0

    thin = CountingArray(np.zeros((4, 1, 16)))  # planes of 1 x 16 pixels
    viewer.add_image(thin, name="thin", contrast_limits=(0, 1))
    thin.pixels_read = 0
    with pytest.raises(ValueError, match="too small"):
        segment_layer("thin", viewer, FAST, all_planes=True)
    assert thin.pixels_read == 0  # refused before the stack was copied


def test_segment_layer_says_how_many_labels_it_made(make_napari_viewer):
    from napari.utils.notifications import notification_manager

    def last_message() -> str:
        return str(notification_manager.records[-1].message)

    viewer = make_napari_viewer()
    viewer.add_image(_image(), name="img")
    labels = segment_layer("img", viewer, FAST)
    n_labels = int(labels.data.max())
    assert re.fullmatch(
        rf"img labels: {n_labels} labels in 8 iterations, \d+\.\d s", last_message()
    )
    # the stopping rule ends training early: the iterations run are said
    iterations = len(list(iter_segment(_image(), FAST, min_classes=7)))
    assert 1 < iterations < 8
    labels = segment_layer("img", viewer, FAST, min_classes=7)
    said = rf"img labels: {labels.data.max()} labels in {iterations} iterations, \d+\.\d s"
    assert re.fullmatch(said, last_message())

    volume = np.stack([_image(seed=s) for s in range(3)])
    viewer.add_image(volume, name="vol", axis_labels=("z", "y", "x"))
    stack = segment_layer("vol", viewer, FAST, all_planes=True)
    low, high = sorted(int(stack.data[z].max()) for z in range(3))[::2]
    per_plane = f"{low} to {high} labels" if low < high else f"{low} labels"
    expected = (
        rf"vol labels: {per_plane} per plane in 24 iterations, \d+\.\d s · all 3 planes along z"
    )
    assert re.fullmatch(expected, last_message())
