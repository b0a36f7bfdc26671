"""The merge hierarchy: cutting the boundary merge again at any level of detail."""

import numpy as np
import pytest

from napari_unsupervised_segmentation import PRESETS, iter_segment
from napari_unsupervised_segmentation.core.labels import (
    MergeHierarchy,
    MergeSequence,
    clean_up_merged,
    merge_small_segments,
    merge_weak_boundaries,
    merge_weak_edges,
)


def three_stripes() -> tuple[np.ndarray, np.ndarray]:
    """6x9 grey levels 0, 10, 60 in three 3-pixel stripes, and the stripes as segments."""
    segments = np.repeat(np.arange(3)[None, :], 3, axis=1).repeat(6, axis=0)
    features = np.array([0.0, 10.0, 60.0])[segments][..., None]
    return segments, features


STRIPES = np.repeat([[1, 2, 3]], 3, axis=1).repeat(6, axis=0)
FIRST_TWO = np.repeat([[1, 1, 2]], 3, axis=1).repeat(6, axis=0)


def stripe_hierarchy(threshold: float, max_segments: int = 0) -> MergeHierarchy:
    """The stripes' colour merge recorded to the end; level 0 at ``threshold``."""
    segments, features = three_stripes()
    record = MergeSequence()
    merge_weak_boundaries(segments, features, np.inf, smoothing=0, record=record)
    own = record.count(threshold, max_segments)
    return MergeHierarchy([(record, own)])


def test_a_sequence_cut_at_any_threshold_gives_the_merge_to_that_threshold():
    segments, features = three_stripes()
    record = MergeSequence()
    everything = merge_weak_boundaries(segments, features, np.inf, smoothing=0, record=record)
    np.testing.assert_array_equal(everything, np.ones((6, 9)))
    assert record.n_joins == 2
    for threshold, joins, expected in ((5, 0, STRIPES), (30, 1, FIRST_TWO), (70, 2, 1)):
        assert record.count(threshold) == joins
        np.testing.assert_array_equal(record.labels(joins), np.broadcast_to(expected, (6, 9)))
        merged = merge_weak_boundaries(segments, features, threshold, smoothing=0)
        np.testing.assert_array_equal(merged, record.labels(joins))
    # the cap goes on past the threshold until at most that many segments are left
    assert record.count(5, max_segments=2) == 1
    assert record.count(5, max_segments=1) == 2
    assert record.count(30, max_segments=3) == 1


def test_detail_levels_double_or_halve_the_segments_from_the_settings_cut():
    hierarchy = stripe_hierarchy(30.0)  # the settings' merge joins the two darker stripes
    assert hierarchy.reference == 2
    np.testing.assert_array_equal(hierarchy.labels(), FIRST_TWO)
    np.testing.assert_array_equal(hierarchy.labels(0.6), STRIPES)  # 2 * 2^0.6: 3
    np.testing.assert_array_equal(hierarchy.labels(3.0), STRIPES)  # never more than at the start
    np.testing.assert_array_equal(hierarchy.labels(-1.0), np.ones((6, 9)))
    assert [hierarchy.n_segments(d) for d in (-5, -1, 0, 0.6, 5)] == [1, 1, 2, 3, 3]
    low, high = hierarchy.detail_range
    assert low == pytest.approx(-1.0) and high == pytest.approx(np.log2(1.5))
    # a settings' cut at no join: only coarser levels
    finest = stripe_hierarchy(5.0)
    np.testing.assert_array_equal(finest.labels(), STRIPES)
    np.testing.assert_array_equal(finest.labels(-0.6), FIRST_TWO)
    np.testing.assert_array_equal(finest.labels(-1.6), np.ones((6, 9)))


def test_a_level_is_a_cap_on_the_segments_of_the_same_merge():
    segments = np.repeat(np.arange(6)[None, :], 2, axis=1).repeat(4, axis=0)  # six stripes
    edge_map = np.zeros((4, 12))
    for column, strength in zip((1, 3, 5, 7, 9), (0.5, 0.1, 0.9, 0.3, 0.7), strict=True):
        edge_map[:, column : column + 2] = strength  # the pixels on either side of a boundary
    record = MergeSequence()
    merge_weak_edges(segments, edge_map, np.inf, record=record)
    hierarchy = MergeHierarchy([(record, record.count(0.2))])
    assert hierarchy.reference == 5
    for detail in (-2.4, -1.4, -0.8, -0.3, 0.0, 0.3):
        count = hierarchy.n_segments(detail)
        capped = merge_weak_edges(segments, edge_map, 0.0, max_segments=count)
        np.testing.assert_array_equal(hierarchy.labels(detail), capped)
    assert [hierarchy.n_segments(d) for d in (-2.4, -1.4, -0.8, -0.3, 0.3)] == [1, 2, 3, 4, 6]


def shapes_image() -> np.ndarray:
    """48x64 RGB: a dark disc, a bright square and a striped band on a mid-grey ground."""
    rows, cols = np.mgrid[:48, :64]
    image = np.full((48, 64, 3), 120, np.uint8)
    image[(rows - 24) ** 2 + (cols - 14) ** 2 < 100] = (30, 40, 160)
    image[8:28, 34:56] = (230, 200, 60)
    image[34:46, 30:62] = np.where(((cols[34:46, 30:62] // 3) % 2)[..., None], 200, 90)
    noise = np.random.default_rng(0).normal(0, 6, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("preset", "overrides"),
    [
        ("default", {}),
        ("default", {"max_segments": 3}),
        ("default", {"spectral_weight": 0.0}),
        ("default", {"merge": "colour", "merge_threshold": 12.0}),
        ("default", {"merge": "colour", "merge_threshold": 12.0, "max_segments": 3}),
        ("default", {"merge": "off"}),
        ("paper", {}),
        (
            "paper",
            {
                "label_by": "segment",
                "merge": "colour",
                "merge_threshold": 10.0,
                "min_segment_size": 8,
                "min_segment_width": 3,
            },
        ),
    ],
)
def test_level_zero_is_exactly_the_finished_labels(preset, overrides):
    *_, last = iter_segment(shapes_image(), preset, channel_axis=-1, max_iter=4, **overrides)
    hierarchy = last.hierarchy
    labels = hierarchy.labels(0.0)
    np.testing.assert_array_equal(labels, last.labels)
    assert labels.dtype == last.labels.dtype
    low, high = hierarchy.detail_range
    counts = [int(hierarchy.labels(d).max()) for d in np.linspace(low, high, 7)]
    assert counts[0] <= int(labels.max()) <= counts[-1]
    assert counts == sorted(counts)  # more detail: never fewer segments


def test_a_level_of_the_engine_is_the_labels_of_a_merge_capped_at_its_count():
    image = shapes_image()
    colour = {"merge": "colour", "merge_interior_weight": 0.0, "max_iter": 4}
    *_, last = iter_segment(image, "default", channel_axis=-1, merge_threshold=12.0, **colour)
    hierarchy = last.hierarchy
    for detail in (-1.0, 1.0):
        count = hierarchy.n_segments(detail)
        *_, capped = iter_segment(
            image, "default", channel_axis=-1, merge_threshold=0.0, max_segments=count, **colour
        )
        np.testing.assert_array_equal(hierarchy.labels(detail), capped.labels)


def test_constant_image_has_one_segment_at_every_level():
    *_, last = iter_segment(np.full((12, 16), 7, np.uint8), PRESETS["default"])
    for detail in (-2.0, 0.0, 2.0):
        np.testing.assert_array_equal(last.hierarchy.labels(detail), np.ones((12, 16)))


@pytest.mark.parametrize("seed", [85, 144])
def test_every_cut_is_what_the_clean_up_makes_of_it_step_by_step(seed):
    rng = np.random.default_rng(seed)
    # cells of a weighted Voronoi diagram: slivers and crooked rims for the clean-up
    points, weights = rng.random((25, 2)) * 24, rng.random(25) * 20
    rows, cols = np.mgrid[:24, :24]
    squared = (rows[..., None] - points[:, 0]) ** 2 + (cols[..., None] - points[:, 1]) ** 2
    segments = merge_small_segments((squared - weights).argmin(-1), 4)
    record = MergeSequence()
    merge_weak_edges(segments, rng.random((24, 24)), np.inf, interior_weight=0.3, record=record)
    for n_joins in range(record.n_joins + 1):
        hierarchy = MergeHierarchy([(record, n_joins)], min_segment_size=4, min_segment_width=5)
        expected = clean_up_merged(record.labels(n_joins), 4, 5)
        cut = hierarchy.labels(0.0)
        np.testing.assert_array_equal(cut, expected)
        assert cut.dtype == expected.dtype
