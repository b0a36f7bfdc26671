"""Every setting of the segmentation, with the paper's or the public demo's defaults."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PRECISIONS = ("fp32", "tf32", "bf16")
BOUNDARIES = ("colour", "texture")


@dataclass(frozen=True)
class SegmentationParams:
    """Settings of :func:`~napari_unsupervised_segmentation.segment`.

    The defaults are those of Kanezaki (ICASSP 2018), with its public demo's stopping rule
    and 500 iterations (the demo's own default is 1000).
    """

    max_iter: int = field(
        default=500, metadata={"help": "Most training iterations (the paper's T)."}
    )
    min_labels: int = field(
        default=3,
        metadata={"help": "Stop once the prediction has this many labels or fewer (0: never)."},
    )
    n_superpixels: int = field(default=10000, metadata={"help": "Number of SLIC superpixels."})
    compactness: float = field(
        default=100.0, metadata={"help": "SLIC compactness (colour vs. space trade-off)."}
    )
    superpixel_graph_scale: float = field(
        default=0.0,
        metadata={
            "help": "Refine with Felzenszwalb-Huttenlocher graph-based segments of this scale "
            "instead of SLIC superpixels: their outlines follow the image's edges, and "
            "n_superpixels and compactness are then unused (0: SLIC, as in the paper)."
        },
    )
    n_channels: int = field(
        default=100, metadata={"help": "Filters per conv layer = most possible labels."}
    )
    n_conv: int = field(
        default=2, metadata={"help": "Number of [3x3 conv, ReLU, BatchNorm] blocks."}
    )
    lr: float = field(default=0.1, metadata={"help": "SGD learning rate."})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum."})
    connected_components: bool = field(
        default=False,
        metadata={"help": "Split every label into 4-connected segments at the end."},
    )
    continuity_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the spatial continuity loss of Kim et al. (TIP 2020): mean absolute "
            "difference of neighbouring responses (0: the paper's loss alone)."
        },
    )
    graph_scale: float = field(
        default=0.0,
        metadata={
            "help": "At the end, also cut the network's segments along Felzenszwalb-Huttenlocher "
            "graph-based segments of this scale, for the merge to join again where the "
            "boundary is weak (0: off)."
        },
    )
    merge_threshold: float = field(
        default=0.0,
        metadata={
            "help": "At the end, join touching segments, weakest boundary first, until every "
            "boundary's mean strength (see boundary) is at least this (0: off)."
        },
    )
    boundary: str = field(
        default="colour",
        metadata={
            "help": "What merge_threshold measures: 'colour', the mean colour contrast across "
            "the boundary (Lab for RGB, channels scaled to 0..100 otherwise, after a 1-pixel "
            "blur; thresholds around 2); 'texture', the mean colour-and-texture histogram "
            "gradient along it (0..1; thresholds around 0.3; the default: 0.435 with "
            "merge_interior_weight 0.3, merge_region_weight 0.4, spectral_weight 0.2 and "
            "premerge_threshold 0.4)."
        },
    )
    merge_interior_weight: float = field(
        default=0.0,
        metadata={
            "help": "Judge each boundary against the segments it separates: its strength "
            "counts as weaker by this share of the mean strength inside the calmer of the two "
            "(see boundary), so pieces of one texture join while a faint edge between calm "
            "regions stays (0: the boundary alone)."
        },
    )
    merge_region_weight: float = field(
        default=0.0,
        metadata={
            "help": "With boundary 'texture': a boundary also counts as stronger by this times "
            "the chi-squared distance (0..1) between the colour-and-texton histograms of the "
            "two segments it separates, pooled as segments join, so segments alike inside "
            "join across a shading edge and segments of different stuff stay apart across a "
            "faint one; raise merge_threshold with it (0: the boundary alone; the colour "
            "merge ignores it)."
        },
    )
    spectral_weight: float = field(
        default=0.0,
        metadata={
            "help": "With boundary 'texture': before the merge, add this weight times a global "
            "cue to the boundary map, the distance of the touching segments in a "
            "normalised-cuts embedding of the segments' adjacency graph: boundaries inside one "
            "coherent region gain least, so raise merge_threshold with it (0.2: about 0.25) "
            "(0: the local map alone; the colour merge ignores it)."
        },
    )
    premerge_threshold: float = field(
        default=0.0,
        metadata={
            "help": "With boundary 'texture' and spectral_weight: merge twice, first until every "
            "boundary is at least this strong, then again to merge_threshold with the spectral "
            "cue computed afresh on the joined segments, whose graph sees further than the "
            "first one's small pieces (0: one merge; at most merge_threshold is used)."
        },
    )
    max_segments: int = field(
        default=0,
        metadata={
            "help": "Keep joining the touching segments with the weakest boundary (see "
            "boundary) past merge_threshold until at most this many are left; the last "
            "clean-up (min_segment_size, min_segment_width) can only remove more (0: no cap)."
        },
    )
    min_segment_size: int = field(
        default=0,
        metadata={
            "help": "Merge 4-connected segments smaller than this many pixels into their "
            "neighbours at the end, before and after the boundary merge (0: keep every segment)."
        },
    )
    min_segment_width: int = field(
        default=0,
        metadata={
            "help": "Last, merge segments narrower than this many pixels (no pixel at "
            "(width - 1) / 2 or more from their outline: rims along edges) into their "
            "neighbours (0 or 1: keep them)."
        },
    )
    seed: int | None = field(
        default=0, metadata={"help": "Random seed (None: a fresh random start every run)."}
    )
    device: str = field(
        default="auto",
        metadata={"help": "'auto' (CUDA, then MPS, then CPU), 'cpu', 'cuda[:N]', 'mps'."},
    )
    precision: str = field(
        default="fp32",
        metadata={"help": "'fp32'; 'tf32' (CUDA matmul/conv); 'bf16' (autocast, CPU or CUDA)."},
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.integer | np.floating):  # numpy scalars as plain numbers
                object.__setattr__(self, f.name, value.item())
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first setting that is out of range."""
        _require(
            _is_int(self.max_iter) and self.max_iter >= 1,
            "max_iter must be an integer >= 1",
            self.max_iter,
        )
        _require(
            _is_int(self.min_labels) and self.min_labels >= 0,
            "min_labels must be an integer >= 0 (0 disables the stopping rule)",
            self.min_labels,
        )
        _require(
            _is_int(self.n_superpixels) and self.n_superpixels >= 1,
            "n_superpixels must be an integer >= 1",
            self.n_superpixels,
        )
        _require(
            _is_real(self.compactness) and self.compactness > 0,
            "compactness must be a number > 0",
            self.compactness,
        )
        _require(
            _is_real(self.superpixel_graph_scale) and self.superpixel_graph_scale >= 0,
            "superpixel_graph_scale must be a number >= 0 (0: SLIC superpixels)",
            self.superpixel_graph_scale,
        )
        _require(
            _is_int(self.n_channels) and self.n_channels >= 2,
            "n_channels must be an integer >= 2 (it bounds the number of labels)",
            self.n_channels,
        )
        _require(
            self.min_labels < self.n_channels,
            f"min_labels must be below n_channels ({self.n_channels}): a prediction never has "
            "more labels than channels, so training would stop at the first iteration; lower "
            "min_labels (0 turns the stopping rule off) or raise n_channels",
            self.min_labels,
        )
        _require(
            _is_int(self.n_conv) and self.n_conv >= 1, "n_conv must be an integer >= 1", self.n_conv
        )
        _require(_is_real(self.lr) and self.lr > 0, "lr must be a number > 0", self.lr)
        _require(
            _is_real(self.momentum) and 0 <= self.momentum < 1,
            "momentum must be in [0, 1)",
            self.momentum,
        )
        _require(
            _is_real(self.continuity_weight) and self.continuity_weight >= 0,
            "continuity_weight must be a number >= 0",
            self.continuity_weight,
        )
        _require(
            _is_real(self.merge_threshold) and self.merge_threshold >= 0,
            "merge_threshold must be a number >= 0",
            self.merge_threshold,
        )
        _require_finite_weight("premerge_threshold", self.premerge_threshold)
        _require(
            _is_int(self.max_segments) and self.max_segments >= 0,
            "max_segments must be an integer >= 0 (0: no cap)",
            self.max_segments,
        )
        _require_finite_weight("merge_interior_weight", self.merge_interior_weight)
        _require_finite_weight("merge_region_weight", self.merge_region_weight)
        _require_finite_weight("spectral_weight", self.spectral_weight)
        _require(
            _is_real(self.graph_scale) and self.graph_scale >= 0,
            "graph_scale must be a number >= 0",
            self.graph_scale,
        )
        _require(
            self.boundary in BOUNDARIES, f"boundary must be one of {BOUNDARIES}", self.boundary
        )
        _require(
            _is_int(self.min_segment_size) and self.min_segment_size >= 0,
            "min_segment_size must be an integer >= 0",
            self.min_segment_size,
        )
        _require(
            _is_int(self.min_segment_width) and self.min_segment_width >= 0,
            "min_segment_width must be an integer >= 0",
            self.min_segment_width,
        )
        _require(
            isinstance(self.connected_components, bool),
            "connected_components must be True or False",
            self.connected_components,
        )
        _require(
            self.seed is None or (_is_int(self.seed) and 0 <= self.seed < 2**64),
            "seed must be an integer from 0 to 2**64 - 1, or None (a random seed)",
            self.seed,
        )
        _require(
            isinstance(self.device, str) and bool(self.device),
            "device must be a string such as 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps'",
            self.device,
        )
        _require(
            self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}", self.precision
        )

    def replace(self, **changes: Any) -> SegmentationParams:
        """A copy with some settings changed (validated)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)


def _is_int(value: Any) -> bool:
    """Python and numpy integers, not bools (True is not a number of iterations)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def _is_real(value: Any) -> bool:
    """Finite Python and numpy numbers, not bools: inf or nan would train to nonsense."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool | np.bool_):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond float's range
        return False


def _require_finite_weight(name: str, value: Any) -> None:
    _require(
        _is_real(value) and value >= 0,
        f"{name} must be a finite number >= 0",
        value,
    )


def _require(ok: bool, message: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"{message}; got {value!r}")


#: Named parameter sets. ``paper`` is the algorithm as published, with the public demo's
#: stopping rule (where the demo departs from the paper, see benchmarks/demo_loop.py).
PRESETS: dict[str, SegmentationParams] = {
    "paper": SegmentationParams(),
    # Measured on BSDS500 train and val (docs/benchmarks.md): a shorter training with fewer
    # filters and SLIC superpixels that follow edges; its segments cut further along
    # graph-based segments, then joined again across boundaries that are weak in colour and
    # texture, judged against the texture inside the segments and against how alike the two
    # segments' colour and texton histograms are, and globalised by a spectral cue over the
    # segments, computed again after a first merge.
    "default": SegmentationParams(
        n_channels=32,
        n_superpixels=3000,
        compactness=10.0,
        max_iter=160,
        graph_scale=700.0,
        boundary="texture",
        merge_threshold=0.435,
        merge_interior_weight=0.3,
        merge_region_weight=0.4,
        spectral_weight=0.2,
        premerge_threshold=0.4,
        min_segment_size=16,
        min_segment_width=5,
    ),
}
