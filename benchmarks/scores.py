"""Region scores of a segmentation against the BSDS500 human annotations.

The definitions are those of ``shared/data/bsds500/README.md``:

- mIoU, TIP protocol (Kim, Kanezaki and Tanaka, IEEE TIP 2020): for every ground-truth
  segment the best IoU over the predicted segments, averaged over all ground-truth segments
  of the split (modes ``all``, ``fine``: the annotation with most segments, ``coarse``: the
  one with fewest, first on ties);
- Segmentation Covering (SC), Probabilistic Rand Index (PRI) and Variation of Information
  (VI, log2) (Arbelaez et al., IEEE TPAMI 2011), SC pooled over the split, PRI and VI
  averaged over annotations, then over images;
- AP@0.5 and AP@0.7 (after Kanezaki, ICASSP 2018): predicted segments ranked by decreasing
  size, averaged over images.

Every prediction is first split into 4-connected segments. Each image yields an
:class:`ImageStats` (the sufficient statistics); :func:`combine` pools them into one row.
All counts come from one contingency table per image, built with ``np.bincount``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

try:
    from napari_unsupervised_segmentation.core.labels import (
        relabel_consecutive,
        split_connected_components,
    )
except ImportError:  # a source checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from napari_unsupervised_segmentation.core.labels import (
        relabel_consecutive,
        split_connected_components,
    )

__all__ = ["AP_THRESHOLDS", "ImageStats", "combine", "image_stats", "score"]

#: IoU thresholds of the two AP columns (a hit needs an IoU strictly above them).
AP_THRESHOLDS: tuple[float, float] = (0.5, 0.7)

# Largest dense (ground truth x prediction) table built with bincount; above it, np.unique.
_DENSE_PAIRS_MAX = 4_000_000


@dataclass(frozen=True)
class ImageStats:
    """Sufficient statistics of one image; :func:`combine` pools them over a split.

    Attributes
    ----------
    iou_all, iou_fine, iou_coarse : float
        Sum of the best IoUs of the ground-truth segments (all annotations, the finest, the
        coarsest).
    n_all, n_fine, n_coarse : int
        Number of those ground-truth segments.
    covering : float
        Sum over every annotation's segments of area x best IoU.
    covering_area : int
        Their total area (annotations x pixels).
    pri, vi : float
        Rand index and variation of information (log2), averaged over the annotations.
    ap50, ap70 : float
        Average precision at IoU 0.5 and 0.7.
    n_segments : int
        Number of predicted segments after the 4-connected split.
    """

    iou_all: float
    n_all: int
    iou_fine: float
    n_fine: int
    iou_coarse: float
    n_coarse: int
    covering: float
    covering_area: int
    pri: float
    vi: float
    ap50: float
    ap70: float
    n_segments: int

    def as_dict(self) -> dict[str, Any]:
        """The statistics as a plain dict."""
        return asdict(self)


def _compact(keys: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct values of ``keys`` (all in ``[0, size)``): values, counts and inverse."""
    if size <= _DENSE_PAIRS_MAX:
        counts = np.bincount(keys, minlength=size)
        values = np.flatnonzero(counts)
        index = np.cumsum(counts > 0) - 1
        return values, counts[values], index[keys]
    values, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return values, counts, inverse


def _entropy_terms(p: np.ndarray) -> np.ndarray:
    """``-p log2 p`` elementwise, for ``p > 0``."""
    return -p * np.log2(p)


def _average_precision(
    pred_rank: np.ndarray,
    n_pred: int,
    pair_gt: np.ndarray,
    pair_pred: np.ndarray,
    pair_iou: np.ndarray,
    n_gt: int,
    threshold: float,
) -> float:
    """AP of the predicted segments ranked by ``pred_rank`` (0 = largest)."""
    match = pair_iou > threshold
    # Hit: a predicted segment whose best IoU with any annotation's segment exceeds threshold.
    hit = np.zeros(n_pred, dtype=bool)
    hit[pred_rank[pair_pred[match]]] = True
    precision = np.cumsum(hit) / np.arange(1, n_pred + 1)
    # A ground-truth segment is recalled at the first rank that matches it.
    first = np.full(n_gt, n_pred, dtype=np.int64)
    np.minimum.at(first, pair_gt[match], pred_rank[pair_pred[match]])
    recalled = np.bincount(first[first < n_pred], minlength=n_pred)
    return float(np.sum(precision * recalled) / n_gt)


def image_stats(
    prediction: np.ndarray, annotations: np.ndarray, *, connected_components: bool = True
) -> ImageStats:
    """Score one predicted label image against its human annotations.

    Parameters
    ----------
    prediction : np.ndarray
        ``(H, W)`` integer labels; every value (0 included) is a label.
    annotations : np.ndarray
        ``(A, H, W)`` (or ``(H, W)`` for one) integer labels, one map per annotator.
    connected_components : bool
        Split the prediction into 4-connected segments first (the benchmark's rule).

    Returns
    -------
    ImageStats
        The image's sufficient statistics.
    """
    pred = np.asarray(prediction)
    gts = np.asarray(annotations)
    if gts.ndim == 2:
        gts = gts[None]
    if pred.ndim != 2 or gts.ndim != 3 or pred.shape != gts.shape[1:]:
        raise ValueError(
            f"prediction {pred.shape} and annotations {gts.shape} must be (H, W) and (A, H, W)"
        )
    pred = split_connected_components(pred) if connected_components else relabel_consecutive(pred)
    p = pred.ravel().astype(np.int64) - 1  # 0..P-1
    n_pred = int(p.max()) + 1
    n_ann, n_pix = gts.shape[0], p.size

    # Ground-truth segments of all annotations, numbered 0..G-1 annotation by annotation.
    gt = gts.reshape(n_ann, n_pix).astype(np.int64)
    gt -= gt.min()
    span = int(gt.max()) + 1
    gt_keys = (np.arange(n_ann, dtype=np.int64)[:, None] * span + gt).ravel()
    gt_values, gt_size, g = _compact(gt_keys, n_ann * span)
    gt_ann = gt_values // span
    n_gt = gt_size.size

    # Contingency table as a sparse list of (gt segment, predicted segment, overlap).
    pred_size = np.bincount(p, minlength=n_pred)
    pair_keys = g * n_pred + np.tile(p, n_ann)
    pair_values, overlap, _ = _compact(pair_keys, n_gt * n_pred)
    pair_gt, pair_pred = pair_values // n_pred, pair_values % n_pred
    pair_iou = overlap / (gt_size[pair_gt] + pred_size[pair_pred] - overlap)
    pair_ann = gt_ann[pair_gt]

    best = np.zeros(n_gt)
    np.maximum.at(best, pair_gt, pair_iou)
    segments_per_ann = np.bincount(gt_ann, minlength=n_ann)
    fine = gt_ann == int(np.argmax(segments_per_ann))
    coarse = gt_ann == int(np.argmin(segments_per_ann))

    # Rand index from sums of squared counts (the BSDS formula), per annotation.
    overlap_f = overlap.astype(np.float64)
    gt_f = gt_size.astype(np.float64)
    pred_f = pred_size.astype(np.float64)
    sum_n2 = np.bincount(pair_ann, overlap_f**2, minlength=n_ann)
    sum_a2 = np.bincount(gt_ann, gt_f**2, minlength=n_ann)
    sum_b2 = float(np.sum(pred_f**2))
    n_pairs = n_pix * (n_pix - 1) / 2
    rand = 1.0 - (sum_a2 / 2 + sum_b2 / 2 - sum_n2) / n_pairs if n_pix > 1 else np.ones(n_ann)

    # Variation of information (log2) = H(P) + H(G) - 2 I(P; G), per annotation.
    h_pred = float(np.sum(_entropy_terms(pred_f / n_pix)))
    h_gt = np.bincount(gt_ann, _entropy_terms(gt_f / n_pix), minlength=n_ann)
    mutual_terms = (overlap_f / n_pix) * np.log2(
        overlap_f * n_pix / (gt_f[pair_gt] * pred_f[pair_pred])
    )
    mutual = np.bincount(pair_ann, mutual_terms, minlength=n_ann)
    vi = np.maximum(h_pred + h_gt - 2 * mutual, 0.0)

    # Rank 0 = largest segment; equal sizes keep label (raster) order.
    pred_rank = np.empty(n_pred, dtype=np.int64)
    pred_rank[np.argsort(-pred_size, kind="stable")] = np.arange(n_pred)
    ap = [
        _average_precision(pred_rank, n_pred, pair_gt, pair_pred, pair_iou, n_gt, t)
        for t in AP_THRESHOLDS
    ]

    return ImageStats(
        iou_all=float(best.sum()),
        n_all=int(n_gt),
        iou_fine=float(best[fine].sum()),
        n_fine=int(fine.sum()),
        iou_coarse=float(best[coarse].sum()),
        n_coarse=int(coarse.sum()),
        covering=float(np.sum(gt_f * best)),
        covering_area=int(n_ann * n_pix),
        pri=float(np.mean(rand)),
        vi=float(np.mean(vi)),
        ap50=ap[0],
        ap70=ap[1],
        n_segments=n_pred,
    )


def combine(stats: Sequence[ImageStats]) -> dict[str, float]:
    """Pool per-image statistics into the benchmark's scores.

    Parameters
    ----------
    stats : sequence of ImageStats
        One entry per image of the split.

    Returns
    -------
    dict
        ``miou_all``, ``miou_fine``, ``miou_coarse``, ``sc`` (pooled over the split),
        ``pri``, ``vi``, ``ap50``, ``ap70`` (means over images), ``median_segments`` and
        ``n_images``.
    """
    if not stats:
        raise ValueError("no image to score")

    def total(name: str) -> float:
        return float(sum(getattr(s, name) for s in stats))

    def mean(name: str) -> float:
        return float(np.mean([getattr(s, name) for s in stats]))

    return {
        "miou_all": total("iou_all") / total("n_all"),
        "miou_fine": total("iou_fine") / total("n_fine"),
        "miou_coarse": total("iou_coarse") / total("n_coarse"),
        "sc": total("covering") / total("covering_area"),
        "pri": mean("pri"),
        "vi": mean("vi"),
        "ap50": mean("ap50"),
        "ap70": mean("ap70"),
        "median_segments": float(np.median([s.n_segments for s in stats])),
        "n_images": len(stats),
    }


def score(predictions: Sequence[np.ndarray], annotations: Sequence[np.ndarray]) -> dict[str, float]:
    """Scores of several predictions against their annotations (see :func:`combine`)."""
    return combine([image_stats(p, a) for p, a in zip(predictions, annotations, strict=True)])
