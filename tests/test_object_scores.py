"""Tests of the nucleus object scores (benchmarks/object_scores.py)."""

from __future__ import annotations

import numpy as np
import pytest

import object_scores


def two_nuclei() -> np.ndarray:
    """A 4x4 ground truth: nucleus 1 top-left 2x2, nucleus 2 bottom-right 2x2."""
    gt = np.zeros((4, 4), dtype=np.uint16)
    gt[:2, :2] = 1
    gt[2:, 2:] = 2
    return gt


def test_best_iou_recall_f1_and_foreground() -> None:
    # nucleus 1 exact; nucleus 2 half covered by value 3 (IoU 0.5, not a match); value 1
    # (background) falls into two 4-connected segments: 6 pixels (2 on nucleus 2) and 4
    prediction = np.array(
        [[2, 2, 1, 1], [2, 2, 1, 1], [1, 1, 3, 1], [1, 1, 3, 1]], dtype=np.uint8
    )  # fmt: skip
    stats = object_scores.image_stats(prediction, two_nuclei())
    np.testing.assert_allclose(stats.best_iou, [1.0, 0.5])
    assert (stats.tp, stats.fp, stats.fn) == (1, 1, 1)  # value 3 lies in foreground: FP
    assert stats.n_segments == 4
    # values 2 and 3 are foreground (6 pixels, all on nuclei); value 1 is background
    assert (stats.fg_intersection, stats.fg_union) == (6, 8)
    result = object_scores.combine([stats])
    assert result["best_iou"] == pytest.approx(0.75)
    assert result["recall50"] == pytest.approx(0.5)  # IoU 0.5 does not exceed 0.5
    assert result["f1"] == pytest.approx(2 / (2 + 1 + 1))
    assert result["fg_iou"] == pytest.approx(0.75)


def test_segments_in_background_are_no_false_positives() -> None:
    gt = np.zeros((2, 6), dtype=np.uint16)
    gt[:, :2] = 1
    # the nucleus matched; the background cut into two values (and a third segment, with
    # exactly half of its pixels on the nucleus, which is not "more than half")
    prediction = np.array([[1, 1, 2, 2, 3, 3], [1, 1, 2, 2, 3, 3]])
    stats = object_scores.image_stats(prediction, gt)
    assert (stats.tp, stats.fp, stats.fn) == (1, 0, 0)
    assert object_scores.combine([stats])["f1"] == 1.0
    half = prediction.copy()
    half[:, 1:3] = 4  # 4 pixels, 2 on the nucleus: not in foreground
    stats = object_scores.image_stats(half, gt)
    assert (stats.tp, stats.fp, stats.fn) == (0, 1, 1)  # value 1's column is the FP
    np.testing.assert_allclose(stats.best_iou, [0.5])


def test_predictions_are_split_into_4_connected_segments() -> None:
    # one label value on two diagonal pixels: two segments, each equal to one nucleus
    gt = np.array([[1, 0], [0, 2]], dtype=np.uint16)
    prediction = np.array([[5, 1], [1, 5]])
    stats = object_scores.image_stats(prediction, gt)
    np.testing.assert_allclose(stats.best_iou, [1.0, 1.0])
    assert (stats.tp, stats.fp, stats.fn) == (2, 0, 0)
    assert stats.n_segments == 4


def test_foreground_iou_maps_label_values_before_splitting() -> None:
    gt = np.zeros((2, 4), dtype=np.uint16)
    gt[:, :2] = 1
    # value 9: the nucleus and the last column (6 pixels, 4 on the nucleus: foreground);
    # split first, the last column alone would be background
    prediction = np.array([[9, 9, 3, 9], [9, 9, 3, 9]])
    assert object_scores.foreground_overlap(prediction, gt) == (4, 6)
    assert object_scores.image_stats(prediction, gt).fp == 0  # the column lies in background


def test_combine_pools_nuclei_over_images() -> None:
    first = object_scores.image_stats(two_nuclei(), two_nuclei())  # 2 nuclei, IoU 1
    gt = np.zeros((2, 2), dtype=np.uint16)
    gt[0] = 1
    second = object_scores.image_stats(np.ones((2, 2)), gt)  # 1 nucleus, IoU 0.5
    result = object_scores.combine([first, second])
    assert result["best_iou"] == pytest.approx(2.5 / 3)  # pooled, not (1 + 0.5) / 2
    assert result["recall50"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(4 / (4 + 0 + 1))
    assert result["n_nuclei"] == 3 and result["n_images"] == 2
