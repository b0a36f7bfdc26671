"""Object scores of a nucleus segmentation against instance labels (Data Science Bowl 2018).

The definitions are those of ``shared/data/dsb2018/README.md``. Every prediction is first
split into 4-connected segments; then, with IoU(g, s) the intersection over union of a
ground-truth nucleus g and a predicted segment s:

- best IoU: for every nucleus the highest IoU with any segment, the mean over all nuclei
  of the split (pooled);
- recall50: the share of nuclei whose best IoU exceeds 0.5;
- F1@0.5: a pair with IoU > 0.5 is a match (one-to-one); false positives are the unmatched
  segments with more than half of their pixels in ground-truth foreground, so that a
  background cut into pieces costs nothing;
- foreground IoU: each label value of the prediction, before splitting, is foreground when
  most of its pixels lie in ground-truth foreground (the oracle mapping of clusters to
  classes); intersection and union with the ground-truth foreground summed over the split.

Each image yields an :class:`ImageStats` (sufficient statistics); :func:`combine` pools
them. All counts come from sparse contingency tables (``np.unique`` of pixel pairs).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:
    from napari_unsupervised_segmentation.core.labels import split_connected_components
except ImportError:  # a source checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from napari_unsupervised_segmentation.core.labels import split_connected_components


@dataclass(frozen=True)
class ImageStats:
    """Sufficient statistics of one image for :func:`combine`.

    Attributes
    ----------
    best_iou : np.ndarray
        The best IoU of every ground-truth nucleus, in label order.
    tp, fp, fn : int
        Matched nuclei, unmatched in-foreground segments, unmatched nuclei.
    fg_intersection, fg_union : int
        Pixels of the intersection and union of the predicted (oracle-mapped) foreground
        with the ground-truth foreground.
    n_segments : int
        The number of 4-connected segments of the prediction.
    """

    best_iou: np.ndarray
    tp: int
    fp: int
    fn: int
    fg_intersection: int
    fg_union: int
    n_segments: int


def _pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct ``(a, b)`` value pairs of two label images and their pixel counts."""
    a = a.ravel().astype(np.int64)
    b = b.ravel().astype(np.int64)
    base = int(b.max()) + 1
    keys, counts = np.unique(a * base + b, return_counts=True)
    return keys // base, keys % base, counts


def foreground_overlap(prediction: np.ndarray, gt: np.ndarray) -> tuple[int, int]:
    """Intersection and union (pixels) of the oracle-mapped predicted foreground with ``gt > 0``.

    A label value of ``prediction`` is foreground when more than half of its pixels lie in
    ground-truth foreground.
    """
    _, inverse = np.unique(prediction, return_inverse=True)
    inverse = inverse.reshape(prediction.shape)
    truth = gt > 0
    area = np.bincount(inverse.ravel())
    inside = np.bincount(inverse.ravel(), weights=truth.ravel(), minlength=len(area))
    predicted = (2 * inside > area)[inverse]
    return int(np.sum(predicted & truth)), int(np.sum(predicted | truth))


def image_stats(prediction: np.ndarray, gt: np.ndarray) -> ImageStats:
    """The statistics of one prediction against instance labels ``gt`` (0 = background).

    Parameters
    ----------
    prediction : np.ndarray
        ``(H, W)`` integer labels, any values; split into 4-connected segments here.
    gt : np.ndarray
        ``(H, W)`` instance labels, 0 background, 1..k one per nucleus (gaps allowed).
    """
    prediction = np.asarray(prediction)
    gt = np.asarray(gt)
    if prediction.shape != gt.shape:
        raise ValueError(f"prediction {prediction.shape} and ground truth {gt.shape} differ")
    segments = split_connected_components(prediction)
    n_segments = int(segments.max())
    nuclei = np.unique(gt[gt > 0])
    gt_area = np.bincount(gt.ravel().astype(np.int64))
    seg_area = np.bincount(segments.ravel().astype(np.int64), minlength=n_segments + 1)
    g, s, inter = _pairs(gt, segments)
    iou = inter / (gt_area[g] + seg_area[s] - inter)
    best = np.zeros(len(gt_area))
    on_nucleus = g > 0
    np.maximum.at(best, g[on_nucleus], iou[on_nucleus])
    matched = on_nucleus & (iou > 0.5)  # one-to-one: IoU > 0.5 leaves room for one partner
    in_background = np.zeros(n_segments + 1, dtype=np.int64)
    in_background[s[~on_nucleus]] = inter[~on_nucleus]
    in_foreground = 2 * (seg_area - in_background) > seg_area
    in_foreground[0] = False  # no segment has label 0
    is_matched = np.zeros(n_segments + 1, dtype=bool)
    is_matched[s[matched]] = True
    tp = int(matched.sum())
    intersection, union = foreground_overlap(prediction, gt)
    return ImageStats(
        best_iou=best[nuclei],
        tp=tp,
        fp=int(np.sum(in_foreground & ~is_matched)),
        fn=len(nuclei) - tp,
        fg_intersection=intersection,
        fg_union=union,
        n_segments=n_segments,
    )


def combine(stats: Sequence[ImageStats]) -> dict[str, float]:
    """Pool per-image statistics into the split's scores.

    Returns
    -------
    dict
        ``best_iou``, ``recall50``, ``f1``, ``fg_iou``, ``n_nuclei``, ``n_images`` and
        ``median_segments``.
    """
    best = np.concatenate([item.best_iou for item in stats]) if stats else np.zeros(0)
    tp = sum(item.tp for item in stats)
    fp = sum(item.fp for item in stats)
    fn = sum(item.fn for item in stats)
    union = sum(item.fg_union for item in stats)
    return {
        "best_iou": float(best.mean()) if best.size else float("nan"),
        "recall50": float(np.mean(best > 0.5)) if best.size else float("nan"),
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan"),
        "fg_iou": sum(item.fg_intersection for item in stats) / union if union else float("nan"),
        "n_nuclei": int(best.size),
        "n_images": len(stats),
        "median_segments": float(np.median([item.n_segments for item in stats]))
        if stats
        else float("nan"),
    }
