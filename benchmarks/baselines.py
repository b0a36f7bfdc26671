"""Baselines of the BSDS500 benchmark: blank, graph-based and k-means (Kanezaki 2018, Sec. 3).

- blank: one label for the whole image (the floor of every score);
- graph-based: Felzenszwalb and Huttenlocher (IJCV 2004), through
  ``skimage.segmentation.felzenszwalb``; the reference row uses ``scale=500``;
- k-means: k-means on the RGB values of the alpha x alpha window around every pixel, then
  4-connected components, as in the paper (alpha in 1, 3, 5, 7; k in 2..20). The k-means is
  a plain Lloyd iteration with k-means++ seeding from a fixed seed, so it is deterministic.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

try:
    from napari_unsupervised_segmentation.core.labels import split_connected_components
except ImportError:  # a source checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from napari_unsupervised_segmentation.core.labels import split_connected_components

__all__ = ["blank", "graph_based", "kmeans", "kmeans_segmentation", "window_features"]


def blank(image: np.ndarray) -> np.ndarray:
    """One label (1) for the whole ``(H, W, 3)`` image."""
    return np.ones(np.shape(image)[:2], dtype=np.uint8)


def graph_based(
    image: np.ndarray, scale: float = 500.0, sigma: float = 0.5, min_size: int = 20
) -> np.ndarray:
    """Felzenszwalb-Huttenlocher graph-based segmentation of an ``(H, W, 3)`` image.

    Parameters
    ----------
    image : np.ndarray
        RGB image, channels last.
    scale : float
        Observation scale (higher: larger segments); the paper's range is 100..2000.
    sigma : float
        Gaussian pre-smoothing.
    min_size : int
        Smallest segment, in pixels.

    Returns
    -------
    np.ndarray
        ``(H, W)`` labels.
    """
    from skimage.segmentation import felzenszwalb

    if scale <= 0:
        raise ValueError(f"scale must be > 0; got {scale}")
    return felzenszwalb(image, scale=scale, sigma=sigma, min_size=min_size, channel_axis=-1)


def window_features(image: np.ndarray, alpha: int) -> np.ndarray:
    """RGB values of the ``alpha x alpha`` window around every pixel (edges replicated).

    Returns
    -------
    np.ndarray
        ``(H * W, alpha * alpha * C)`` float32 features, in raster order.
    """
    if alpha < 1 or alpha % 2 == 0:
        raise ValueError(f"alpha must be a positive odd integer; got {alpha}")
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    r = alpha // 2
    padded = np.pad(image, ((r, r), (r, r), (0, 0)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (alpha, alpha), axis=(0, 1))
    height, width = image.shape[:2]
    return windows.reshape(height * width, -1).astype(np.float32)


def kmeans(features: np.ndarray, k: int, *, seed: int = 0, max_iter: int = 100) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding (Arthur and Vassilvitskii, 2007).

    Parameters
    ----------
    features : np.ndarray
        ``(N, D)`` points.
    k : int
        Number of clusters.
    seed : int
        Seed of the k-means++ draws; the result is a function of it.
    max_iter : int
        Most Lloyd iterations (it stops earlier once no point changes cluster).

    Returns
    -------
    np.ndarray
        ``(N,)`` cluster indices in ``0..k-1``.
    """
    x = np.asarray(features, dtype=np.float32)
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..{n}; got {k}")
    rng = np.random.default_rng(seed)
    sq_norms = np.einsum("ij,ij->i", x, x, dtype=np.float64)

    def sq_dist_to(center: np.ndarray) -> np.ndarray:
        return np.maximum(sq_norms - 2.0 * (x @ center) + float(center @ center), 0.0)

    centers = np.empty((k, x.shape[1]), dtype=np.float32)
    centers[0] = x[rng.integers(n)]
    nearest = sq_dist_to(centers[0])
    for j in range(1, k):
        total = nearest.sum()
        index = int(rng.choice(n, p=nearest / total)) if total > 0 else int(rng.integers(n))
        centers[j] = x[index]
        nearest = np.minimum(nearest, sq_dist_to(centers[j]))

    labels = np.full(n, -1, dtype=np.int64)
    for _ in range(max_iter):
        # argmin over ||c||^2 - 2 x.c (||x||^2 is common to every centre)
        scores = np.einsum("ij,ij->i", centers, centers)[None, :] - 2.0 * (x @ centers.T)
        new = np.argmin(scores, axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = labels == j
            if members.any():  # an empty cluster keeps its centre
                centers[j] = x[members].mean(axis=0, dtype=np.float64)
    return labels


def kmeans_segmentation(image: np.ndarray, k: int = 8, alpha: int = 5, seed: int = 0) -> np.ndarray:
    """The paper's k-means baseline: cluster window features, then 4-connected components.

    Parameters
    ----------
    image : np.ndarray
        ``(H, W, 3)`` RGB image.
    k : int
        Number of clusters (the paper: 2..20).
    alpha : int
        Window side (the paper: 1, 3, 5 or 7).
    seed : int
        Seed of the k-means++ seeding.

    Returns
    -------
    np.ndarray
        ``(H, W)`` labels 1..n, one per 4-connected segment.
    """
    clusters = kmeans(window_features(image, alpha), k, seed=seed)
    return split_connected_components(clusters.reshape(np.shape(image)[:2]))
