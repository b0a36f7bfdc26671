"""Superpixels and the superpixel majority refinement of the paper (Sec. 2.2)."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .normalize import PreparedImage
from .params import SegmentationParams

#: Non-RGB channels are scaled to [0, 100] for SLIC so that ``compactness`` weighs colour
#: against space as it does for Lab (whose L runs from 0 to 100).
SLIC_NON_RGB_RANGE = 100.0


def colour_features(image: PreparedImage) -> np.ndarray:
    """Per-pixel colour for SLIC and segment merging: Lab for RGB, channels x 100 otherwise.

    Both put colour differences on the same 0..100 scale, so ``compactness`` and
    ``merge_threshold`` mean the same for photos and for microscopy channels.
    """
    if image.is_rgb:
        from skimage.color import rgb2lab

        return rgb2lab(image.channels)
    return image.channels * SLIC_NON_RGB_RANGE


#: Felzenszwalb-Huttenlocher smoothing and smallest segment: scikit-image's defaults are 0.8
#: and 20; 0.5 and 20 are the settings of the BSDS500 reference row and were measured here.
GRAPH_SIGMA = 0.5
GRAPH_MIN_SIZE = 20


def superpixels_for(
    image: PreparedImage,
    settings: SegmentationParams,
    *,
    share: float = 1.0,
    spacing: tuple[float, ...] | None = None,
) -> np.ndarray:
    """The superpixels ``settings`` ask for on ``image`` (:func:`compute_superpixels`):
    SLIC with ``n_superpixels`` times ``share`` (a crop's share of its plane or volume, so
    that superpixels are as large as on the whole) or graph-based segments of
    ``superpixel_scale``."""
    if settings.superpixels == "graph":
        return compute_superpixels(image, 0, 0.0, settings.superpixel_scale, spacing)
    count = max(1, round(settings.n_superpixels * share))
    return compute_superpixels(image, count, settings.compactness, 0.0, spacing)


def compute_superpixels(
    image: PreparedImage,
    n_superpixels: int,
    compactness: float,
    superpixel_scale: float = 0.0,
    spacing: tuple[float, ...] | None = None,
) -> np.ndarray:
    """The refinement's superpixels, labelled 0..S-1 consecutively.

    With ``superpixel_scale`` 0, SLIC superpixels as in the paper: RGB images are clustered in
    Lab (the public demo hands SLIC OpenCV's BGR order, so its Lab has red and blue
    swapped; ``benchmarks/demo_loop.py`` measures that); others on their channels. With
    ``superpixel_scale`` > 0, Felzenszwalb-Huttenlocher graph-based segments of that scale
    instead (see :func:`graph_segments`): their outlines follow the image's edges, and
    their number follows the image's content rather than ``n_superpixels``.

    A volume (``image.channels`` of shape ``(D, H, W, C)``) gets 3D SLIC supervoxels;
    ``spacing`` (the voxel size along each spatial axis, None: isotropic) weighs SLIC's
    distances, so that a supervoxel spans as far in space along a coarse axis as along a
    fine one. Graph-based segments are 2D only: a volume with ``superpixel_scale`` > 0 raises
    ValueError.
    """
    if superpixel_scale > 0 and image.channels.ndim != 3:
        raise ValueError(
            "graph-based superpixels (superpixels='graph') are made for 2D images only; a "
            "volume is refined by 3D SLIC supervoxels: set superpixels='slic'"
        )
    if superpixel_scale > 0:
        superpixels = graph_segments(image, superpixel_scale)
    else:
        from skimage.segmentation import slic

        # RGB goes in as RGB, for SLIC's own Lab conversion (the demo's conversion, on RGB).
        data = image.channels if image.is_rgb else colour_features(image)
        superpixels = slic(
            data,
            n_segments=n_superpixels,
            compactness=compactness,
            convert2lab=image.is_rgb,
            start_label=0,
            channel_axis=-1,
            **({} if spacing is None else {"spacing": relative_spacing(spacing)}),
        )
    _, consecutive = np.unique(superpixels, return_inverse=True)
    return consecutive.reshape(superpixels.shape)


def relative_spacing(spacing: tuple[float, ...]) -> np.ndarray:
    """``spacing`` in units of its finest axis: SLIC's ``compactness`` and supervoxel size
    then mean the same in voxels of the finest axis whatever unit the spacing is in."""
    values = np.asarray(spacing, dtype=np.float64)
    return values / values.min()


def graph_segments(image: PreparedImage, scale: float) -> np.ndarray:
    """Felzenszwalb-Huttenlocher graph-based segments of the image's channels at ``scale``.

    scikit-image's ``felzenszwalb`` with sigma ``GRAPH_SIGMA`` and smallest segment
    ``GRAPH_MIN_SIZE``; labels 0..n-1 (not necessarily consecutive).
    """
    from skimage.segmentation import felzenszwalb

    with warnings.catch_warnings():
        # The channel axis is given: many channels are meant, not a 3D image.
        warnings.filterwarnings("ignore", "Got image with third dimension", RuntimeWarning)
        return felzenszwalb(
            image.channels,
            scale=scale,
            sigma=GRAPH_SIGMA,
            min_size=GRAPH_MIN_SIZE,
            channel_axis=-1,
        )


class SuperpixelRefiner:
    """Gives every pixel the most frequent label of its superpixel, in one bincount.

    Ties go to the smallest label. Built once per image; each call stays on the device.
    """

    def __init__(self, superpixels: np.ndarray, n_classes: int, device: torch.device) -> None:
        flat = torch.as_tensor(superpixels.reshape(-1), dtype=torch.int64, device=device)
        self.n_superpixels = int(superpixels.max()) + 1
        self.n_classes = n_classes
        self._superpixel = flat
        self._offset = flat * n_classes

    def histogram(self, labels: torch.Tensor) -> torch.Tensor:
        """Label counts per superpixel, shape ``(S, n_classes)``."""
        counts = torch.bincount(
            self._offset + labels.reshape(-1), minlength=self.n_superpixels * self.n_classes
        )
        return counts.view(self.n_superpixels, self.n_classes)

    def __call__(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Refined labels (shape of ``labels``) and the pixel count of every label."""
        histogram = self.histogram(labels)
        majority = histogram.argmax(dim=1)  # first maximum: the smallest label on ties
        refined = majority[self._superpixel].view(labels.shape)
        return refined, histogram.sum(dim=0)
