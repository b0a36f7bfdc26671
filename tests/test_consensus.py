"""Several networks trained side by side, and the consensus of their labels."""

import numpy as np
import pytest
import torch

from napari_unsupervised_segmentation import iter_segment, segment
from napari_unsupervised_segmentation.core.labels import (
    boundary_votes,
    consensus_labels,
    intersect_labels,
    relabel_consecutive,
)
from napari_unsupervised_segmentation.core.params import SegmentationParams
from napari_unsupervised_segmentation.core.refine import SuperpixelRefiner
from napari_unsupervised_segmentation.core.train import build_model

TINY = dict(n_channels=8, n_superpixels=30, device="cpu")


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label images group the pixels identically (label values aside)."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return pairs.shape[1] == len(np.unique(a)) == len(np.unique(b))


def test_boundary_votes_are_the_share_of_members_that_separate_each_pixel_pair():
    members = [np.array([[1, 1, 2]]), np.array([[1, 2, 2]]), np.array([[1, 1, 2]])]
    vertical, horizontal = boundary_votes(members)
    assert vertical.shape == (0, 3)
    np.testing.assert_allclose(horizontal, [[1 / 3, 2 / 3]])


def test_intersect_labels_splits_wherever_any_member_does():
    first = np.array([[1, 1, 2, 2], [1, 1, 2, 2]])
    second = np.array([[5, 5, 5, 5], [7, 7, 7, 7]])
    expected = np.array([[1, 1, 2, 2], [3, 3, 4, 4]])
    np.testing.assert_array_equal(intersect_labels([first, second]), expected)
    # equal labels in separate places are separate segments
    ring = np.array([[1, 2, 1]])
    np.testing.assert_array_equal(intersect_labels([ring]), [[1, 2, 3]])


def test_consensus_keeps_boundaries_that_most_members_draw_on_colour_edges():
    # Colour steps by 3 between columns 1|2 and 3|4; column 5|6 has no colour edge.
    colour = np.array([0, 0, 3, 3, 6, 6, 6, 6], dtype=np.float64)
    features = np.repeat(colour[np.newaxis], 4, axis=0)[..., np.newaxis]
    every = np.repeat(np.array([[1, 1, 2, 2, 3, 3, 3, 3]]), 4, axis=0)  # both colour edges
    one_odd = every.copy()
    one_odd[:, 6:] = 4  # draws a boundary through uniform colour
    members = [every, every, one_odd]
    # Edge 1|2 costs 3 x 1, edge 3|4 costs 3 x 1, edge 5|6 costs 0 x 1/3: only it goes.
    merged = consensus_labels(members, features, threshold=1.5, smoothing=0)
    assert same_partition(merged, every)
    # A boundary drawn by one member in three (cost 3 x 1/3 = 1) goes at threshold 1.5 ...
    lonely = [every, np.ones_like(every), np.ones_like(every)]
    assert np.unique(consensus_labels(lonely, features, 1.5, smoothing=0)).tolist() == [1]
    # ... but stays when the threshold is lower.
    assert same_partition(consensus_labels(lonely, features, 0.5, smoothing=0), every)


def test_refiner_treats_each_network_on_its_own():
    rng = np.random.default_rng(0)
    superpixels = np.unique(rng.integers(0, 6, (5, 7)), return_inverse=True)[1].reshape(5, 7)
    labels = torch.from_numpy(rng.integers(0, 3, (4, 5, 7)))
    refiner = SuperpixelRefiner(superpixels, 3, torch.device("cpu"))
    refined, counts = refiner(labels)
    assert refined.shape == (4, 5, 7) and counts.shape == (4, 3)
    for network in range(4):
        alone, alone_counts = refiner(labels[network])
        assert torch.equal(refined[network], alone)
        assert torch.equal(counts[network], alone_counts)


def test_network_r_starts_as_a_single_network_seeded_seed_plus_r():
    settings = SegmentationParams(n_channels=4, seed=5)
    together = build_model(3, settings.replace(n_networks=3), torch.device("cpu"))
    for r in range(3):
        alone = build_model(3, settings.replace(seed=5 + r), torch.device("cpu"))
        for (name, mine), theirs in zip(
            together.named_parameters(), alone.parameters(), strict=True
        ):
            rows = slice(4 * r, 4 * (r + 1))
            assert torch.equal(mine[rows], theirs), name


def test_networks_side_by_side_learn_as_they_would_alone():
    image = np.random.default_rng(1).integers(0, 255, (20, 24, 3), dtype=np.uint8)
    run = dict(channel_axis=-1, max_iter=4, min_labels=0, connected_components=True, **TINY)
    alone = [segment(image, "paper", seed=seed, **run) for seed in (3, 4)]
    # consensus_threshold 0 joins nothing: the labels are the members' overlay
    together = segment(image, "paper", seed=3, n_networks=2, consensus_threshold=0.0, **run)
    assert same_partition(together, intersect_labels(alone))


def test_several_networks_stop_when_every_network_meets_the_rule():
    image = np.random.default_rng(2).integers(0, 255, (20, 24, 3), dtype=np.uint8)
    run = dict(channel_axis=-1, n_networks=3, **TINY)
    steps = list(iter_segment(image, max_iter=3, min_labels=0, **run))
    assert [s.iteration for s in steps] == [1, 2, 3] and steps[-1].is_last
    assert all(1 <= s.n_labels <= TINY["n_channels"] for s in steps)
    # every network has <= n_channels labels at once: all stop after the first iteration
    steps = list(iter_segment(image, max_iter=10, min_labels=TINY["n_channels"], **run))
    assert len(steps) == 1 and steps[0].is_last


def test_default_preset_segments_a_two_colour_image_with_several_networks():
    image = np.zeros((24, 32, 3), np.uint8)
    image[:, :16] = (200, 30, 30)
    image[:, 16:] = (20, 40, 220)
    image = np.clip(image + np.random.default_rng(0).normal(0, 8, image.shape), 0, 255)
    labels = segment(image.astype(np.uint8), channel_axis=-1, device="cpu", n_superpixels=40)
    assert labels.dtype == np.uint8 and labels.min() == 1
    left = np.bincount(labels[:, :16].ravel()).argmax()
    right = np.bincount(labels[:, 16:].ravel()).argmax()
    assert left != right
    assert np.mean(labels[:, :16] == left) > 0.95 and np.mean(labels[:, 16:] == right) > 0.95
    np.testing.assert_array_equal(labels, relabel_consecutive(labels))


@pytest.mark.parametrize("n_networks", [1, 3])
def test_seeded_runs_repeat_exactly(n_networks):
    image = np.random.default_rng(3).integers(0, 255, (16, 20, 3), dtype=np.uint8)
    run = dict(channel_axis=-1, max_iter=3, n_networks=n_networks, seed=11, **TINY)
    np.testing.assert_array_equal(segment(image, **run), segment(image, **run))
