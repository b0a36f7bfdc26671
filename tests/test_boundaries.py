"""Texture-aware boundaries, graph-based cuts and the label finisher, on synthetic images."""

import numpy as np
import pytest

from napari_unsupervised_segmentation import PRESETS, SegmentationParams, iter_segment
from napari_unsupervised_segmentation.core import boundaries
from napari_unsupervised_segmentation.core.boundaries import (
    bin_weights,
    half_disc_chi2,
    kmeans,
    texton_map,
    texture_gradient,
)
from napari_unsupervised_segmentation.core.labels import (
    boundary_edge_strength,
    local_contrast,
    merge_weak_edges,
)
from napari_unsupervised_segmentation.core.normalize import prepare_image
from napari_unsupervised_segmentation.core.postprocess import finish_labels
from napari_unsupervised_segmentation.core.refine import colour_features

#: Segments merged by the texture gradient alone (no interior, region or spectral cue).
TEXTURE_MERGE = dict(
    label_by="segment",
    merge="texture",
    merge_threshold=0.3,
    merge_interior_weight=0.0,
    merge_region_weight=0.0,
    spectral_weight=0.0,
)


def checker_beside_grey() -> tuple[np.ndarray, np.ndarray]:
    """48x64 RGB: a 2-pixel black-and-white checkerboard left, flat grey right; its cells."""
    rows, cols = np.mgrid[:48, :64]
    checker = (rows // 2 + cols // 2) % 2 == 1
    image = np.full((48, 64, 3), 128, np.uint8)
    image[(cols < 32) & checker] = 20
    image[(cols < 32) & ~checker] = 235
    cells = np.where(cols < 32, checker.astype(int), 2)  # what a network might label
    return image, cells


def test_half_disc_chi2_is_one_across_a_step_and_zero_away_from_it_and_at_the_border():
    index = np.zeros((32, 32), np.int64)
    index[:, 16:] = 1
    gradient = half_disc_chi2(index, 2, radius=5)
    np.testing.assert_allclose(gradient[:, 15:17], 1.0, atol=1e-6)  # halves hold one bin each
    np.testing.assert_allclose(gradient[:, :10], 0.0, atol=1e-6)  # both halves: the same bin
    np.testing.assert_allclose(gradient[:, 22:], 0.0, atol=1e-6)  # no edge at the image border


def test_texture_gradient_is_low_inside_an_even_texture_and_high_at_its_edge():
    image, _ = checker_beside_grey()
    features = colour_features(prepare_image(image, -1))
    gradient = texture_gradient(features, features[..., 0])
    assert gradient[:, :20].max() < 0.25  # steps of 90 Lab units everywhere, yet no edge
    assert gradient[:, 31:33].min() > 0.8  # where the texture meets the grey
    assert gradient[:, 44:].max() < 1e-6
    # Plain colour contrast sees an edge every second pixel across the texture.
    step = np.linalg.norm(np.diff(features[:, :20], axis=1), axis=-1)
    assert (step[:, 1::2] > 50).all()


def test_texture_merge_joins_an_even_texture_that_colour_merge_keeps_apart():
    image, cells = checker_beside_grey()
    prepared = prepare_image(image, -1)
    settings = PRESETS["paper"].replace(**TEXTURE_MERGE)
    labels = finish_labels(cells, settings, prepared)
    assert len(np.unique(labels[:, :20])) == 1  # the texture, away from its edge: one segment
    assert len(np.unique(labels[:, 44:])) == 1
    assert labels[0, 0] != labels[0, -1]
    colour = finish_labels(cells, settings.replace(merge="colour", merge_threshold=2.0), prepared)
    assert len(np.unique(colour[:, :20])) == 24 * 10  # every 2x2 cell stays its own segment


def test_boundary_edge_strength_sums_the_mean_edge_of_each_pixel_pair():
    segments = np.array([[0, 0, 1], [0, 0, 1]])
    edge_map = np.array([[0.0, 0.2, 0.6], [0.0, 0.4, 1.0]])
    first, second, length, total = boundary_edge_strength(segments, edge_map)
    assert (first.tolist(), second.tolist(), length.tolist()) == ([0], [1], [2])
    np.testing.assert_allclose(total, [(0.2 + 0.6) / 2 + (0.4 + 1.0) / 2])


def test_merge_weak_edges_removes_only_boundaries_weaker_than_the_threshold():
    segments = np.repeat(np.array([[0, 0, 1, 1, 2, 2]]), 4, axis=0)
    edge_map = np.zeros(segments.shape)
    edge_map[:, 3:5] = 0.8  # strong around the boundary between segments 1 and 2
    merged = merge_weak_edges(segments, edge_map, threshold=0.5)
    np.testing.assert_array_equal(merged, np.repeat(np.array([[1, 1, 1, 1, 2, 2]]), 4, axis=0))
    np.testing.assert_array_equal(merge_weak_edges(segments, edge_map, 1.0), np.ones((4, 6)))


def test_max_segments_keeps_joining_the_weakest_boundaries_past_the_threshold():
    # Four segments; boundaries 0|1 (0.3), 1|2 (0.9), 2|3 (0.6), all above the threshold 0.2.
    segments = np.repeat(np.repeat(np.arange(4), 4)[np.newaxis], 3, axis=0)
    edge_map = np.zeros(segments.shape)
    edge_map[:, 3:5] = 0.3
    edge_map[:, 7:9] = 0.9
    edge_map[:, 11:13] = 0.6
    np.testing.assert_array_equal(merge_weak_edges(segments, edge_map, 0.2), segments + 1)
    capped = merge_weak_edges(segments, edge_map, 0.2, max_segments=2)
    np.testing.assert_array_equal(capped[0], np.repeat([1, 1, 2, 2], 4))  # 0|1, then 2|3
    three = merge_weak_edges(segments, edge_map, 0.2, max_segments=3)
    np.testing.assert_array_equal(three[0], np.repeat([1, 1, 2, 3], 4))
    # Under the cap already: the threshold alone decides (0|1 and 2|3 are below 0.7).
    np.testing.assert_array_equal(
        merge_weak_edges(segments, edge_map, 0.7, max_segments=3)[0], np.repeat([1, 1, 2, 2], 4)
    )


def test_max_segments_alone_joins_the_closest_colours_until_the_cap():
    # Four stripes: black, dark grey, red, a slightly darker red; no merge threshold.
    colours = np.array([[0, 0, 0], [25, 25, 25], [255, 0, 0], [245, 0, 0]], np.uint8)
    stripes = np.repeat(np.repeat(np.arange(4), 5)[np.newaxis], 4, axis=0)
    prepared = prepare_image(colours[stripes], -1)
    paper = PRESETS["paper"]  # one label per class
    np.testing.assert_array_equal(finish_labels(stripes, paper, prepared), stripes + 1)
    merge = {"label_by": "segment", "merge": "colour", "merge_threshold": 0.0}
    three = finish_labels(stripes, paper.replace(**merge, max_segments=3), prepared)
    np.testing.assert_array_equal(three[0], np.repeat([1, 2, 3, 3], 5))  # the two reds
    two = finish_labels(stripes, paper.replace(**merge, max_segments=2), prepared)
    np.testing.assert_array_equal(two[0], np.repeat([1, 1, 2, 2], 5))  # then black and grey


def test_interior_weight_joins_pieces_of_a_busy_region_but_not_of_a_calm_one():
    # Four 4-column segments; the boundaries 0|1 and 2|3 both have mean edge 0.3, 1|2 is 1.0.
    segments = np.repeat(np.repeat(np.arange(4), 4)[np.newaxis], 3, axis=0)
    edge_map = np.zeros(segments.shape)
    edge_map[:, :8] = 0.4  # segments 0 and 1: a texture, busy inside
    edge_map[:, 3:5] = 0.3  # the columns on either side of 0|1
    edge_map[:, 7:9] = 1.0  # 1|2: a real edge
    edge_map[:, 11:13] = 0.3  # 2|3 inside a calm region (0 elsewhere)
    # Judged alone, 0|1 and 2|3 are equally strong: a threshold of 0.21 keeps all four.
    np.testing.assert_array_equal(merge_weak_edges(segments, edge_map, 0.21), segments + 1)
    # Against the insides: 0|1 counts 0.3 - 0.5 * min(0.375, 0.525) = 0.1125 < 0.21 and joins;
    # 2|3 counts 0.3 - 0.5 * min(0.325, 0.075) = 0.2625 and stays; 1|2 stays.
    merged = merge_weak_edges(segments, edge_map, 0.21, interior_weight=0.5)
    np.testing.assert_array_equal(merged[0], np.repeat([1, 1, 2, 3], 4))
    # A weight of 0 is the plain merge.
    np.testing.assert_array_equal(
        merge_weak_edges(segments, edge_map, 0.21, interior_weight=0.0), segments + 1
    )


def test_interior_weight_uses_the_joined_inside_of_merged_segments():
    # 0|1 joins first (weakest); the joined segment's inside is the mean over all its pixels
    # (not the mean of the two means), which decides whether its boundary with 2 then counts
    # as weak.
    segments = np.repeat(np.array([[0, 0, 0, 1, 1, 2, 2]]), 2, axis=0)
    edge_map = np.repeat(np.array([[0.6, 0.6, 0.0, 0.0, 0.2, 0.2, 0.6]]), 2, axis=0)
    # Insides 0.4, 0.1, 0.4. 0|1: 0.0 - 0.5 * 0.1 = -0.05; 1|2: 0.2 - 0.5 * 0.1 = 0.15 before
    # the join, then 0.2 - 0.5 * min(1.4 / 5 = 0.28, 0.4) = 0.06 after it (with the mean of
    # the two means, 0.25, it would be 0.075; without updating it, 0.15).
    at_007 = merge_weak_edges(segments, edge_map, 0.07, interior_weight=0.5)
    np.testing.assert_array_equal(at_007[0], [1] * 7)
    stricter = merge_weak_edges(segments, edge_map, 0.05, interior_weight=0.5)
    np.testing.assert_array_equal(stricter[0], [1, 1, 1, 1, 1, 2, 2])


def test_local_contrast_is_the_mean_step_to_the_in_image_neighbours():
    values = np.arange(6.0).reshape(2, 3, 1)  # steps of 1 along rows, 3 between them
    np.testing.assert_allclose(local_contrast(values), [[2, 5 / 3, 2], [2, 5 / 3, 2]])


def test_cut_scale_cuts_a_network_segment_along_an_image_edge():
    image = np.zeros((40, 30, 3), np.uint8)
    image[:, 12:] = (230, 220, 40)
    prepared = prepare_image(image, -1)
    one_label = np.zeros((40, 30), np.int64)
    settings = PRESETS["paper"].replace(label_by="segment")
    assert finish_labels(one_label, settings, prepared).max() == 1
    cut = finish_labels(one_label, settings.replace(cut_scale=100.0), prepared)
    assert cut.max() == 2
    assert len(np.unique(cut[:, :12])) == 1 and len(np.unique(cut[:, 12:])) == 1


def test_a_sharp_outline_leaves_no_slivers_with_the_default():
    # Graph-based segmentation blurs a sharp step into 1-pixel lines of their own.
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, 30:] = (230, 220, 40)
    halves = np.zeros((40, 60), np.int64)
    halves[:, 30:] = 1
    labels = finish_labels(halves, PRESETS["default"], prepare_image(image, -1))
    np.testing.assert_array_equal(labels, halves + 1)


def test_end_bins_weigh_as_much_as_the_others():
    index = np.zeros((32, 32), np.int64)
    index[:, 16:] = 23  # black against white: the two end bins of 24
    gradient = half_disc_chi2(index, 24, radius=5, smoothing=1.5)
    np.testing.assert_allclose(gradient[:, 15:17], 1.0, atol=1e-5)
    weights = bin_weights(np.array([[0, 5, 23]]), np.arange(24), 1.5, 24)
    np.testing.assert_allclose(weights.sum(axis=0), 1.0, atol=1e-6)


def test_an_edge_in_one_of_many_channels_is_as_strong_as_in_a_single_channel():
    strengths = []
    for n_channels in (1, 4):
        features = np.zeros((40, 60, n_channels))
        features[:, 30:, 0] = 100  # e.g. a nucleus seen in one stain only
        gradient = texture_gradient(features, features.mean(axis=-1), is_rgb=False)
        strengths.append(gradient[:, 29:31].min())
    np.testing.assert_allclose(strengths, 1.0, atol=1e-5)


def test_a_tiny_image_still_gets_a_full_strength_edge():
    features = np.zeros((8, 8, 3))
    features[:, 4:] = 100
    gradient = texture_gradient(features, features[..., 0])
    assert gradient[:, 3:5].min() > 0.7


def test_merge_and_cut_scale_are_validated():
    with pytest.raises(ValueError, match="merge must be 'off', 'colour', 'texture'"):
        SegmentationParams(label_by="segment", merge="edges")
    with pytest.raises(ValueError, match="cut_scale must be number >= 0"):
        SegmentationParams(label_by="segment", cut_scale=-1.0)


def test_a_run_computes_the_texture_gradient_once_for_all_its_steps(monkeypatch):
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return texture_gradient(*args, **kwargs)

    monkeypatch.setattr(boundaries, "texture_gradient", counting)
    image, _ = checker_beside_grey()
    steps = iter_segment(
        image, "default", channel_axis=-1, device="cpu", max_iter=3, min_classes=0,
        merge_threshold=0.3, n_superpixels=50,
    )  # fmt: skip
    labels = [step.labels for step in steps]
    assert len(labels) == 3 and len(calls) == 1


def test_kmeans_finds_separated_clusters_and_textons_repeat_with_the_seed():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(0, 0.1, (200, 2)), rng.normal(5, 0.1, (200, 2))])
    centres = kmeans(points, 2, np.random.default_rng(1))
    np.testing.assert_allclose(np.sort(centres[:, 0]), [0.0, 5.0], atol=0.05)
    lightness = rng.uniform(0, 100, (40, 50))
    np.testing.assert_array_equal(texton_map(lightness, seed=3), texton_map(lightness, seed=3))
    assert not np.array_equal(texton_map(lightness, seed=3), texton_map(lightness, seed=4))


def test_texture_gradient_of_a_large_image_is_measured_smaller_and_scaled_back():
    image, _ = checker_beside_grey()
    features = colour_features(prepare_image(image, -1))
    gradient = texture_gradient(features, features[..., 0], max_pixels=48 * 64 // 4)
    assert gradient.shape == (48, 64) and gradient.dtype == np.float32
    assert gradient[:, 30:34].min() > 0.8  # the edge, its band twice as wide as at full size
    assert gradient[:, :8].max() < 0.3 and gradient[:, 56:].max() < 0.05


def test_min_segment_width_gives_rims_along_an_outline_to_their_neighbours():
    rows, cols = np.mgrid[:48, :48]
    radius = np.hypot(rows - 24, cols - 24)
    prediction = np.where(radius < 10, 1, np.where(radius < 13, 2, 0))  # a 3-pixel rim
    image = np.zeros((48, 48, 3), np.uint8)
    image[radius < 11.5] = 200
    prepared = prepare_image(image, -1)
    settings = PRESETS["paper"].replace(label_by="segment")
    assert finish_labels(prediction, settings, prepared).max() == 3
    labels = finish_labels(prediction, settings.replace(min_segment_width=5), prepared)
    assert labels.max() == 2
    assert labels[24, 24] != labels[0, 0]  # disc and background stay apart
    with pytest.raises(ValueError, match="min_segment_width must be integer >= 0"):
        SegmentationParams(label_by="segment", min_segment_width=-1)
