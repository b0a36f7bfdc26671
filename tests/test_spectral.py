"""The spectral (normalised-cuts) boundary cue over segments, on synthetic segmentations."""

import numpy as np
import pytest

from napari_unsupervised_segmentation import SegmentationParams
from napari_unsupervised_segmentation.core import boundaries, spectral
from napari_unsupervised_segmentation.core.normalize import prepare_image
from napari_unsupervised_segmentation.core.postprocess import LabelFinisher
from napari_unsupervised_segmentation.core.spectral import spectral_boundaries

#: The texture merge with the boundary alone: no interior or region terms.
TEXTURE = {
    "label_by": "segment",
    "merge": "texture",
    "merge_interior_weight": 0.0,
    "merge_region_weight": 0.0,
}


def two_groups_of_blocks() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """4 x 8 blocks of 6x6 pixels; a weak edge (0.1) around every block, 0.25 between halves.

    Returns the blocks, the edge map and a mask of the pixels along the halves' boundary.
    """
    rows, cols = np.mgrid[:24, :48]
    blocks = (rows // 6) * 8 + cols // 6
    edge_map = np.zeros(blocks.shape)
    edge_map[(rows % 6 == 0) | (rows % 6 == 5) | (cols % 6 == 0) | (cols % 6 == 5)] = 0.1
    between_halves = (cols == 23) | (cols == 24)
    edge_map[between_halves] = 0.25
    return blocks, edge_map, between_halves


def test_the_cue_is_strongest_between_groups_and_zero_off_the_boundaries():
    blocks, edge_map, between_halves = two_groups_of_blocks()
    cue = spectral_boundaries(blocks, edge_map)
    beside_another_block = np.zeros(blocks.shape, bool)
    for axis in (0, 1):
        differs = np.diff(blocks, axis=axis) != 0
        beside_another_block |= np.pad(differs, [(1, 0) if a == axis else (0, 0) for a in (0, 1)])
        beside_another_block |= np.pad(differs, [(0, 1) if a == axis else (0, 0) for a in (0, 1)])
    inside_a_half = beside_another_block & ~between_halves
    assert cue[between_halves].min() > cue[inside_a_half].max()
    assert cue[inside_a_half].min() > 0
    assert np.all(cue[~beside_another_block] == 0)
    assert cue.max() <= spectral.CLIP


def test_spectral_weight_keeps_apart_two_regions_that_the_local_map_alone_joins(monkeypatch):
    blocks, edge_map, _ = two_groups_of_blocks()
    monkeypatch.setattr(boundaries, "texture_gradient", lambda *args, **kwargs: edge_map)
    image = prepare_image(np.random.default_rng(0).random(blocks.shape))
    settings = SegmentationParams(**TEXTURE, merge_threshold=0.3, spectral_weight=0.0)
    finish = LabelFinisher(settings, image)
    # Every boundary's mean edge is under 0.3: the local map alone joins everything.
    np.testing.assert_array_equal(finish(blocks), np.ones(blocks.shape))
    halves = finish(blocks, settings.replace(spectral_weight=0.2, premerge_threshold=0.0))
    np.testing.assert_array_equal(halves, np.where(blocks % 8 < 4, 1, 2))
    # The colour merge has no edge map to add the cue to: the weight is refused there.
    with pytest.raises(ValueError, match="spectral_weight applies only with merge='texture'"):
        settings.replace(merge="colour", spectral_weight=0.2)


def three_bands_of_blocks() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """4 x 12 blocks of 6x6 pixels in three bands of 4 columns; edges 0.05 inside, 0.2 between.

    Returns the blocks, the edge map and the bands (1, 2, 3 from left to right).
    """
    rows, cols = np.mgrid[:24, :72]
    blocks = (rows // 6) * 12 + cols // 6
    edge_map = np.zeros(blocks.shape)
    edge_map[(rows % 6 == 0) | (rows % 6 == 5) | (cols % 6 == 0) | (cols % 6 == 5)] = 0.05
    for first_column in (24, 48):
        edge_map[(cols == first_column - 1) | (cols == first_column)] = 0.2
    return blocks, edge_map, 1 + (cols >= 24) + (cols >= 48)


def test_premerge_recomputes_the_cue_over_the_joined_pieces_and_finds_the_regions(monkeypatch):
    blocks, edge_map, bands = three_bands_of_blocks()
    monkeypatch.setattr(boundaries, "texture_gradient", lambda *args, **kwargs: edge_map)
    image = prepare_image(np.random.default_rng(0).random(blocks.shape))
    settings = SegmentationParams(
        **TEXTURE, merge_threshold=0.22, spectral_weight=0.2, premerge_threshold=0.0
    )
    finish = LabelFinisher(settings, image)
    # Over 48 small blocks the cue keeps pairs of blocks apart inside each band ...
    assert finish(blocks).max() == 12
    # ... over the pieces a first merge leaves, it separates only the bands.
    np.testing.assert_array_equal(finish(blocks, settings.replace(premerge_threshold=0.18)), bands)
    # A premerge threshold above merge_threshold is used as merge_threshold.
    np.testing.assert_array_equal(
        finish(blocks, settings.replace(premerge_threshold=0.5)),
        finish(blocks, settings.replace(premerge_threshold=0.22)),
    )
    # Without the spectral cue, and in the colour merge, there is nothing to recompute.
    for other in ({"spectral_weight": 0.0}, {"merge": "colour"}):
        with pytest.raises(ValueError, match="premerge_threshold applies only with"):
            settings.replace(**other, premerge_threshold=0.18)


def test_the_cue_is_zero_with_fewer_than_three_segments():
    two = np.repeat(np.array([[0, 0, 1, 1]]), 3, axis=0)
    np.testing.assert_array_equal(spectral_boundaries(two, np.full(two.shape, 0.5)), 0)


@pytest.mark.parametrize("n_segments", [4, 32])
def test_coordinates_leave_out_the_trivial_vector_and_keep_the_others(n_segments):
    # A chain of segments; small graphs use all of their spectrum.
    first = np.arange(n_segments - 1)
    affinity = np.linspace(1.0, 2.0, n_segments - 1)
    coordinates = spectral.spectral_coordinates(first, first + 1, affinity, n_segments, 8)
    assert coordinates.shape == (n_segments, min(8, n_segments - 1))
    assert np.all(coordinates.std(axis=0) > 1e-6)  # the constant (trivial) vector is dropped


def test_large_graphs_give_the_dense_solution(monkeypatch):
    blocks, edge_map, _ = two_groups_of_blocks()
    dense = spectral_boundaries(blocks, edge_map)
    monkeypatch.setattr(spectral, "DENSE_LIMIT", 4)  # 32 segments: now solved by Lanczos
    np.testing.assert_allclose(spectral_boundaries(blocks, edge_map), dense, atol=1e-4)


@pytest.mark.parametrize("value", [-0.1, float("inf"), float("nan"), "0.2", True])
def test_spectral_weight_is_validated(value):
    with pytest.raises(ValueError, match="spectral_weight"):
        SegmentationParams(**TEXTURE, spectral_weight=value)


@pytest.mark.parametrize("value", [-0.1, float("inf"), float("nan"), "0.2", True])
def test_premerge_threshold_is_validated(value):
    with pytest.raises(ValueError, match="premerge_threshold"):
        SegmentationParams(**TEXTURE, spectral_weight=0.2, premerge_threshold=value)
