"""Colour-and-texture histograms of whole segments, pooled as segments join.

The boundary merge judges two touching segments by the edge between them. Their insides
say something too: two pieces of one meadow hold the same mix of colours and textons even
where a shadow draws a strong edge between them, and two regions of different stuff differ
even where the edge between them is faint. :class:`SegmentHistograms` keeps one histogram
per cue (each colour channel and the texton map, as in
:func:`~.boundaries.texture_gradient`) for every segment and measures two segments' distance
the way the gradient measures the two halves of a disc.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .boundaries import BIN_SMOOTHING, N_BINS, N_TEXTONS, bin_weights, combine_channels, mix_cues


@dataclass(frozen=True)
class HistogramCues:
    """Binned cues of one image: one map per colour channel and the texton map.

    Attributes
    ----------
    colour : sequence of np.ndarray
        ``(H, W)`` bin indices 0..``N_BINS``-1, one map per colour channel.
    textons : np.ndarray
        ``(H, W)`` texton indices 0..``N_TEXTONS``-1.
    is_rgb : bool
        Whether the colour channels are Lab (their distances averaged) or separate channels
        (the largest distance counts), as in :func:`~.boundaries.texture_gradient`.
    """

    colour: Sequence[np.ndarray]
    textons: np.ndarray
    is_rgb: bool

    def of_segments(self, segments: np.ndarray) -> SegmentHistograms:
        """The histograms of every segment of ``segments`` (labels 0..n-1)."""
        return SegmentHistograms(segments, self)


class SegmentHistograms:
    """Per-segment histograms of binned cues; :meth:`join` pools, :meth:`distance` compares.

    One row per segment holds every cue's histogram side by side (colour channels, then the
    textons), so that a distance is a few array operations on one row pair.
    """

    def __init__(self, segments: np.ndarray, cues: HistogramCues) -> None:
        n_segments = int(segments.max()) + 1
        flat = segments.ravel().astype(np.int64)
        # Colour histograms are blurred along their ordered bins, as the gradient's are.
        spread = bin_weights(np.arange(N_BINS)[:, None], np.arange(N_BINS), BIN_SMOOTHING, N_BINS)
        blur = spread[:, :, 0].T.astype(np.float64)
        parts = [_counts(flat, index, N_BINS, n_segments) @ blur for index in cues.colour]
        parts.append(_counts(flat, cues.textons, N_TEXTONS, n_segments))
        self.table = np.concatenate(parts, axis=1)
        self.widths = np.array([part.shape[1] for part in parts])
        self.starts = np.concatenate([[0], np.cumsum(self.widths)[:-1]])
        self.is_rgb = cues.is_rgb

    def join(self, keep: int, absorbed: int) -> None:
        """Pool segment ``absorbed``'s histograms into ``keep``'s."""
        self.table[keep] += self.table[absorbed]

    def distance(self, i: int, j: int) -> float:
        """Chi-squared distance of segments ``i`` and ``j``: 0 alike, 1 disjoint.

        Per cue ``0.5 * sum (p - q)^2 / (p + q)`` of the two histograms, each scaled to sum 1;
        then the colour cues combined and mixed with the textons' as the gradient mixes them.
        """
        p, q = self._shares(i), self._shares(j)
        total = p + q
        terms = np.divide((p - q) ** 2, total, out=np.zeros_like(total), where=total > 0)
        per_cue = 0.5 * np.add.reduceat(terms, self.starts)
        return float(mix_cues(combine_channels(per_cue[:-1], self.is_rgb), per_cue[-1]))

    def _shares(self, segment: int) -> np.ndarray:
        """The segment's row with every cue's histogram scaled to sum 1."""
        row = self.table[segment]
        sums = np.maximum(np.add.reduceat(row, self.starts), 1e-12)
        return row / np.repeat(sums, self.widths)


def _counts(
    flat_segments: np.ndarray, index: np.ndarray, n_bins: int, n_segments: int
) -> np.ndarray:
    """``(n_segments, n_bins)`` pixel counts of every bin in every segment."""
    keys = flat_segments * n_bins + index.ravel()
    counts = np.bincount(keys, minlength=n_segments * n_bins)
    return counts.reshape(n_segments, n_bins).astype(np.float64)
