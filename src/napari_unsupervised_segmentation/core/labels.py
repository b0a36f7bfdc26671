"""Label-image helpers shared by the engine, the writer and the benchmarks (numpy only)."""

from __future__ import annotations

import numpy as np


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
    from scipy.ndimage import distance_transform_edt

    segments = split_connected_components(labels)
    for _ in range(3):  # one pass almost always suffices; a rare split-off sliver needs another
        sizes = np.bincount(segments.ravel())
        sizes[0] = 0
        keep = sizes >= min_size
        keep[sizes.argmax()] = True
        small = ~keep[segments]
        if not small.any():
            break
        _, nearest = distance_transform_edt(small, return_indices=True)
        segments = split_connected_components(segments[tuple(nearest)])
    return segments


def pixel_contrast(features: np.ndarray, smoothing: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Feature distance between every pixel and its lower and its right neighbour.

    Parameters
    ----------
    features : np.ndarray
        ``(H, W, F)`` per-pixel features (e.g. Lab colour).
    smoothing : float
        Gaussian sigma (pixels) applied to the features first; 0 for none.

    Returns
    -------
    vertical, horizontal : np.ndarray
        ``(H - 1, W)`` and ``(H, W - 1)`` Euclidean distances (float64).
    """
    features = np.asarray(features, dtype=np.float64)  # no wrap-around for integer features
    if smoothing > 0:
        from scipy.ndimage import gaussian_filter

        features = gaussian_filter(features, (smoothing, smoothing, 0))
    vertical = np.linalg.norm(np.diff(features, axis=0), axis=-1)
    horizontal = np.linalg.norm(np.diff(features, axis=1), axis=-1)
    return vertical, horizontal


def boundary_strength(
    segments: np.ndarray, vertical: np.ndarray, horizontal: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of 4-adjacent segments with its boundary length and summed pixel-pair cost.

    Parameters
    ----------
    segments : np.ndarray
        ``(H, W)`` labels 0..n-1.
    vertical, horizontal : np.ndarray
        ``(H - 1, W)`` and ``(H, W - 1)`` costs of the pixel pairs (row ``i`` with ``i + 1``,
        column ``j`` with ``j + 1``), e.g. from :func:`pixel_contrast`.

    Returns
    -------
    first, second, length, total : np.ndarray
        For each pair (``first < second``): the number of 4-neighbour pixel pairs across
        their common boundary and the sum of those pixel pairs' costs.
    """
    n_segments = int(segments.max()) + 1
    keys, costs = [], []
    for here, there, cost in (
        (segments[1:, :], segments[:-1, :], vertical),
        (segments[:, 1:], segments[:, :-1], horizontal),
    ):
        across = here != there
        low, high = np.minimum(here[across], there[across]), np.maximum(here[across], there[across])
        keys.append(low.astype(np.int64) * n_segments + high)
        costs.append(np.asarray(cost, dtype=np.float64)[across])
    pair_keys, pair_index = np.unique(np.concatenate(keys), return_inverse=True)
    length = np.bincount(pair_index)
    total = np.bincount(pair_index, np.concatenate(costs), minlength=len(pair_keys))
    return pair_keys // n_segments, pair_keys % n_segments, length, total


def boundary_contrast(
    segments: np.ndarray, features: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`boundary_strength` with the feature distance (:func:`pixel_contrast`) as cost."""
    return boundary_strength(segments, *pixel_contrast(features))


def merge_weak_boundaries(
    segments: np.ndarray, features: np.ndarray, threshold: float, smoothing: float = 1.0
) -> np.ndarray:
    """Join touching segments, weakest boundary first, until every boundary is strong.

    The strength of the boundary between two segments is its mean contrast: the feature
    distance (e.g. Lab colour) between the two pixels of every 4-neighbour pixel pair that
    straddles it, averaged along the boundary, after a Gaussian blur of ``smoothing`` pixels.
    The two segments with the weakest boundary are joined, their boundaries with common
    neighbours pooled, and so on, until no boundary is weaker than ``threshold``. A gentle
    ramp (sky, an uneven stain) has weak boundaries everywhere and becomes one segment; an
    object of similar mean colour but with a sharp outline stays apart.

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

    Returns
    -------
    np.ndarray
        Labels 1..n, smallest unsigned dtype.
    """
    return join_weak_boundaries(segments, *pixel_contrast(features, smoothing), threshold)


def join_weak_boundaries(
    segments: np.ndarray, vertical: np.ndarray, horizontal: np.ndarray, threshold: float
) -> np.ndarray:
    """Join touching segments while the weakest boundary's mean pixel-pair cost < ``threshold``.

    The costs are those of :func:`boundary_strength`. When two segments join, their
    boundaries with common neighbours are pooled (lengths and summed costs add up). The
    joining runs in Python over pairs of touching segments (about 15 microseconds per pair):
    give it segments, not pixels; 10^4 to 10^5 segments take well under a few seconds.

    Returns
    -------
    np.ndarray
        Labels 1..n, smallest unsigned dtype.
    """
    import heapq

    segments = relabel_consecutive(segments).astype(np.int64) - 1
    first, second, length, total_cost = boundary_strength(segments, vertical, horizontal)
    # neighbours[i][j] = [boundary length, summed cost], one list shared by i and j.
    neighbours: list[dict[int, list[float]]] = [{} for _ in range(int(segments.max()) + 1)]
    heap = []
    for i, j, n, total in zip(
        first.tolist(), second.tolist(), length.tolist(), total_cost.tolist(), strict=True
    ):
        neighbours[i][j] = neighbours[j][i] = [n, total]
        heap.append((total / n, i, j))
    heapq.heapify(heap)
    owner = np.arange(len(neighbours))
    while heap:
        strength, i, j = heapq.heappop(heap)
        if strength >= threshold:
            break
        edge = neighbours[i].get(j)
        if edge is None or edge[1] / edge[0] != strength:
            continue  # outdated: i or j has been joined to another segment since
        if len(neighbours[i]) < len(neighbours[j]):
            i, j = j, i  # keep the segment with more neighbours, move the fewer
        owner[j] = i
        del neighbours[i][j]
        for k, (n, total) in neighbours[j].items():
            if k == i:
                continue
            del neighbours[k][j]
            pooled = neighbours[i].get(k)
            if pooled is None:
                pooled = neighbours[i][k] = neighbours[k][i] = [0.0, 0.0]
            pooled[0] += n
            pooled[1] += total
            heapq.heappush(heap, (pooled[1] / pooled[0], min(i, k), max(i, k)))
        neighbours[j] = {}
    while True:  # follow every segment to the one it finally joined
        root = owner[owner]
        if np.array_equal(root, owner):
            break
        owner = root
    return relabel_consecutive(owner[segments])


def boundary_votes(members: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Share of the label images that separate each pixel from its lower and right neighbour.

    Returns ``(H - 1, W)`` and ``(H, W - 1)`` arrays in [0, 1] (the pixel pairs of
    :func:`pixel_contrast`).
    """
    vertical = np.mean([labels[1:, :] != labels[:-1, :] for labels in members], axis=0)
    horizontal = np.mean([labels[:, 1:] != labels[:, :-1] for labels in members], axis=0)
    return vertical, horizontal


def intersect_labels(members: list[np.ndarray]) -> np.ndarray:
    """The 4-connected segments on which every label image is constant (their overlay)."""
    combined = np.zeros(members[0].shape, dtype=np.int64)
    for labels in members:
        values, index = np.unique(labels, return_inverse=True)
        combined = combined * len(values) + index.reshape(labels.shape)
        combined = np.unique(combined, return_inverse=True)[1].reshape(labels.shape)
    return split_connected_components(combined)


def consensus_labels(
    members: list[np.ndarray], features: np.ndarray, threshold: float, smoothing: float = 1.0
) -> np.ndarray:
    """One segmentation from several: boundaries that the members agree on and that show.

    The members' overlay (:func:`intersect_labels`) is joined across weak boundaries
    (:func:`join_weak_boundaries`), where the cost of a pixel pair is the share of members
    that separate it (:func:`boundary_votes`) times its feature contrast
    (:func:`pixel_contrast` after a ``smoothing``-pixel blur). A boundary that only one
    member of many draws, or that runs through uniform colour, is weak; one that every
    member draws along a colour edge stays.

    Parameters
    ----------
    members : list of np.ndarray
        ``(H, W)`` label images of the same scene (e.g. networks trained from different
        seeds).
    features : np.ndarray
        ``(H, W, F)`` per-pixel features (Lab colour for RGB).
    threshold : float
        Boundaries whose mean cost (votes x contrast) is below this are removed.
    smoothing : float
        Gaussian sigma (pixels) applied to the features first.

    Returns
    -------
    np.ndarray
        Labels 1..n, smallest unsigned dtype.
    """
    vote_v, vote_h = boundary_votes(members)
    contrast_v, contrast_h = pixel_contrast(features, smoothing)
    return join_weak_boundaries(
        intersect_labels(members), vote_v * contrast_v, vote_h * contrast_h, threshold
    )
