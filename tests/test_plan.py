"""The policy that reads an array's planes, channels and memory needs (core/plan.py), which
the widget, the console and the command line share."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unsupervised_segmentation import SegmentationParams
from napari_unsupervised_segmentation.core import memory
from napari_unsupervised_segmentation.core.plan import (
    LABELS_MEMORY_SHARE,
    AmbiguousChannels,
    channels_are_colour,
    guess_channel_axis,
    labels_folder,
    labels_on_disk,
    plan_plane,
    whole_image_fits,
)


def test_channel_axis_from_names_then_from_shape():
    assert guess_channel_axis((5, 2, 4, 4), "ZCYX") == 1  # a TIFF's C
    assert guess_channel_axis((2, 8, 8, 3), ["", "Y", "X", "S"]) == 3  # colour samples
    assert guess_channel_axis((5, 3, 4, 4), ["z", "c", "y", "x"]) == 1  # napari's labels
    assert guess_channel_axis((5, 4, 4), "ZYX") is None  # every axis named, none channels
    assert guess_channel_axis((4, 4, 3)) == 2  # a photo
    assert guess_channel_axis((4, 4)) is None
    assert guess_channel_axis((5, 6, 7), from_shape=False) is None  # napari: grayscale
    with pytest.raises(AmbiguousChannels, match="cannot tell"):
        guess_channel_axis((5, 6, 7))
    with pytest.raises(AmbiguousChannels, match="both channels"):
        guess_channel_axis((2, 8, 8, 3), "CYXS")


def test_colour_from_a_declaration_a_letter_or_the_channels_last():
    assert channels_are_colour(3, np.uint16)
    assert channels_are_colour(4, np.uint8)
    assert not channels_are_colour(4, np.uint16)  # four stains more often than RGBA
    assert not channels_are_colour(3, np.uint8, channels_last=False)  # (C, H, W): stains
    assert channels_are_colour(3, letter="S")  # a TIFF: colour only on its S axis
    assert not channels_are_colour(3, letter="C") and not channels_are_colour(3, letter="X")
    assert not channels_are_colour(3, np.uint8, declared=False)
    assert channels_are_colour(4, np.uint16, declared=True)


def test_plane_axes_stack_axes_and_held_indices():
    plan = plan_plane((4, 5, 6))  # the last two axes; the first held at 0
    assert (plan.plane_axes, plan.index, plan.stack_axes) == ((1, 2), (0, None, None), ())
    plan = plan_plane((4, 3, 5, 6), channel_axis=1, all_planes=True)
    assert plan.stack_axes == (0,) and plan.n_planes == 4 and plan.engine_channel_axis == 0
    plan = plan_plane((4, 5, 6), (0, 2), (2.6, 0, 0))  # napari shows axes 0 and 2
    assert plan.plane_axes == (0, 2) and plan.index == (None, 0, None)
    # named Y and X are the plane; time before depth
    plan = plan_plane((2, 3, 4, 8, 8), channel_axis=0, all_planes=True, axis_names="CZTYX")
    assert plan.plane_axes == (3, 4) and plan.stack_axes == (2, 1)
    plan = plan_plane((2, 8, 8, 3), all_planes=True, axis_names="QYXS")
    assert plan.plane_axes == (1, 2) and plan.stack_axes == (0, 3)
    with pytest.raises(ValueError, match="both the channel axis and a displayed axis"):
        plan_plane((3, 5, 6), (0, 1), channel_axis=1)


def test_memory_decides_whole_image_or_crops(monkeypatch):
    settings = SegmentationParams(max_classes=10, n_conv=1)
    network, other = memory.estimate_bytes(64, 96, settings, 3)
    monkeypatch.setattr(memory, "available_memory", lambda: network + other)
    assert whole_image_fits(64, 96, settings, network_in_memory=True)
    assert not whole_image_fits(64, 96, settings, network_in_memory=True, extra_bytes=1)
    assert not whole_image_fits(128, 96, settings, network_in_memory=True)
    monkeypatch.setenv(memory.SWITCH, "0")  # the check switched off: whole image
    assert whole_image_fits(128, 96, settings, network_in_memory=True)
    monkeypatch.delenv(memory.SWITCH)


def test_labels_above_a_quarter_of_the_memory_go_to_disk(monkeypatch):
    assert LABELS_MEMORY_SHARE == 0.25
    assert not labels_on_disk((1000, 1000), np.uint8, available=4_000_000)
    assert labels_on_disk((1000, 1000), np.uint8, available=3_999_999)
    assert not labels_on_disk((2, 1000, 1000), np.uint16, available=16_000_000)
    assert labels_on_disk((2, 1000, 1000), np.uint16, available=15_999_999)
    monkeypatch.setattr(memory, "available_memory", lambda: 400)  # the memory available now
    assert not labels_on_disk((10, 10), np.uint8)
    assert labels_on_disk((10, 11), np.uint8)
    monkeypatch.setenv(memory.SWITCH, "0")  # the memory check switched off: in memory
    assert not labels_on_disk((10, 11), np.uint8)
    monkeypatch.delenv(memory.SWITCH)
    monkeypatch.setattr(memory, "available_memory", lambda: None)  # unknown: in memory
    assert not labels_on_disk((10, 11), np.uint8)


def test_labels_on_disk_get_a_new_folder_named_after_the_layer(tmp_path):
    first = labels_folder("scan 1/b", base=tmp_path)
    second = labels_folder("scan 1/b", base=tmp_path)
    assert first != second
    for folder in (first, second):
        assert folder.parent == tmp_path / "napari-unsupervised-segmentation"
        assert folder.name.startswith("scan_1_b-") and folder.suffix == ".zarr"
        assert folder.is_dir() and not any(folder.iterdir())
