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


def merge_similar_segments(
    segments: np.ndarray, features: np.ndarray, threshold: float
) -> np.ndarray:
    """Join touching segments whose mean features differ by less than ``threshold``.

    ``features`` is ``(H, W, F)`` (e.g. Lab colour). Every pair of segments that touch
    (8-neighbourhood: diagonal contact counts) and whose
    mean feature vectors are closer than ``threshold`` (Euclidean) is joined, and so,
    transitively, are chains of such pairs: the connected components of the graph of
    similar neighbours, whose means are those of the segments given. Returns labels 1..n.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    segments = relabel_consecutive(segments).astype(np.int64) - 1
    n_segments = int(segments.max()) + 1
    flat = features.reshape(-1, features.shape[-1]).astype(np.float64)
    counts = np.bincount(segments.ravel(), minlength=n_segments)
    means = (
        np.stack([np.bincount(segments.ravel(), f, minlength=n_segments) for f in flat.T], axis=1)
        / counts[:, None]
    )
    neighbours = [  # (this pixel, its neighbour below / right / diagonally)
        (segments[1:, :], segments[:-1, :]),
        (segments[:, 1:], segments[:, :-1]),
        (segments[1:, 1:], segments[:-1, :-1]),
        (segments[1:, :-1], segments[:-1, 1:]),
    ]
    pairs = np.concatenate([np.stack([u.ravel(), v.ravel()], 1) for u, v in neighbours])
    pairs = np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0)
    similar = np.linalg.norm(means[pairs[:, 0]] - means[pairs[:, 1]], axis=1) < threshold
    a, b = pairs[similar].T
    adjacency = coo_matrix((np.ones(len(a)), (a, b)), shape=(n_segments, n_segments))
    _, component = connected_components(adjacency, directed=False)
    return relabel_consecutive(component[segments])
