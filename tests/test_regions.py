"""Segment histograms and the merge that weighs them (merge_region_weight), on tiny inputs."""

import numpy as np
import pytest

from napari_unsupervised_segmentation import PRESETS
from napari_unsupervised_segmentation.core.boundaries import N_BINS, enlarge, histogram_cues
from napari_unsupervised_segmentation.core.labels import merge_weak_edges
from napari_unsupervised_segmentation.core.normalize import prepare_image
from napari_unsupervised_segmentation.core.postprocess import LabelFinisher
from napari_unsupervised_segmentation.core.regions import HistogramCues


def stripes(values: list[int], width: int = 4, height: int = 3) -> np.ndarray:
    """``(height, width * len(values))`` map: stripe k holds ``values[k]``."""
    return np.repeat(np.repeat(np.array(values), width)[np.newaxis], height, axis=0)


def test_segments_alike_inside_are_at_distance_zero_and_disjoint_ones_at_one():
    segments = stripes([0, 1, 2])
    colour = stripes([2, 20, 2])  # bins 18 apart: no overlap even after the blur along bins
    cues = HistogramCues([colour] * 3, stripes([0, 5, 0]), is_rgb=True)
    histograms = cues.of_segments(segments)
    assert histograms.distance(0, 2) == pytest.approx(0.0)
    assert histograms.distance(0, 1) == pytest.approx(1.0)
    histograms.join(0, 1)  # segment 0 now holds half of each
    # Per cue: 0.5 * ((0.5 - 1)^2 / 1.5 + 0.5^2 / 0.5) = 1/3.
    assert histograms.distance(0, 2) == pytest.approx(1 / 3)


def test_lab_channels_are_averaged_and_other_channels_count_by_the_largest():
    segments = stripes([0, 1])
    same, differs = stripes([3, 3]), stripes([3, N_BINS - 1])
    textons = stripes([0, 0])
    lab = HistogramCues([differs, same, same], textons, is_rgb=True).of_segments(segments)
    assert lab.distance(0, 1) == pytest.approx(0.75 / 3)  # colour weighs 3/4, one of 3 channels
    stains = HistogramCues([differs, same], textons, is_rgb=False).of_segments(segments)
    assert stains.distance(0, 1) == pytest.approx(0.75)  # an edge in one stain is an edge


def test_region_weight_joins_alike_segments_across_an_edge_and_keeps_different_ones_apart():
    # A | B: a strong edge (0.6) between segments alike inside (say, one meadow in and out of
    # a shadow); B | C: a faint edge (0.2) between different stuff.
    segments = stripes([0, 1, 2])
    edge_map = np.zeros(segments.shape)
    edge_map[:, 3:5] = 0.6
    edge_map[:, 7:9] = 0.2
    cues = HistogramCues([stripes([2, 2, 20])] * 3, stripes([0, 0, 5]), is_rgb=True)
    by_edge = merge_weak_edges(segments, edge_map, 0.4)
    np.testing.assert_array_equal(by_edge[0], np.repeat([1, 2, 2], 4))
    by_edge_and_insides = merge_weak_edges(segments, edge_map, 0.7, regions=cues, region_weight=1.0)
    np.testing.assert_array_equal(by_edge_and_insides[0], np.repeat([1, 1, 2], 4))
    # Weight 0 ignores the histograms.
    np.testing.assert_array_equal(
        merge_weak_edges(segments, edge_map, 0.7, regions=cues, region_weight=0.0), np.ones((3, 12))
    )


def test_large_images_are_binned_at_a_reduced_size_and_enlarged_back():
    rng = np.random.default_rng(0)
    features = rng.uniform(0, 100, (64, 48, 3))
    colour, textons = histogram_cues(features, features[..., 0], max_pixels=32 * 24)
    assert all(index.shape == (32, 24) for index in (*colour, textons))
    assert min(index.min() for index in colour) >= 0 and max(i.max() for i in colour) < N_BINS
    # Nearest-pixel enlargement: every bin is repeated in 2 x 2 blocks.
    large = enlarge(textons, (64, 48))
    assert large.shape == (64, 48)
    np.testing.assert_array_equal(large[::2, ::2], textons)
    np.testing.assert_array_equal(large[::2, ::2], large[1::2, 1::2])


def test_the_finisher_measures_segment_histograms_when_asked():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
    image[:, 20:] = 128  # noise beside flat grey
    cells = stripes([0, 1], width=20, height=40)
    settings = PRESETS["default"].replace(merge_threshold=0.3, merge_region_weight=0.5)
    finish = LabelFinisher(settings, prepare_image(image, -1))
    labels = finish(cells)
    assert labels[0, 0] != labels[0, -1]  # noise and grey differ inside: kept apart
    cues = finish.histogram_cues
    assert cues.is_rgb and len(cues.colour) == 3 and cues.textons.shape == (40, 40)


def test_region_weight_must_be_a_finite_number_of_at_least_zero():
    with pytest.raises(ValueError, match="merge_region_weight"):
        PRESETS["default"].replace(merge_region_weight=-0.1)
