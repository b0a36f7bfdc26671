"""Label-image helpers shared by the engine, the writer and the benchmarks (numpy only)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .regions import HistogramCues, SegmentHistograms


def smallest_unsigned_dtype(max_label: int) -> np.dtype:
    """The smallest of uint8, uint16, uint32, uint64 that holds ``max_label``."""
    if max_label < 0:
        raise ValueError(f"labels must be >= 0; got a maximum of {max_label}")
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if max_label <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"label {max_label} does not fit in uint64")


def relabel_consecutive(labels: np.ndarray) -> np.ndarray:
    """Map the distinct values of ``labels`` to 1..n in increasing order, smallest dtype."""
    values, inverse = np.unique(labels, return_inverse=True)
    dtype = smallest_unsigned_dtype(len(values))
    return (inverse.reshape(labels.shape) + 1).astype(dtype, copy=False)


def split_connected_components(labels: np.ndarray) -> np.ndarray:
    """Split every label into its 4-connected (face-connected) segments, labelled 1..n."""
    from skimage.measure import label as connected_label

    # +1 so that no value is 0: skimage treats 0 as background by default.
    segments = connected_label(labels.astype(np.int64) + 1, background=0, connectivity=1)
    return relabel_consecutive(segments)


def merge_small_segments(labels: np.ndarray, min_size: int) -> np.ndarray:
    """4-connected segments, where every segment under ``min_size`` pixels joins its neighbours.

    Each pixel of a small segment takes the label of the nearest pixel of a segment that is
    large enough (Euclidean distance), so a speck inside a region vanishes into it and a thin
    sliver is shared by the regions on either side. The largest segment always counts as
    large enough. Returns labels 1..n, smallest dtype.
    """
    segments = split_connected_components(labels)
    for _ in range(3):  # one pass almost always suffices; a rare split-off sliver needs another
        sizes = np.bincount(segments.ravel())
        sizes[0] = 0
        keep = sizes >= min_size
        keep[sizes.argmax()] = True
        small = ~keep[segments]
        if not small.any():
            break
        segments = split_connected_components(give_to_nearest_kept(segments, small))
    return segments


def give_to_nearest_kept(segments: np.ndarray, dropped: np.ndarray) -> np.ndarray:
    """``segments`` where every ``dropped`` pixel takes the label of the nearest kept pixel.

    Nearest in Euclidean distance, so a dropped speck vanishes into the region around it
    and a dropped sliver is shared by the regions on either side.
    """
    from scipy.ndimage import distance_transform_edt

    _, nearest = distance_transform_edt(dropped, return_indices=True)
    return segments[tuple(nearest)]


def boundary_contrast(
    segments: np.ndarray, features: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of 4-adjacent segments with its boundary length and summed contrast.

    Parameters
    ----------
    segments : np.ndarray
        ``(H, W)`` labels 0..n-1.
    features : np.ndarray
        ``(H, W, F)`` per-pixel features.

    Returns
    -------
    first, second, length, contrast : np.ndarray
        For each pair (``first < second``): the number of 4-neighbour pixel pairs across
        their common boundary and the sum, over those pixel pairs, of the Euclidean distance
        between the two pixels' features.
    """
    features = np.asarray(features, dtype=np.float64)  # no wrap-around for integer features
    flat = features.reshape(-1, features.shape[-1])
    return _pool_boundaries(segments, lambda a, b: np.linalg.norm(flat[a] - flat[b], axis=-1))


def boundary_edge_strength(
    segments: np.ndarray, edge_map: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Like :func:`boundary_contrast`, summing the mean ``edge_map`` of each pixel pair."""
    flat = np.asarray(edge_map, dtype=np.float64).ravel()
    return _pool_boundaries(segments, lambda a, b: 0.5 * (flat[a] + flat[b]))


def _pool_boundaries(
    segments: np.ndarray, pair_value: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of touching segments, boundary lengths and sums of ``pair_value(a, b)``.

    ``pair_value`` gets the flat indices of the two pixels of every 4-neighbour pair that
    straddles a boundary and returns one value per pair.
    """
    n_segments = int(segments.max()) + 1
    index = np.arange(segments.size).reshape(segments.shape)
    keys, values = [], []
    for axis in (0, 1):
        here = segments[1:, :] if axis == 0 else segments[:, 1:]
        there = segments[:-1, :] if axis == 0 else segments[:, :-1]
        here_index = index[1:, :] if axis == 0 else index[:, 1:]
        there_index = index[:-1, :] if axis == 0 else index[:, :-1]
        across = here != there
        low, high = np.minimum(here[across], there[across]), np.maximum(here[across], there[across])
        keys.append(low.astype(np.int64) * n_segments + high)
        values.append(pair_value(here_index[across], there_index[across]))
    pair_keys, pair_index = np.unique(np.concatenate(keys), return_inverse=True)
    length = np.bincount(pair_index)
    total = np.bincount(pair_index, np.concatenate(values)).astype(np.float64)
    return pair_keys // n_segments, pair_keys % n_segments, length, total


def merge_weak_boundaries(
    segments: np.ndarray,
    features: np.ndarray,
    threshold: float,
    smoothing: float = 1.0,
    interior_weight: float = 0.0,
    max_segments: int = 0,
    record: MergeSequence | None = None,
) -> np.ndarray:
    """Join touching segments, weakest boundary first, until every boundary is strong.

    The strength of the boundary between two segments is its mean contrast: the feature
    distance (e.g. Lab colour) between the two pixels of every 4-neighbour pixel pair that
    straddles it, averaged along the boundary, after a Gaussian blur of ``smoothing`` pixels.
    The two segments with the weakest boundary are joined, their boundaries with common
    neighbours pooled, and so on, until no boundary is weaker than ``threshold``. A gentle
    ramp (sky, an uneven stain) has weak boundaries everywhere and becomes one segment; an
    object of similar mean colour but with a sharp outline stays apart.

    The joining runs in Python over pairs of touching segments (about 15 microseconds per
    pair): give it segments, not pixels; 10^4 to 10^5 segments take well under a few seconds.

    Parameters
    ----------
    segments : np.ndarray
        ``(H, W)`` integer labels (each label one segment; split them into connected
        components first if needed).
    features : np.ndarray
        ``(H, W, F)`` per-pixel features.
    threshold : float
        Boundaries with a mean contrast below this are removed.
    smoothing : float
        Gaussian sigma (pixels) applied to the features first; 0 for none.
    interior_weight : float
        A boundary counts as weaker by this share of the contrast inside the calmer of the
        two segments (see :func:`merge_weak_edges`); the contrast inside is each pixel's
        mean contrast with its 4 neighbours, averaged over the segment. 0: the boundary alone.
    max_segments : int
        Go on joining the weakest boundaries past ``threshold`` until at most this many
        segments are left (segments that touch no other stay); 0: no cap.
    record : MergeSequence or None
        An empty :class:`MergeSequence`, which gets the segments and every join in order
        (with ``threshold`` inf, the whole hierarchy down to one segment per connected part).

    Returns
    -------
    np.ndarray
        Labels 1..n, smallest unsigned dtype.
    """
    from scipy.ndimage import gaussian_filter

    segments = relabel_consecutive(segments).astype(np.int64) - 1
    features = np.asarray(features, dtype=np.float64)
    if smoothing > 0:
        features = gaussian_filter(features, (smoothing, smoothing, 0))
    interior = local_contrast(features) if interior_weight else None
    return _merge_weakest_first(
        segments,
        boundary_contrast(segments, features),
        threshold,
        interior,
        interior_weight,
        max_segments,
        record=record,
    )


def local_contrast(features: np.ndarray) -> np.ndarray:
    """``(H, W)`` mean feature distance of every pixel to its 4 neighbours (those inside)."""
    total = np.zeros(features.shape[:2])
    count = np.zeros(features.shape[:2])
    for axis in (0, 1):
        step = np.linalg.norm(np.diff(features, axis=axis), axis=-1)
        before = (slice(None, -1), slice(None)) if axis == 0 else (slice(None), slice(None, -1))
        after = (slice(1, None), slice(None)) if axis == 0 else (slice(None), slice(1, None))
        for side in (before, after):
            total[side] += step
            count[side] += 1
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def merge_weak_edges(
    segments: np.ndarray,
    edge_map: np.ndarray,
    threshold: float,
    interior_weight: float = 0.0,
    max_segments: int = 0,
    regions: HistogramCues | None = None,
    region_weight: float = 0.0,
    record: MergeSequence | None = None,
) -> np.ndarray:
    """Join touching segments, weakest boundary first, until every boundary's mean edge is strong.

    As :func:`merge_weak_boundaries`, but a boundary's strength is the mean of ``edge_map``
    (for example :func:`~.boundaries.texture_gradient`) over the pixels on either side of it.

    With ``interior_weight`` w > 0, a boundary is judged against the segments it separates:
    its strength counts as ``mean edge along it - w * min(mean edge inside either segment)``.
    Inside a texture or a noisy region the edge map is high everywhere, so a boundary between
    two such pieces must stand out from what lies inside them to keep them apart, while
    between calm regions a faint boundary still does (Felzenszwalb and Huttenlocher, IJCV
    2004, compare a boundary with the segments' internal variation in the same spirit).
    Inside means over all the segment's pixels, pooled as segments join; that includes its
    rim, so a small segment beside a strong edge looks busy and joins more readily.

    Parameters
    ----------
    segments : np.ndarray
        ``(H, W)`` integer labels, each label one segment.
    edge_map : np.ndarray
        ``(H, W)`` boundary strength per pixel.
    threshold : float
        Boundaries whose (judged) strength is below this are removed.
    interior_weight : float
        ``w`` above; 0 judges every boundary by its mean edge alone.
    max_segments : int
        As in :func:`merge_weak_boundaries`: a cap on the segments left; 0: none.
    regions : HistogramCues or None
        The image's binned colour and texton maps, from which every segment's histograms
        are made and pooled as segments join (:class:`~.regions.HistogramCues`).
    region_weight : float
        With ``regions``: a boundary counts as stronger by this times the histogram distance
        of the two segments it separates (0..1), so segments that look alike inside join
        across a shading edge and segments of different stuff stay apart across a faint
        one. 0: the edge alone.
    record : MergeSequence or None
        As in :func:`merge_weak_boundaries`.

    Returns
    -------
    np.ndarray
        Labels 1..n, smallest unsigned dtype.
    """
    segments = relabel_consecutive(segments).astype(np.int64) - 1
    return _merge_weakest_first(
        segments,
        boundary_edge_strength(segments, edge_map),
        threshold,
        edge_map,
        interior_weight,
        max_segments,
        regions.of_segments(segments) if regions is not None and region_weight else None,
        region_weight,
        record,
    )


def _merge_weakest_first(
    segments: np.ndarray,
    boundaries: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    threshold: float,
    interior: np.ndarray | None = None,
    interior_weight: float = 0.0,
    max_segments: int = 0,
    regions: SegmentHistograms | None = None,
    region_weight: float = 0.0,
    record: MergeSequence | None = None,
) -> np.ndarray:
    """Greedy joining of ``segments`` (0..n-1) given their boundaries' lengths and sums.

    A boundary's key is its mean value, less ``interior_weight`` times the smaller of the two
    segments' mean ``interior`` (per-pixel values, pooled as segments join), plus
    ``region_weight`` times the two segments' histogram distance (``regions``, pooled as
    segments join). Joining stops at
    the first key of ``threshold`` or more, unless more than ``max_segments`` (when > 0) are
    left. ``record`` gets every join, with the largest key popped since the previous join.
    """
    import heapq

    first, second, length, contrast = boundaries
    n_segments = int(segments.max()) + 1
    if record is not None:
        record.start(segments)
    # neighbours[i][j] = [boundary length, summed contrast], one list shared by i and j.
    neighbours: list[dict[int, list[float]]] = [{} for _ in range(n_segments)]
    relative = interior is not None and interior_weight > 0
    if relative:
        pixels = np.bincount(segments.ravel(), minlength=n_segments).astype(np.float64)
        inside = np.bincount(
            segments.ravel(), np.asarray(interior, np.float64).ravel(), minlength=n_segments
        )

    def key(i: int, j: int, edge: list[float]) -> float:
        strength = edge[1] / edge[0]
        if relative:
            strength -= interior_weight * min(inside[i] / pixels[i], inside[j] / pixels[j])
        if regions is not None:
            strength += region_weight * regions.distance(i, j)
        return strength

    pairs = list(zip(first.tolist(), second.tolist(), strict=True))
    for (i, j), n, total in zip(pairs, length.tolist(), contrast.tolist(), strict=True):
        neighbours[i][j] = neighbours[j][i] = [n, total]
    heap = [(key(i, j, neighbours[i][j]), i, j) for i, j in pairs]
    heapq.heapify(heap)
    owner = np.arange(n_segments)
    remaining = n_segments
    gate = -np.inf  # the largest key popped since the last join: what stops a merge before it
    while heap:
        strength, i, j = heapq.heappop(heap)
        if strength >= threshold and (not max_segments or remaining <= max_segments):
            break
        gate = max(gate, strength)
        edge = neighbours[i].get(j)
        if edge is None or key(i, j, edge) != strength:
            continue  # outdated: i or j has been joined to another segment since
        if len(neighbours[i]) < len(neighbours[j]):
            i, j = j, i  # keep the segment with more neighbours, move the fewer
        owner[j] = i
        remaining -= 1
        if record is not None:
            record.join(j, i, gate)
        gate = -np.inf
        del neighbours[i][j]
        changed = []
        for k, (n, total) in neighbours[j].items():
            if k == i:
                continue
            del neighbours[k][j]
            pooled = neighbours[i].get(k)
            if pooled is None:
                pooled = neighbours[i][k] = neighbours[k][i] = [0.0, 0.0]
            pooled[0] += n
            pooled[1] += total
            changed.append(k)
        neighbours[j] = {}
        if relative:
            pixels[i] += pixels[j]
            inside[i] += inside[j]
        if regions is not None:
            regions.join(i, j)
        if relative or regions is not None:  # i changed, so every boundary of i has a new key
            changed = list(neighbours[i])
        for k in changed:
            heapq.heappush(heap, (key(i, k, neighbours[i][k]), min(i, k), max(i, k)))
    while True:  # follow every segment to the one it finally joined
        root = owner[owner]
        if np.array_equal(root, owner):
            break
        owner = root
    return relabel_consecutive(owner[segments])


def absorb_thin_segments(segments: np.ndarray, depth: float) -> np.ndarray:
    """Segments 0..n-1, where every segment thinner than ``2 * depth + 1`` pixels joins others.

    A segment is thin when none of its pixels lies ``depth`` pixels or more (Euclidean) from
    the nearest pixel on its outline (a pixel with a 4-neighbour in another segment).
    Graph-based segmentation blurs first, so a step between two regions becomes lines or
    rings of intermediate values a few pixels wide, large enough to be kept as segments;
    cutting the network's segments along them would leave slivers and rims on every outline.
    Their pixels go to the nearest segment that is not thin (all stay when every one is).
    """
    from scipy.ndimage import distance_transform_edt

    segments = relabel_consecutive(segments).astype(np.int64) - 1
    padded = np.pad(segments, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    outline = (
        (padded[:-2, 1:-1] != centre)
        | (padded[2:, 1:-1] != centre)
        | (padded[1:-1, :-2] != centre)
        | (padded[1:-1, 2:] != centre)
    )
    inward = distance_transform_edt(~outline)  # 0 on the outline, 1 next to it, ...
    deepest = np.zeros(int(segments.max()) + 1)
    np.maximum.at(deepest, segments.ravel(), inward.ravel())
    thin = deepest[segments] < depth
    if not thin.any() or thin.all():
        return segments
    return relabel_consecutive(give_to_nearest_kept(segments, thin)).astype(np.int64) - 1


def clean_up_merged(
    labels: np.ndarray, min_size: int, min_width: int, merged: bool = True
) -> np.ndarray:
    """The clean-up that follows the boundary merge: specks, then rims, then specks.

    With ``merged``, segments under ``min_size`` pixels join their surroundings again; then
    segments narrower than ``min_width`` pixels give their pixels to their neighbours
    (:func:`absorb_thin_segments`), and the result is split into 4-connected segments with
    specks removed once more. ``min_size`` and ``min_width`` of 0 or 1 skip their step.
    """
    if merged and min_size > 1:
        labels = merge_small_segments(labels, min_size)
    if min_width > 1:
        labels = absorb_thin_segments(labels, (min_width - 1) / 2)
        if min_size > 1:
            labels = merge_small_segments(labels, min_size)
        else:
            labels = split_connected_components(labels)
    return labels


class MergeSequence:
    """The joins of one greedy boundary merge, in order, so that it can be stopped anywhere.

    :func:`merge_weak_boundaries` and :func:`merge_weak_edges` fill it (``record=``). Each
    join keeps the largest key popped since the previous one (its *gate*): a merge with
    ``threshold`` t stops before the first join whose gate, or an earlier one, is t or more,
    so the labels of any threshold are the labels after a prefix of the joins, and a prefix
    costs one pass over the segments (union-find by pointer jumping) and one lookup per pixel.
    """

    def __init__(self) -> None:
        self.segments = np.zeros((1, 1), np.int64)
        self.n_segments = 1
        self._absorbed: list[int] = []
        self._kept: list[int] = []
        self._gates: list[float] = []
        self._clean: dict[int, bool] = {}

    def start(self, segments: np.ndarray) -> None:
        """Begin with ``segments`` (labels 0..n-1), forgetting any joins."""
        self.segments = segments
        self.n_segments = int(segments.max()) + 1
        self._absorbed, self._kept, self._gates = [], [], []
        self._clean = {}
        self.__dict__.pop("first_pixels", None)

    def join(self, absorbed: int, kept: int, gate: float) -> None:
        """Record that segment ``absorbed`` joined ``kept``."""
        self._absorbed.append(absorbed)
        self._kept.append(kept)
        self._gates.append(gate)

    @property
    def n_joins(self) -> int:
        """How many joins were recorded."""
        return len(self._gates)

    def count(self, threshold: float, max_segments: int = 0) -> int:
        """The joins that a merge to ``threshold`` (capped at ``max_segments``) makes."""
        gates = np.asarray(self._gates, np.float64)
        if max_segments:
            # while more than max_segments are left, the merge joins whatever the key
            left_before = self.n_segments - np.arange(len(gates))
            gates = np.where(left_before <= max_segments, gates, -np.inf)
        return int(np.searchsorted(np.maximum.accumulate(gates), threshold, side="left"))

    def roots(self, n_joins: int) -> np.ndarray:
        """The segment that every segment belongs to after the first ``n_joins`` joins."""
        owner = np.arange(self.n_segments)
        owner[np.asarray(self._absorbed[:n_joins], np.int64)] = self._kept[:n_joins]
        while True:  # follow every segment to the one it finally joined
            root = owner[owner]
            if np.array_equal(root, owner):
                return owner
            owner = root

    @cached_property
    def first_pixels(self) -> np.ndarray:
        """The flat index of every segment's first pixel (in row-major order)."""
        return np.unique(self.segments.ravel(), return_index=True)[1]

    def is_clean(self, min_size: int) -> bool:
        """Whether every segment is 4-connected and has ``min_size`` pixels or more."""
        if min_size not in self._clean:
            sizes = np.bincount(self.segments.ravel())
            self._clean[min_size] = bool(
                sizes.min() >= min_size
                and split_connected_components(self.segments).max() == self.n_segments
            )
        return self._clean[min_size]

    def labels(self, n_joins: int) -> np.ndarray:
        """Labels 1..n after the first ``n_joins`` joins, numbered as the merge numbers them."""
        values, rank = np.unique(self.roots(n_joins), return_inverse=True)
        lookup = (rank + 1).astype(smallest_unsigned_dtype(len(values)))
        return lookup[self.segments]


class MergeHierarchy:
    """The boundary merge of one image at every level of detail, cut again in milliseconds.

    The greedy merge joins the touching segments with the weakest boundary first; recorded
    to the end, any stopping point is a prefix of its joins (:class:`MergeSequence`). A
    *detail* level ``d`` keeps about ``2 ** d`` times as many segments as the settings' own
    merge left: 0 is exactly the settings' labels, +1 about twice as many (smaller)
    segments, -1 about half as many. A level is the merge stopped after a number of joins,
    which is where some ``merge_threshold`` (or ``max_segments``) would have stopped it; the
    clean-up that follows the merge (specks and rims) runs on every cut.

    With two merges (``premerge_threshold``), levels above the second merge's start cut the
    first merge instead, so detail can rise up to the segments before any merge.
    """

    def __init__(
        self,
        stages: list[tuple[MergeSequence, int]],
        *,
        min_segment_size: int = 0,
        min_segment_width: int = 0,
        merges: bool = True,
    ) -> None:
        """``stages``: every merge run with its joins, and how many joins the settings make
        (for the last, the level 0); the clean-up's settings; whether the settings merge."""
        self.stages = stages
        self.min_segment_size = min_segment_size
        self.min_segment_width = min_segment_width
        self.merges = merges
        last, own = stages[-1]
        #: Segments the settings' merge leaves (before the clean-up): the level 0.
        self.reference = last.n_segments - own
        if min_segment_width > 1 or min_segment_size > 1:  # what every cut needs, made once
            for sequence, _ in stages:
                if sequence.is_clean(min_segment_size):
                    _ = sequence.first_pixels

    def n_segments(self, detail: float) -> int:
        """Segments at ``detail`` before the clean-up (which can remove a few more)."""
        stage, n_joins = self._cut(detail)
        return self.stages[stage][0].n_segments - n_joins

    @property
    def detail_range(self) -> tuple[float, float]:
        """The lowest (fewest segments) and highest level that change anything."""
        last = self.stages[-1][0]
        fewest = last.n_segments - last.n_joins
        most = self.stages[0][0].n_segments
        return float(np.log2(fewest / self.reference)), float(np.log2(most / self.reference))

    def labels(self, detail: float = 0.0) -> np.ndarray:
        """Labels 1..n at ``detail`` (0: the settings' own), smallest unsigned dtype."""
        stage, n_joins = self._cut(detail)
        sequence = self.stages[stage][0]
        merged = self.merges or n_joins > 0 or stage < len(self.stages) - 1
        labels = self._recut(sequence, n_joins, merged)
        if labels is None:  # the clean-up step by step, on every pixel
            labels = clean_up_merged(
                sequence.labels(n_joins), self.min_segment_size, self.min_segment_width, merged
            )
        return labels

    def _recut(self, sequence: MergeSequence, n_joins: int, merged: bool) -> np.ndarray | None:
        """The labels of :func:`clean_up_merged` after the cut, made without its passes
        over every pixel, or None where that shortcut does not hold.

        The merge's segments are 4-connected and (with ``min_segment_size``) large enough,
        so every cut's are too: the speck passes only number the segments in the order of
        their first pixel, which takes one pass over the segments. The rims' test (a pixel
        at ``depth`` or more from the outline) is a few shifted comparisons, and their pixels
        go to the nearest pixel kept, as :func:`absorb_thin_segments` gives them; where every
        pixel given away touches one of its new segment nearer to the pixel it came from,
        the segments stay connected and large enough, and the last speck pass too only
        numbers them; pixels cut off (islands under ``min_segment_size``) go to the nearest
        pixel of another segment, as that pass gives them.
        """
        min_size, min_width = self.min_segment_size, self.min_segment_width
        if min_width <= 1 and (min_size <= 1 or not merged):
            return sequence.labels(n_joins)  # the clean-up leaves the cut as it is
        depth = (min_width - 1) / 2
        if depth > MAX_SHIFTED_DEPTH or not sequence.is_clean(min_size):
            return None
        roots = sequence.roots(n_joins)
        first = np.full(sequence.n_segments, np.iinfo(np.int64).max)
        np.minimum.at(first, roots, sequence.first_pixels)
        labels = _numbered_by_first_pixel(roots, first)[sequence.segments]
        if min_width <= 1:
            return labels
        thin = _thin_pixels(labels, depth)
        if thin is None:
            return labels
        given = _give_to_nearest_kept_near(labels, thin)
        moved = np.flatnonzero(thin)
        islands = _cut_off(given, moved)
        if islands.size:
            if min_size <= 1:
                return None  # they would stay as segments of their own
            given = _give_islands_away(given, islands, min_size)
            if given is None:
                return None
        # number the segments by their first pixel again: given pixels can come first
        flat = given.ravel()
        present = np.flatnonzero(np.bincount(flat))
        # labels are numbered by first pixel: label k's is the k-th smallest group's first
        first = np.concatenate([[0], np.sort(first[np.unique(roots)])])
        segment_of, where = np.unique(flat[moved], return_index=True)
        np.minimum.at(first, segment_of, moved[where])
        order = np.argsort(first[present], kind="stable")
        lookup = np.zeros(len(first), smallest_unsigned_dtype(len(present)))
        lookup[present[order]] = np.arange(1, len(present) + 1)
        return lookup[given]

    def _cut(self, detail: float) -> tuple[int, int]:
        """Which merge to cut, and after how many joins, for ``detail``."""
        if detail == 0:
            return len(self.stages) - 1, self.stages[-1][1]
        wanted = int(round(self.reference * 2.0 ** float(detail)))
        last = len(self.stages) - 1
        for stage in range(last, -1, -1):
            sequence, own = self.stages[stage]
            if wanted <= sequence.n_segments or stage == 0:
                most = sequence.n_joins if stage == last else own
                return stage, int(np.clip(sequence.n_segments - wanted, 0, most))
        raise AssertionError("unreachable")


#: Rims up to this depth are found by shifted comparisons when a hierarchy is cut again (a
#: few dozen shifts); deeper ones by the distance transform, as :func:`absorb_thin_segments`.
MAX_SHIFTED_DEPTH = 4.0


def _numbered_by_first_pixel(roots: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Per segment, the label 1..m of its group (``roots``), groups in order of ``first``."""
    groups = np.flatnonzero(np.bincount(roots, minlength=len(first)))
    order = np.argsort(first[groups], kind="stable")
    number = np.zeros(len(first), smallest_unsigned_dtype(len(groups)))
    number[groups[order]] = np.arange(1, len(groups) + 1)
    return number[roots]


def _thin_pixels(labels: np.ndarray, depth: float) -> np.ndarray | None:
    """The pixels of the segments that :func:`absorb_thin_segments` finds thin, or None
    when it leaves every segment as it is (none thin, or all).

    A pixel lies ``depth`` or more from the outline when no outline pixel lies nearer
    than ``depth``: the outline, shifted by every offset shorter than ``depth``, misses it.
    """
    outline = np.zeros(labels.shape, bool)
    for axis in (0, 1):
        step = np.diff(labels, axis=axis) != 0
        low = (slice(None, -1), slice(None)) if axis == 0 else (slice(None), slice(None, -1))
        high = (slice(1, None), slice(None)) if axis == 0 else (slice(None), slice(1, None))
        outline[low] |= step
        outline[high] |= step
    if not outline.any():
        return None  # one segment
    near = outline.copy()
    reach = int(np.ceil(depth))
    height, width = labels.shape
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            if (dy, dx) == (0, 0) or dy * dy + dx * dx >= depth * depth:
                continue
            # near[p] |= outline[p + (dy, dx)]
            target = (
                slice(max(0, -dy), height - max(0, dy)),
                slice(max(0, -dx), width - max(0, dx)),
            )
            source = (
                slice(max(0, dy), height - max(0, -dy)),
                slice(max(0, dx), width - max(0, -dx)),
            )
            near[target] |= outline[source]
    deep = np.bincount(labels[~near], minlength=int(labels.max()) + 1) > 0
    deep[0] = True
    if deep.all() or not deep[1:].any():
        return None
    return ~deep[labels]


def _cut_off(given: np.ndarray, moved: np.ndarray) -> np.ndarray:
    """The moved pixels (flat indices) that reach no other pixel of their new segment
    through 4-neighbours of that segment: islands that the speck pass splits off. None
    left: every segment stays connected."""
    height, width = given.shape
    flat = given.ravel()
    reached = np.ones(given.size, bool)
    reached[moved] = False
    pending = moved
    while pending.size:
        rows, cols = np.divmod(pending, width)
        hit = np.zeros(len(pending), bool)
        for step, inside in (
            (-width, rows > 0),
            (width, rows < height - 1),
            (-1, cols > 0),
            (1, cols < width - 1),
        ):
            neighbour = np.where(inside, pending + step, pending)
            hit |= inside & reached[neighbour] & (flat[neighbour] == flat[pending])
        if not hit.any():
            break
        reached[pending[hit]] = True
        pending = pending[~hit]
    return pending


def _give_to_nearest_kept_near(
    segments: np.ndarray, dropped: np.ndarray, margins: tuple[int, ...] = (4, 16)
) -> np.ndarray:
    """:func:`give_to_nearest_kept`, computed around each cluster of dropped pixels only.

    The distance transform runs on each cluster's bounding box (touching dropped pixels,
    diagonals included, make one cluster) grown by a margin: every pixel outside lies
    farther than the margin from the cluster, so where the nearest kept pixel found lies
    within the margin, it and any other kept pixel as near are inside the box, and the box
    gives what the whole image gives. Where one does not within any of ``margins``, the
    whole image is transformed.
    """
    from scipy.ndimage import find_objects
    from scipy.ndimage import label as clusters_of

    given = segments.copy()
    clusters, _ = clusters_of(dropped, structure=np.ones((3, 3), bool))
    for index, box in enumerate(find_objects(clusters)):
        if box is not None:
            mine = clusters[box] == index + 1  # this cluster's pixels
            for margin in margins:
                source = _nearest_kept_in_box(segments, dropped, box, mine, margin)
                if source is not None:
                    given[box][mine] = source
                    break
            else:
                return give_to_nearest_kept(segments, dropped)
    return given


def _nearest_kept_in_box(
    segments: np.ndarray,
    dropped: np.ndarray,
    box: tuple[slice, slice],
    mine: np.ndarray,
    margin: int,
) -> np.ndarray | None:
    """The labels that the ``mine`` pixels of ``box`` take from their nearest kept pixels,
    found in ``box`` grown by ``margin``; None when one lies farther than ``margin``."""
    from scipy.ndimage import distance_transform_edt

    height, width = segments.shape
    rows, cols = box
    grown = (
        slice(max(0, rows.start - margin), min(height, rows.stop + margin)),
        slice(max(0, cols.start - margin), min(width, cols.stop + margin)),
    )
    part = dropped[grown]
    if part.all():
        return None
    far, (near_rows, near_cols) = distance_transform_edt(part, return_indices=True)
    inner = (
        slice(rows.start - grown[0].start, rows.stop - grown[0].start),
        slice(cols.start - grown[1].start, cols.stop - grown[1].start),
    )
    if far[inner][mine].max() > margin:
        return None
    return segments[grown][near_rows[inner][mine], near_cols[inner][mine]]


def _give_islands_away(given: np.ndarray, islands: np.ndarray, min_size: int) -> np.ndarray | None:
    """What :func:`merge_small_segments` makes of ``given`` whose only segments split off
    are the ``islands`` (flat indices), each under ``min_size`` pixels: their pixels go to
    the nearest pixel of another segment, up to three times; None where an island is not
    small, or islands remain (the pass then keeps them as segments)."""
    from skimage.measure import label as connected_label

    height, width = given.shape
    for _ in range(3):
        rows, cols = np.divmod(islands, width)
        box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
        mask = np.zeros(given.shape, bool)
        mask.flat[islands] = True
        parts = connected_label(np.where(mask[box], given[box], 0), background=0, connectivity=1)
        if (np.bincount(parts.ravel())[1:] >= min_size).any():
            return None
        marked = given.astype(np.int64)
        marked[box][mask[box]] = int(given.max()) + parts[mask[box]]
        given = _give_to_nearest_kept_near(marked, mask)
        islands = _cut_off(given, islands)
        if not islands.size:
            return given
    return None
