"""Texture-aware boundary strength: oriented histogram gradients of colour and textons.

Colour contrast across a boundary cannot tell the inside of a texture (strong local steps
everywhere) from the edge between two regions. Comparing the *histograms* of the two halves
of a disc centred on a pixel can: inside a texture both halves hold the same mix of values,
across an edge they do not. This follows the brightness, colour and texture gradients of
Martin, Fowlkes and Malik (IEEE TPAMI 26(5), 2004): per cue, the chi-squared distance
between the half-disc histograms, at several orientations and radii; here the cues are the
image's colour channels and a texton map (k-means of a small filter bank on the lightness),
and the strength is the mean over cues and radii of the largest response over orientations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

#: Disc radii in pixels: a fine and a coarse scale (about 1 % and 2 % of a 481x321 photo's
#: diagonal).
RADII = (5, 10)
N_ORIENTATIONS = 8
N_BINS = 24  # per colour channel
BIN_SMOOTHING = 1.5  # Gaussian sigma along the bins, in bins: fewer sampling artefacts
N_TEXTONS = 32
_KMEANS_SAMPLE = 20000
_KMEANS_ITERATIONS = 20
_CHUNK_BYTES = 128 * 2**20  # largest convolution output held at once
#: Larger images are measured at a reduced size (about 512 x 512) and the map scaled back:
#: the cost stays a few seconds, and the discs grow with the image.
MAX_PIXELS = 2**18
#: Share of colour in the strength (texture: the rest); 3/4 weighs each Lab channel and the
#: textons equally, as measured on BSDS500.
COLOUR_WEIGHT = 0.75


def texture_gradient(
    features: np.ndarray,
    lightness: np.ndarray,
    *,
    is_rgb: bool = True,
    seed: int | None = 0,
    device: torch.device | str = "cpu",
    max_pixels: int = MAX_PIXELS,
    cues: tuple[Sequence[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Boundary strength per pixel in [0, 1] from colour and texture histograms.

    Parameters
    ----------
    features : np.ndarray
        ``(H, W, C)`` colour features (Lab for RGB, channels otherwise); each channel is
        quantised into ``N_BINS`` bins between its 0.5th and 99.5th percentiles.
    lightness : np.ndarray
        ``(H, W)`` intensity on a 0..100 scale, from which the texton map is made.
    is_rgb : bool
        Whether ``features`` are Lab: the colour gradient is then the mean over the three
        channels, otherwise the largest over the channels (so that a threshold means the
        same for one channel or many).
    seed : int or None
        Seed of the texton k-means (None: a fresh random start).
    device : torch.device or str
        Where the half-disc convolutions run.
    max_pixels : int
        Images with more pixels are measured on a copy shrunk to about this many pixels
        (anti-aliased), and the map is scaled back up (bilinear).
    cues : tuple or None
        ``histogram_cues(features, lightness, seed=seed, max_pixels=max_pixels)`` when the
        caller has them already (they are made here otherwise).

    Returns
    -------
    np.ndarray
        ``(H, W)`` float32: high on boundaries between regions of different colour or
        texture, low inside uniform and inside evenly textured regions.
    """
    shape = lightness.shape
    if cues is None:
        cues = histogram_cues(features, lightness, seed=seed, max_pixels=max_pixels)
    colour_cues, textons = cues
    measured = textons.shape  # the shrunk copy's, for a large image
    # Discs that do not fit twice across the image measure nothing; keep the smallest one.
    radii = [r for r in RADII if 4 * r <= min(measured)] or [min(RADII)]
    colour = np.zeros(measured, np.float32)
    texture = np.zeros(measured, np.float32)
    for radius in radii:
        distances = (
            half_disc_chi2(index, N_BINS, radius, smoothing=BIN_SMOOTHING, device=device)
            for index in colour_cues
        )
        if is_rgb:
            colour += combine_channels(list(distances), is_rgb)
        else:  # a running maximum: one map at a time, however many channels
            strongest = next(distances)
            for distance in distances:
                np.maximum(strongest, distance, out=strongest)
            colour += strongest
        texture += half_disc_chi2(textons, N_TEXTONS, radius, device=device)
    gradient = mix_cues(colour, texture) / len(radii)
    if measured != shape:
        from skimage.transform import resize

        gradient = resize(gradient, shape, order=1).astype(np.float32)
    return gradient


def histogram_cues(
    features: np.ndarray,
    lightness: np.ndarray,
    *,
    seed: int | None = 0,
    max_pixels: int | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Bin indices of every colour channel (``N_BINS`` each) and the texton map (``N_TEXTONS``).

    With ``max_pixels``, a larger image is binned on a copy shrunk to about that many pixels
    (:func:`shrink`), so the maps have the shrunk copy's shape.
    """
    if max_pixels is not None and lightness.size > max_pixels:
        features, lightness = shrink(features, lightness, max_pixels)
    colour_cues = [quantise(features[..., c], N_BINS) for c in range(features.shape[-1])]
    return colour_cues, texton_map(lightness, seed=seed)


def enlarge(index: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A bin map scaled up to ``shape``, nearest pixel (bins are categories, not values)."""
    if index.shape == shape:
        return index
    from skimage.transform import resize

    return resize(index, shape, order=0, preserve_range=True, anti_aliasing=False).astype(np.int64)


def shrink(
    features: np.ndarray, lightness: np.ndarray, max_pixels: int
) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased copies of both maps with about ``max_pixels`` pixels (aspect kept)."""
    from skimage.transform import resize

    factor = (max_pixels / lightness.size) ** 0.5
    small = tuple(max(1, round(n * factor)) for n in lightness.shape)
    return (
        resize(features, small + features.shape[2:], anti_aliasing=True),
        resize(lightness, small, anti_aliasing=True),
    )


def combine_channels(per_channel: Sequence[Any], is_rgb: bool) -> Any:
    """One colour distance from per-channel ones (maps or numbers).

    Lab is one colour space: its channels are averaged. Other channels (microscopy stains)
    are separate signals: an edge in any one of them is an edge.
    """
    return np.mean(per_channel, axis=0) if is_rgb else np.max(per_channel, axis=0)


def mix_cues(colour: Any, texture: Any) -> Any:
    """The strength: colour weighs ``COLOUR_WEIGHT``, texture the rest (maps or numbers)."""
    return COLOUR_WEIGHT * colour + (1 - COLOUR_WEIGHT) * texture


def quantise(channel: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin 0..n_bins-1 of every pixel; equal bins between the 0.5th and 99.5th percentiles."""
    low, high = np.percentile(channel, [0.5, 99.5])
    scaled = (channel - low) / max(float(high - low), 1e-6) * n_bins
    return np.clip(np.floor(scaled), 0, n_bins - 1).astype(np.int64)


def half_disc_kernels(radius: int, n_orientations: int) -> np.ndarray:
    """The two halves of a disc at every orientation: ``(2 * n, 2r + 1, 2r + 1)`` masks.

    Orientation ``k`` splits the disc along the line through its centre at angle
    ``pi k / n`` from the vertical, so ``k = 0`` gives left and right. Pixels on the line
    belong to neither half. Masks ``0..n-1`` are the first halves, ``n..2n-1`` the second.
    """
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1].astype(np.float64)
    disc = x**2 + y**2 <= radius**2 + 0.5
    firsts, seconds = [], []
    for k in range(n_orientations):
        angle = np.pi * k / n_orientations
        side = x * np.cos(angle) + y * np.sin(angle)
        firsts.append(disc & (side > 1e-9))
        seconds.append(disc & (side < -1e-9))
    return np.stack(firsts + seconds).astype(np.float32)


def half_disc_chi2(
    index: np.ndarray,
    n_bins: int,
    radius: int,
    *,
    n_orientations: int = N_ORIENTATIONS,
    smoothing: float = 0.0,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """The largest chi-squared distance over orientations between half-disc histograms.

    ``0.5 * sum_b (h1_b - h2_b)^2 / (h1_b + h2_b)`` with ``h1``, ``h2`` the normalised
    histograms of ``index`` (values 0..n_bins-1) in the two halves of the disc of
    ``radius`` pixels around each pixel; 0 for equal histograms, 1 for disjoint ones. Near
    the image's border each half counts only its pixels inside the image, so the border
    itself is no edge. ``smoothing`` blurs the histograms along the bins (ordered bins only).
    """
    halves = torch.from_numpy(half_disc_kernels(radius, n_orientations)).unsqueeze(1).to(device)
    height, width = index.shape

    def half_sums(mass: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return F.conv2d(torch.from_numpy(mass).unsqueeze(1).to(device), halves, padding=radius)

    inside = half_sums(np.ones((1, height, width), np.float32))[0]
    # An orientation counts where both halves keep at least a quarter of their pixels.
    enough = inside >= 0.25 * halves.sum(dim=(1, 2, 3))[:, None, None]
    usable = enough[:n_orientations] & enough[n_orientations:]
    inside = inside.clamp_min(1.0)
    chi2 = torch.zeros((n_orientations, height, width), device=device)
    per_bin = 2 * n_orientations * height * width * 4
    chunk = max(1, _CHUNK_BYTES // per_bin)
    for start in range(0, n_bins, chunk):
        bins = np.arange(start, min(start + chunk, n_bins))
        histograms = half_sums(bin_weights(index, bins, smoothing, n_bins)) / inside
        first, second = histograms[:, :n_orientations], histograms[:, n_orientations:]
        chi2 += ((first - second).square() / (first + second).clamp_min(1e-6)).sum(0)
    return (0.5 * chi2 * usable).amax(0).clamp(0, 1).cpu().numpy()


def bin_weights(index: np.ndarray, bins: np.ndarray, smoothing: float, n_bins: int) -> np.ndarray:
    """How much of each pixel goes to each of ``bins``: all to its own bin, or spread.

    With ``smoothing`` > 0 a pixel's unit mass spreads over the nearby bins with Gaussian
    weights (sigma in bins, cut at 4 sigma), like blurring every histogram along its bins.
    """
    if not smoothing:
        return (index[np.newaxis] == bins[:, None, None]).astype(np.float32)
    reach = int(4 * smoothing + 0.5)
    offsets = np.arange(-reach, reach + 1)
    weights = np.exp(-0.5 * (offsets / smoothing) ** 2)
    # Each pixel's weights are scaled to sum to 1 over the bins that exist, so that pixels in
    # the end bins (everything beyond the percentiles) weigh as much as the others.
    cumulative = np.concatenate([[0.0], np.cumsum(weights)])
    low = np.clip(reach - index, 0, 2 * reach + 1)  # first offset that lands in a bin
    high = np.clip(reach + n_bins - index, 0, 2 * reach + 1)
    inside = cumulative[high] - cumulative[low]
    offset = bins[:, None, None] - index[np.newaxis]
    spread = np.where(np.abs(offset) <= reach, weights[np.clip(offset + reach, 0, 2 * reach)], 0.0)
    return (spread / inside).astype(np.float32)


def texton_map(
    lightness: np.ndarray, *, n_textons: int = N_TEXTONS, seed: int | None = 0
) -> np.ndarray:
    """Texton index per pixel: k-means of a Gaussian derivative filter bank on ``lightness``.

    The bank: first derivatives at 4 orientations and a Laplacian of Gaussian, at sigma 1
    and 2 pixels, and a Laplacian of Gaussian at 4 pixels (11 responses per pixel).
    """
    from scipy import ndimage

    image = np.asarray(lightness, np.float64) / 100.0
    responses = []
    for sigma in (1.0, 2.0):
        dy = ndimage.gaussian_filter(image, sigma, order=(1, 0))
        dx = ndimage.gaussian_filter(image, sigma, order=(0, 1))
        for k in range(4):
            angle = np.pi * k / 4
            responses.append(np.cos(angle) * dx + np.sin(angle) * dy)
        responses.append(ndimage.gaussian_laplace(image, sigma))
    responses.append(ndimage.gaussian_laplace(image, 4.0))
    points = np.stack(responses, -1).reshape(-1, len(responses))
    rng = np.random.default_rng(seed)
    sample = points[rng.choice(len(points), min(_KMEANS_SAMPLE, len(points)), replace=False)]
    centres = kmeans(sample, min(n_textons, len(sample)), rng)
    return nearest_centre(points, centres).reshape(image.shape)


def kmeans(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` centres of ``points``: k-means++ seeding, then Lloyd iterations."""
    centres = [points[rng.integers(len(points))]]
    distance = ((points - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = distance.sum()
        pick = (
            rng.choice(len(points), p=distance / total) if total > 0 else rng.integers(len(points))
        )
        centres.append(points[pick])
        distance = np.minimum(distance, ((points - centres[-1]) ** 2).sum(1))
    centres = np.stack(centres)
    for _ in range(_KMEANS_ITERATIONS):
        assignment = nearest_centre(points, centres)
        counts = np.bincount(assignment, minlength=k)
        sums = np.stack(
            [np.bincount(assignment, points[:, d], minlength=k) for d in range(points.shape[1])], 1
        )
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
    return centres


def nearest_centre(points: np.ndarray, centres: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Index of the nearest centre (Euclidean) for every point, in chunks of points."""
    squared = (centres**2).sum(1)
    nearest = np.empty(len(points), np.int64)
    for start in range(0, len(points), chunk):
        block = points[start : start + chunk]
        nearest[start : start + chunk] = (squared - 2 * block @ centres.T).argmin(1)
    return nearest
