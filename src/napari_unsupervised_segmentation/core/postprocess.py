"""From the network's raw argmax to the labels a user sees: splitting, specks, merging.

The image-level maps that post-processing needs (colour features, the texture gradient,
graph-based segments) depend on the image and the settings only, so a :class:`LabelFinisher`
makes each once and reuses it for every step of a run: live updates then cost only the
merge itself.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import torch

from .devices import precision_flags
from .labels import (
    absorb_thin_segments,
    merge_small_segments,
    merge_weak_boundaries,
    merge_weak_edges,
    relabel_consecutive,
    split_connected_components,
)
from .normalize import PreparedImage
from .params import SegmentationParams
from .refine import colour_features, graph_segments
from .regions import HistogramCues
from .spectral import spectral_boundaries

#: Graph-based segments with no pixel this far from their outline are slivers (1: those
#: without a pixel whose four neighbours are in the segment).
GRAPH_MIN_DEPTH = 1


class LabelFinisher:
    """Post-processes raw labels of one image as ``settings`` ask (see :meth:`__call__`)."""

    def __init__(
        self,
        settings: SegmentationParams,
        image: PreparedImage,
        device: torch.device | str = "cpu",
    ) -> None:
        self.settings = settings
        self.image = image
        self.device = device
        self._graph_segments: dict[float, np.ndarray] = {}

    def __call__(
        self, prediction: np.ndarray, settings: SegmentationParams | None = None
    ) -> np.ndarray:
        """Labels 1..n from a raw argmax, smallest unsigned dtype.

        Without post-processing, every argmax value is one label. Otherwise labels become
        4-connected segments, cut further along graph-based segments (``graph_scale``);
        segments under ``min_segment_size`` pixels join their surroundings, before and after
        touching segments are joined across weak boundaries (``merge_threshold``, and past it
        until at most ``max_segments`` are left; measured
        as ``boundary`` says, globalised by ``spectral_weight``, judged against the segments'
        insides by ``merge_interior_weight`` and against how alike their histograms are by
        ``merge_region_weight``): specks removed first cannot bridge two
        different regions. With ``premerge_threshold`` the texture merge runs twice, first
        to that threshold, and the spectral cue is computed again over the joined segments.
        Last, segments narrower than ``min_segment_width`` (rims along edges) join their
        neighbours.

        ``settings`` replaces the finisher's own for this call, reusing the maps already
        made (how a sweep post-processes one training in many ways); the texture gradient
        keeps the finisher's seed.
        """
        settings = settings or self.settings
        post_processes = (
            settings.connected_components
            or settings.merge_threshold
            or settings.max_segments
            or settings.min_segment_size
            or settings.min_segment_width
            or settings.graph_scale
        )
        if not post_processes:
            return relabel_consecutive(prediction)
        if settings.graph_scale:
            graph = self.graph_segments(settings.graph_scale)
            prediction = prediction.astype(np.int64) * (int(graph.max()) + 1) + graph
        labels = split_connected_components(prediction)
        if settings.min_segment_size > 1:
            labels = merge_small_segments(labels, settings.min_segment_size)
        if settings.merge_threshold or settings.max_segments:
            labels = self._merge(labels, settings)
            if settings.min_segment_size > 1:
                labels = merge_small_segments(labels, settings.min_segment_size)
        if settings.min_segment_width > 1:
            labels = absorb_thin_segments(labels, (settings.min_segment_width - 1) / 2)
            if settings.min_segment_size > 1:
                labels = merge_small_segments(labels, settings.min_segment_size)
            else:
                labels = split_connected_components(labels)
        return labels

    def _merge(self, labels: np.ndarray, settings: SegmentationParams) -> np.ndarray:
        """Join touching segments across weak boundaries (see :meth:`__call__`)."""
        weight = settings.merge_interior_weight
        if settings.boundary != "texture":
            return merge_weak_boundaries(
                labels,
                self.colour_features,
                settings.merge_threshold,
                interior_weight=weight,
                max_segments=settings.max_segments,
            )
        regions = self.histogram_cues if settings.merge_region_weight else None
        first = min(settings.premerge_threshold, settings.merge_threshold)
        if first and settings.spectral_weight:
            labels = merge_weak_edges(
                labels,
                self._edges(labels, settings),
                first,
                weight,
                regions=regions,
                region_weight=settings.merge_region_weight,
            )
            if settings.min_segment_size > 1:
                labels = merge_small_segments(labels, settings.min_segment_size)
        return merge_weak_edges(
            labels,
            self._edges(labels, settings),
            settings.merge_threshold,
            weight,
            settings.max_segments,
            regions=regions,
            region_weight=settings.merge_region_weight,
        )

    def _edges(self, labels: np.ndarray, settings: SegmentationParams) -> np.ndarray:
        """The texture gradient, plus the spectral cue over ``labels`` if asked for."""
        edges = self.texture_gradient
        if settings.spectral_weight:
            edges = edges + settings.spectral_weight * spectral_boundaries(labels, edges)
        return edges

    @cached_property
    def colour_features(self) -> np.ndarray:
        """Lab for RGB, channels x 100 otherwise (see :func:`~.refine.colour_features`)."""
        return colour_features(self.image)

    @cached_property
    def lightness(self) -> np.ndarray:
        """Intensity on a 0..100 scale: Lab's L, or the mean of the scaled channels."""
        features = self.colour_features
        return features[..., 0] if self.image.is_rgb else features.mean(axis=-1)

    @cached_property
    def binned_cues(self) -> tuple[list[np.ndarray], np.ndarray]:
        """Colour bins and textons at the size the gradient is measured (made once)."""
        from .boundaries import MAX_PIXELS, histogram_cues

        return histogram_cues(
            self.colour_features, self.lightness, seed=self.settings.seed, max_pixels=MAX_PIXELS
        )

    @cached_property
    def texture_gradient(self) -> np.ndarray:
        """Colour-and-texture edge strength per pixel (:func:`~.boundaries.texture_gradient`)."""
        from .boundaries import texture_gradient

        # the same map on any GPU: no TF32
        with precision_flags("fp32", torch.device(self.device)):
            return texture_gradient(
                self.colour_features,
                self.lightness,
                is_rgb=self.image.is_rgb,
                seed=self.settings.seed,
                device=self.device,
                cues=self.binned_cues,
            )

    @cached_property
    def histogram_cues(self) -> HistogramCues:
        """The gradient's colour bins and textons at full size, for the segments' histograms."""
        from .boundaries import enlarge

        shape = self.lightness.shape
        colour, textons = self.binned_cues
        return HistogramCues(
            [enlarge(index, shape) for index in colour], enlarge(textons, shape), self.image.is_rgb
        )

    def graph_segments(self, scale: float) -> np.ndarray:
        """Felzenszwalb-Huttenlocher segments of the image at ``scale``, 0..n-1 (cached)."""
        if scale not in self._graph_segments:
            segments = graph_segments(self.image, scale)
            self._graph_segments[scale] = absorb_thin_segments(segments, GRAPH_MIN_DEPTH)
        return self._graph_segments[scale]


def finish_labels(
    prediction: np.ndarray, settings: SegmentationParams, image: PreparedImage
) -> np.ndarray:
    """Labels 1..n from a raw argmax, post-processed as the settings ask (one-off use).

    A run that finishes many predictions of one image should keep one
    :class:`LabelFinisher`, which computes the image-level maps once.
    """
    return LabelFinisher(settings, image)(prediction)
