"""From the network's raw argmax to the labels a user sees: splitting, specks, merging.

The image-level maps that post-processing needs (colour features, the texture gradient,
graph-based segments) depend on the image and the settings only, so a :class:`LabelFinisher`
makes each once and reuses it for every step of a run: live updates then cost only the
merge itself. Making those maps takes long on a large image (the texture gradient: tens of
seconds on a small CPU), so a live display can have them made in a background thread and
show the network's classes meanwhile (:meth:`LabelFinisher.preview`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from functools import cached_property, partial

import numpy as np
import torch

from .devices import precision_flags
from .labels import (
    MergeHierarchy,
    MergeSequence,
    absorb_thin_segments,
    clean_up_merged,
    merge_small_segments,
    merge_weak_boundaries,
    merge_weak_edges,
    relabel_consecutive,
    split_connected_components,
)
from .normalize import PreparedImage
from .objects import object_options, objects_from_classes
from .params import SegmentationParams
from .refine import colour_features, graph_segments
from .regions import HistogramCues
from .spectral import spectral_boundaries

#: Graph-based segments with no pixel this far from their outline are slivers (1: those
#: without a pixel whose four neighbours are in the segment).
GRAPH_MIN_DEPTH = 1


class LabelFinisher:
    """Post-processes raw labels of one image as ``settings`` ask (see :meth:`__call__`);
    ``spacing``: the pixel size (dy, dx) that objects' distances are measured in (None:
    square pixels)."""

    def __init__(
        self,
        settings: SegmentationParams,
        image: PreparedImage,
        device: torch.device | str = "cpu",
        spacing: tuple[float, ...] | None = None,
    ) -> None:
        self.settings = settings
        self.image = image
        self.device = device
        self.spacing = spacing
        self._graph_segments: dict[float, np.ndarray] = {}
        self._maps_lock = threading.Lock()  # one thread makes a map; others wait for it
        self._maps_made = threading.Event()
        self._maps_thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()  # one background thread at most
        if not self._map_makers(settings):
            self._maps_made.set()

    @property
    def maps_ready(self) -> bool:
        """Whether the image-level maps of the finisher's settings are made: finishing a
        prediction then costs only the merge itself."""
        return self._maps_made.is_set()

    def make_maps(self, settings: SegmentationParams | None = None) -> None:
        """Make the image-level maps that post-processing with ``settings`` (None: the
        finisher's) needs, once; waits while another thread is making them."""
        settings = settings or self.settings
        with self._maps_lock:
            for make in self._map_makers(settings):
                make()
        if settings == self.settings:
            self._maps_made.set()

    def make_maps_in_background(self) -> None:
        """Start making the maps in a daemon thread (once), so that the caller goes on; a
        later call of the finisher waits for that thread, and makes anything it could not."""
        with self._thread_lock:
            if self._maps_thread is not None or self.maps_ready:
                return
            self._maps_thread = threading.Thread(
                target=self._make_maps_quietly, name="label-finisher-maps", daemon=True
            )
        self._maps_thread.start()

    def _make_maps_quietly(self) -> None:
        # An error here (e.g. out of memory) is raised again, to the caller, by the
        # finisher's own call, which makes whatever is missing.
        try:
            self.make_maps()
        except Exception:
            return

    def preview(self, prediction: np.ndarray) -> np.ndarray:
        """Labels 1..n to show at once: finished as the settings ask when the maps are
        ready, else every argmax value one label (the maps are then started in the
        background, for later previews)."""
        if self.maps_ready:
            return self(prediction)
        self.make_maps_in_background()
        return relabel_consecutive(prediction)

    def _map_makers(self, settings: SegmentationParams) -> list[Callable[[], object]]:
        """What post-processing with ``settings`` needs made first, cheapest first."""
        makers: list[Callable[[], object]] = []
        if not _post_processes(settings):
            return makers
        if settings.cut_scale:
            makers.append(partial(self.graph_segments, settings.cut_scale))
        if settings.merge != "off":
            if settings.merge == "colour":
                makers.append(lambda: self.colour_features)
            else:
                makers.append(lambda: self.texture_gradient)
                if settings.merge_region_weight:
                    makers.append(lambda: self.histogram_cues)
        return makers

    def __call__(
        self, prediction: np.ndarray, settings: SegmentationParams | None = None
    ) -> np.ndarray:
        """Labels 1..n from a raw argmax, smallest unsigned dtype.

        With ``label_by='object'``, one label per object and 0 for background
        (:func:`finish_objects`). Without post-processing, every argmax value is one label.
        Otherwise labels become 4-connected segments, cut further along graph-based segments
        (``cut_scale``); segments under ``min_segment_size`` pixels join their surroundings,
        before and after touching segments are joined across weak boundaries
        (``merge_threshold``, and past it until at most ``max_segments`` are left; measured
        as ``merge`` says, globalised by ``spectral_weight``, judged against the segments'
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
        if settings.label_by == "object":
            return finish_objects(prediction, settings, self.spacing, intensity=self.brightness)
        if not _post_processes(settings):
            return relabel_consecutive(prediction)
        self.make_maps(settings)
        labels = self._segments(prediction, settings)
        merges = _merges(settings)
        if merges:
            labels = self._merge(labels, settings)
        return clean_up_merged(
            labels, settings.min_segment_size or 0, settings.min_segment_width or 0, merges
        )

    def hierarchy(
        self, prediction: np.ndarray, settings: SegmentationParams | None = None
    ) -> MergeHierarchy:
        """Every level of detail of the labels of a raw argmax, to cut again at once.

        The boundary merge of :meth:`__call__` (``merge`` and its weights; with no merge
        in the settings, the colour contrast alone, starting from the settings' labels) recorded to
        the end; :meth:`MergeHierarchy.labels` at level 0 gives exactly ``self(prediction,
        settings)``, other levels more or fewer segments (see :class:`MergeHierarchy`).
        """
        settings = settings or self.settings
        if settings.label_by == "object":
            raise ValueError(
                "objects (label_by='object') are not cut from a merge hierarchy; use the "
                "labels, or label_by='segment' for a hierarchy"
            )
        if _post_processes(settings):
            self.make_maps(settings)
            labels = self._segments(prediction, settings)
        else:
            labels = relabel_consecutive(prediction)
        stages: list[tuple[MergeSequence, int]] = []
        self._merge(labels, settings, stages)
        return MergeHierarchy(
            stages,
            min_segment_size=settings.min_segment_size or 0,
            min_segment_width=settings.min_segment_width or 0,
            merges=_merges(settings),
        )

    def _segments(self, prediction: np.ndarray, settings: SegmentationParams) -> np.ndarray:
        """The segments that the merge starts from: the network's classes split into
        4-connected segments, cut along graph-based segments, without specks."""
        if settings.cut_scale:
            graph = self.graph_segments(settings.cut_scale)
            prediction = prediction.astype(np.int64) * (int(graph.max()) + 1) + graph
        labels = split_connected_components(prediction)
        if (settings.min_segment_size or 0) > 1:
            labels = merge_small_segments(labels, settings.min_segment_size)
        return labels

    def _merge(
        self,
        labels: np.ndarray,
        settings: SegmentationParams,
        stages: list[tuple[MergeSequence, int]] | None = None,
    ) -> np.ndarray:
        """Join touching segments across weak boundaries (see :meth:`__call__`).

        With ``stages`` (a list), every merge is recorded there with the joins the settings
        make, the last one run to the end; the labels returned are then those of the end.
        """
        weight = settings.merge_interior_weight or 0.0
        record = None if stages is None else MergeSequence()
        threshold, cap = settings.merge_threshold or 0.0, settings.max_segments or 0
        if record is not None:
            threshold, cap = np.inf, 0
        if settings.merge != "texture":  # and the hierarchy of settings that merge nothing
            merged = merge_weak_boundaries(
                labels,
                self.colour_features,
                threshold,
                interior_weight=weight,
                max_segments=cap,
                record=record,
            )
        else:
            regions = self.histogram_cues if settings.merge_region_weight else None
            # premerge_threshold is None without a spectral weight: one merge
            first = min(settings.premerge_threshold or 0.0, settings.merge_threshold)
            if first and settings.spectral_weight:
                first_record = None if stages is None else MergeSequence()
                labels = merge_weak_edges(
                    labels,
                    self._edges(labels, settings),
                    first,
                    weight,
                    regions=regions,
                    region_weight=settings.merge_region_weight,
                    record=first_record,
                )
                if stages is not None and first_record is not None:
                    stages.append((first_record, first_record.n_joins))
                if (settings.min_segment_size or 0) > 1:
                    labels = merge_small_segments(labels, settings.min_segment_size)
            merged = merge_weak_edges(
                labels,
                self._edges(labels, settings),
                threshold,
                weight,
                cap,
                regions=regions,
                region_weight=settings.merge_region_weight,
                record=record,
            )
        if stages is not None and record is not None:
            own = record.count(settings.merge_threshold or 0.0, settings.max_segments or 0)
            stages.append((record, own if _merges(settings) else 0))
        return merged

    def _edges(self, labels: np.ndarray, settings: SegmentationParams) -> np.ndarray:
        """The texture gradient, plus the spectral cue over ``labels`` if asked for."""
        edges = self.texture_gradient
        if settings.spectral_weight:
            edges = edges + settings.spectral_weight * spectral_boundaries(labels, edges)
        return edges

    @cached_property
    def brightness(self) -> np.ndarray:
        """The mean of the scaled channels per pixel: what the objects' brightness rule
        judges classes by."""
        return self.image.channels.mean(axis=-1)

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


def _post_processes(settings: SegmentationParams) -> bool:
    """Whether ``settings`` ask for more than one label per argmax value."""
    return settings.label_by == "segment"


def _merges(settings: SegmentationParams) -> bool:
    """Whether ``settings`` join segments across weak boundaries."""
    return settings.merge not in (None, "off")


def finish_objects(
    prediction: np.ndarray,
    settings: SegmentationParams,
    spacing: tuple[float, ...] | None = None,
    background: Iterable[int] | None = None,
    intensity: np.ndarray | None = None,
) -> np.ndarray:
    """Objects 1..n, background 0, from a raw argmax, with the ``object_*`` settings and
    ``fill_holes`` (see :func:`~.objects.objects_from_classes`); ``spacing``: the pixel or
    voxel size along each axis (None: equal); ``background``: the background classes (None:
    found by ``object_background``, from ``intensity`` (one brightness per pixel) for the
    'intensity' rule)."""
    rule = settings.object_background or "border"
    return objects_from_classes(
        prediction,
        background=rule if background is None else background,
        intensity=intensity,
        spacing=spacing,
        **object_options(settings),
    )


def finish_labels(
    prediction: np.ndarray, settings: SegmentationParams, image: PreparedImage
) -> np.ndarray:
    """Labels 1..n from a raw argmax, post-processed as the settings ask (one-off use).

    A run that finishes many predictions of one image should keep one
    :class:`LabelFinisher`, which computes the image-level maps once.
    """
    return LabelFinisher(settings, image)(prediction)
