"""Volumes segmented as 3D objects: ``spatial_ndim=3`` on tiny synthetic volumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_unsupervised_segmentation import (
    SegmentationParams,
    fit,
    iter_fit,
    iter_segment,
    load_model,
    segment,
)
from napari_unsupervised_segmentation.core.crops import CropSampling
from napari_unsupervised_segmentation.core.labels import relabel_consecutive
from napari_unsupervised_segmentation.core.refine import compute_superpixels
from napari_unsupervised_segmentation.core.train import build_model, continuity_loss
from napari_unsupervised_segmentation.core.volumes import prepare_volumes, volume_layout

#: Small, fast settings for an 8 x 24 x 24 volume: about a second on a 2-core CPU. SLIC
#: weighs space less (compactness) in so small a volume, so that supervoxels follow the ball.
FAST = SegmentationParams(
    max_iter=40,
    min_classes=2,
    n_superpixels=150,
    compactness=0.1,
    max_classes=8,
    n_conv=1,
    device="cpu",
)


def _ball(seed: int = 0, shape=(8, 24, 24)) -> tuple[np.ndarray, np.ndarray]:
    """A bright ball in a dark, noisy uint16 volume whose planes are twice as far apart as
    its pixels (so the ball is 7 voxels deep and 14 wide), and the ball's mask."""
    z, y, x = np.indices(shape)
    centre = (np.array(shape) - 1) / 2
    radius = np.sqrt((2 * (z - centre[0])) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
    inside = radius < 7
    volume = np.random.default_rng(seed).normal(200, 20, shape)
    volume[inside] += 1500
    return np.clip(volume, 0, 65535).astype(np.uint16), inside


@pytest.fixture(scope="module")
def trained():
    """The last step of training on the ball, with 3D connected components, and its model."""
    volume, _ = _ball()
    *_, last = iter_segment(volume, FAST, spatial_ndim=3, label_by="segment")
    return last, last.model


def _ball_label(labels: np.ndarray, inside: np.ndarray) -> int:
    values, counts = np.unique(labels[inside], return_counts=True)
    return int(values[counts.argmax()])


def _assert_one_object(labels: np.ndarray, inside: np.ndarray) -> None:
    """The ball is one label in every plane it crosses, one 3D-connected object."""
    label = _ball_label(labels, inside)
    assert (labels[inside] == label).mean() >= 0.99
    assert inside[labels == label].mean() >= 0.99  # the background is not that label
    for plane, mask in zip(labels, inside, strict=True):
        if mask.any():  # the same label in every plane
            assert (plane[mask] == label).mean() >= 0.95
    _, n_objects = ndimage.label(labels == label)  # face-connected in 3D
    assert n_objects == 1


def test_a_ball_is_one_3d_object_with_one_label_across_planes(trained):
    last, _ = trained
    volume, inside = _ball()
    labels = last.labels
    assert labels.shape == volume.shape and labels.dtype == np.uint8
    assert labels.min() == 1
    _assert_one_object(labels, inside)


def test_anisotropic_spacing_is_accepted_and_weighs_the_supervoxels(trained):
    volume, inside = _ball()
    layout = volume_layout(volume.shape, volume.dtype, stack=False)
    prepared = prepare_volumes(volume, None, layout)
    isotropic = compute_superpixels(prepared, 150, 0.1)
    coarse_z = compute_superpixels(prepared, 150, 0.1, spacing=(2.0, 1.0, 1.0))
    assert not np.array_equal(isotropic, coarse_z)
    # a spacing in micrometres: only the ratio between the axes counts
    in_microns = compute_superpixels(prepared, 150, 0.1, spacing=(1.0, 0.5, 0.5))
    np.testing.assert_array_equal(in_microns, coarse_z)
    labels = segment(volume, FAST, spatial_ndim=3, spacing=(1.0, 0.5, 0.5))
    assert labels.shape == volume.shape
    _assert_one_object(labels, inside)
    # an isotropic spacing changes nothing
    last, _ = trained
    isotropic_labels = segment(
        volume, FAST, spatial_ndim=3, label_by="segment", spacing=(0.3, 0.3, 0.3)
    )
    np.testing.assert_array_equal(isotropic_labels, last.labels)


def test_a_volume_model_labels_the_volume_in_tiles_and_stacks_alike(trained):
    _, model = trained
    assert model.spatial_ndim == 3
    volume, inside = _ball()
    whole = model.predict(volume)
    assert whole.shape == volume.shape and whole.min() >= 1 and whole.max() <= model.n_classes
    assert (whole[inside] == _ball_label(whole, inside)).mean() >= 0.99
    for tile_shape in ((3, 5, 7), (8, 24, 1), (1, 24, 24), (2, 7, 30)):
        np.testing.assert_array_equal(model.predict(volume, tile_shape=tile_shape), whole)
    other, _ = _ball(seed=1)
    stack = model.predict(np.stack([volume, other]))
    assert stack.shape == (2, *volume.shape)
    np.testing.assert_array_equal(stack[0], whole)
    np.testing.assert_array_equal(stack[1], model.predict(other))
    np.testing.assert_array_equal(model.predict(volume[np.newaxis], channel_axis=0), whole)


def test_the_model_labels_the_training_volume_as_training_did():
    volume, _ = _ball()
    *_, last = iter_segment(volume, FAST, spatial_ndim=3)
    # BatchNorm's stored variance is the unbiased one: a voxel on a tie may differ
    agree = relabel_consecutive(last.model.predict(volume)) == last.labels
    assert agree.mean() >= 0.99


def test_a_stack_of_volumes_trains_one_model(trained):
    first, inside = _ball()
    second, _ = _ball(seed=1)
    model = fit(np.stack([first, second]), FAST, spatial_ndim=3)
    assert model.spatial_ndim == 3
    for volume in (first, second):
        labels = model.predict(volume)
        assert (labels[inside] == _ball_label(labels, inside)).mean() >= 0.99


def test_one_volume_fits_as_segment_trains_on_it(trained):
    last, _ = trained
    volume, _ = _ball()
    model = fit(volume, FAST, spatial_ndim=3, label_by="segment")
    np.testing.assert_array_equal(model.predict(volume), last.model.predict(volume))


class RecordingVolume:
    """An array-like that, as dask and zarr do, states its shape and dtype and reads its
    voxels only when indexed; it records the shape of every read."""

    def __init__(self, data: np.ndarray) -> None:
        self._data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.ndim = data.ndim
        self.reads: list[tuple[int, ...]] = []

    def __getitem__(self, index):
        block = self._data[index]
        self.reads.append(block.shape)
        return block

    def __array__(self, dtype=None, copy=None):
        raise AssertionError("the whole volume was read")


def test_large_volumes_train_on_3d_crops_read_region_by_region():
    first, inside = _ball(shape=(12, 36, 36))
    second, _ = _ball(seed=1, shape=(12, 36, 36))
    lazy = RecordingVolume(np.stack([first, second]))
    sampling = CropSampling(size=12, pool=12, batch=3)
    steps = list(iter_fit(lazy, FAST, spatial_ndim=3, crops=sampling))
    assert steps[-1].prediction.shape == (3, 12, 12, 12)  # a batch of 3D crops
    crops = [shape for shape in lazy.reads if len(shape) == 3 and shape[0] == 12]
    assert crops and all(shape == (12, 12, 12) for shape in crops)
    model = steps[-1].model
    assert model.spatial_ndim == 3
    for volume in (first, second):
        labels = model.predict(volume)  # one class for the ball, another around it
        assert (labels[inside] == _ball_label(labels, inside)).mean() >= 0.95
        assert inside[labels == _ball_label(labels, inside)].mean() >= 0.95


def test_crops_false_trains_every_volume_at_once():
    first, inside = _ball()
    model = fit([first, _ball(seed=1)[0]], FAST, spatial_ndim=3, crops=False)
    labels = model.predict(first)
    assert (labels[inside] == _ball_label(labels, inside)).mean() >= 0.99
    with pytest.raises(ValueError, match="one volume shape"):
        fit([first, first[:, :20]], FAST, spatial_ndim=3, crops=False)


def test_save_and_load_keep_a_volume_model(trained, tmp_path):
    _, model = trained
    loaded = load_model(model.save(tmp_path / "ball.pt"))
    assert loaded.spatial_ndim == 3
    assert isinstance(loaded.network.features[0], torch.nn.Conv3d)
    volume, _ = _ball(seed=2)
    np.testing.assert_array_equal(loaded.predict(volume), model.predict(volume))


def test_a_constant_volume_gives_one_label():
    labels = segment(np.full((4, 6, 6), 9, np.uint8), FAST, spatial_ndim=3)
    assert labels.shape == (4, 6, 6) and (labels == 1).all()


@pytest.mark.parametrize("spatial_ndim", [1, 4, True, 3.0, "3"])
def test_spatial_ndim_other_than_2_or_3_is_refused(spatial_ndim):
    with pytest.raises(ValueError, match="spatial_ndim must be 2"):
        segment(np.zeros((4, 6, 6)), FAST, spatial_ndim=spatial_ndim)


@pytest.mark.parametrize(
    ("shape", "channel_axis", "match"),
    [
        ((6, 6), None, "needs 3 dimensions"),
        ((2, 6, 6), 0, "needs 4 dimensions"),
        ((2, 4, 6, 6), None, "one volume at a time"),
        ((1, 6, 6), None, "at least 2 voxels"),
    ],
)
def test_volumes_with_too_few_or_too_many_axes_are_refused(shape, channel_axis, match):
    with pytest.raises(ValueError, match=match):
        segment(np.zeros(shape), FAST, channel_axis=channel_axis, spatial_ndim=3)


def test_graph_superpixels_are_refused_for_volumes():
    with pytest.raises(ValueError, match="2D images only"):
        segment(_ball()[0], FAST, spatial_ndim=3, superpixels="graph", superpixel_scale=50.0)


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0, 1, 1), (1, -1, 1), (1, float("nan"), 1), 2])
def test_a_spacing_that_is_not_one_size_per_axis_is_refused(spacing):
    with pytest.raises(ValueError, match="spacing must be 3 sizes"):
        segment(_ball()[0], FAST, spatial_ndim=3, spacing=spacing)


def test_a_volume_model_refuses_planes_and_flat_tiles(trained):
    _, model = trained
    with pytest.raises(ValueError, match="needs 3 dimensions"):
        model.predict(np.zeros((24, 24)))
    with pytest.raises(ValueError, match="tile_shape of a volume model"):
        model.predict(_ball()[0], tile_shape=(8, 8))
    with pytest.raises(ValueError, match="trained on 1 channel"):
        model.predict(np.zeros((4, 6, 6, 2)), channel_axis=-1)


def test_a_volume_too_big_for_memory_is_refused_before_it_is_read():
    huge = np.broadcast_to(np.uint16(0), (4000, 4000, 4000))  # no memory of its own
    with pytest.raises(MemoryError, match="4000 x 4000 x 4000 volume"):
        segment(huge, FAST, spatial_ndim=3)


def test_continuity_loss_counts_every_spatial_axis():
    responses = torch.zeros(1, 2, 3, 4, 5)
    responses[:, :, 1:] = 1.0  # one step between planes only
    assert float(continuity_loss(responses)) == pytest.approx(0.5)
    responses = torch.zeros(1, 2, 3, 4)
    responses[:, :, :, 2:] = 3.0  # one horizontal step in 3 columns' pairs
    assert float(continuity_loss(responses)) == pytest.approx(1.0)


def test_the_2d_network_and_its_seeded_start_are_those_of_2d_images():
    """Images train as before: the same layers, and the same seeded initial weights."""
    network = build_model(3, SegmentationParams(max_classes=8, seed=0), torch.device("cpu"))
    weights = network.state_dict()
    expected = {  # sums of absolute initial values, seed 0
        "features.0.weight": ((8, 3, 3, 3), 26.171746),
        "features.0.bias": ((8,), 0.842156),
        "features.3.weight": ((8, 8, 3, 3), 61.000016),
        "features.3.bias": ((8,), 0.571176),
        "classifier.weight": ((8, 8, 1, 1), 14.748575),
        "classifier.bias": ((8,), 1.281631),
    }
    for name, (shape, total) in expected.items():
        assert tuple(weights[name].shape) == shape
        assert float(weights[name].double().abs().sum()) == pytest.approx(total, abs=1e-5)
    assert weights["features.0.weight"].is_contiguous(memory_format=torch.channels_last)
    assert not any(
        isinstance(module, torch.nn.Conv3d | torch.nn.BatchNorm3d) for module in network.modules()
    )
