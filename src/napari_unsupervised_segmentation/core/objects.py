"""Objects from the network's classes: one label per nucleus or cell, background 0.

The network finds classes of pixels (background, a bright core, a dark rim, ...), not
objects. :func:`objects_from_classes` turns those classes into objects, for 2D images and
3D volumes alike (face connectivity throughout): the background classes become 0, the
other classes together form the foreground, holes in it are filled, touching objects are
split by a watershed of the distance transform, and specks are removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .labels import smallest_unsigned_dtype
from .params import BACKGROUND_RULES, OBJECT_SPLITS

#: Where between the largest class's mean brightness (0) and Otsu's threshold of the image
#: (1) :func:`intensity_classes` draws the line between background and object classes.
CLASS_CUT = 0.5
#: Where on the same scale :meth:`Brightness.pixels` draws the line that a pixel of an object
#: class must pass to be part of an object.
PIXEL_CUT = 0.8
#: The Gaussian (pixels) that smooths the distance transform before its maxima seed the
#: split, so that a ragged outline does not seed an object of its own.
DISTANCE_SMOOTHING = 1.0


#: Width in pixels of the band along the image's faces that :func:`border_classes` looks
#: at: wider than the outermost pixels, to which the network's zero padding can give
#: classes of their own.
BORDER_WIDTH = 4


def border_classes(
    classes: np.ndarray, width: int = BORDER_WIDTH, *, spatial_ndim: int | None = None
) -> list[int]:
    """The classes that cover the image's border most: its background.

    The border is the band of pixels less than ``width`` from any face of the image or
    volume; with ``spatial_ndim``, the leading axes are planes of a stack and the band runs
    along the faces of each plane (the last ``spatial_ndim`` axes) only. The class with the
    most border pixels (the lowest class of a tie) is background, and so is every class
    whose share of the border pixels exceeds its share of all pixels: objects sit inside
    the field of view, the background surrounds them, and a second background class (uneven
    illumination along one edge, the network's own class for the outermost pixels) is more
    common on the border than inside.
    """
    classes = np.asarray(classes)
    values, counts = np.unique(classes, return_counts=True)
    border = np.zeros(classes.shape, dtype=bool)
    first = 0 if spatial_ndim is None else classes.ndim - spatial_ndim
    for axis in range(first, classes.ndim):
        for side in (slice(0, width), slice(-width, None)):
            index = [slice(None)] * classes.ndim
            index[axis] = side
            border[tuple(index)] = True
    on_border = classes[border]
    border_counts = np.array([np.count_nonzero(on_border == v) for v in values])
    enriched = border_counts / on_border.size > counts / classes.size
    enriched[np.argmax(border_counts)] = True
    return [int(v) for v in values[enriched]]


@dataclass(frozen=True)
class Brightness:
    """Where background and objects lie on a map of classes' brightness.

    ``smooth`` is the intensity (one value per pixel, e.g. the mean of the channels)
    smoothed by a Gaussian of 1 pixel, as the classic Otsu pipeline does; objects are on the
    ``side`` (+1 brighter, -1 darker) of Otsu's ``threshold`` that holds fewer pixels
    (bright nuclei on a dark field, dark ones on a bright field); the largest class is
    background, at mean ``level``. A cut ``c`` is the line ``c`` of the way from ``level``
    to ``threshold``.
    """

    smooth: np.ndarray
    side: float
    level: float
    threshold: float

    @classmethod
    def of(
        cls, classes: np.ndarray, intensity: np.ndarray, spatial_ndim: int | None = None
    ) -> Brightness:
        """The brightness of ``classes`` (same shape as ``intensity``); with
        ``spatial_ndim``, the leading axes are planes of a stack: smoothing stays within
        each."""
        from scipy import ndimage
        from skimage.filters import threshold_otsu

        classes = np.asarray(classes)
        intensity = np.asarray(intensity, dtype=np.float64)
        if intensity.shape != classes.shape:
            raise ValueError(f"intensity {intensity.shape} and classes {classes.shape} differ")
        lead = 0 if spatial_ndim is None else classes.ndim - spatial_ndim
        smooth = ndimage.gaussian_filter(intensity, [0.0] * lead + [1.0] * (classes.ndim - lead))
        _, inverse, counts = np.unique(classes, return_inverse=True, return_counts=True)
        largest = np.argmax(counts)
        level = float(smooth.ravel()[inverse.ravel() == largest].mean())
        if smooth.min() == smooth.max():  # nothing stands out: all background
            return cls(smooth, 1.0, level, np.inf)
        threshold = float(threshold_otsu(smooth))
        side = 1.0 if np.count_nonzero(smooth > threshold) < smooth.size / 2 else -1.0
        return cls(smooth, side, level, threshold)

    def beyond(self, values: np.ndarray, cut: float) -> np.ndarray:
        """Whether ``values`` lie past the line ``cut``, on the objects' side."""
        if not np.isfinite(self.threshold):
            return np.zeros(np.shape(values), dtype=bool)
        line = self.level + cut * (self.threshold - self.level)
        return self.side * (np.asarray(values) - line) > 0

    def background(self, classes: np.ndarray, cut: float = CLASS_CUT) -> list[int]:
        """The classes whose mean brightness does not pass the line ``cut``."""
        values, inverse, counts = np.unique(classes, return_inverse=True, return_counts=True)
        means = np.bincount(inverse.ravel(), weights=self.smooth.ravel()) / counts
        objects = self.beyond(means, cut)
        return [int(v) for v, is_object in zip(values, objects, strict=True) if not is_object]

    def pixels(self, cut: float = PIXEL_CUT) -> np.ndarray:
        """The pixels bright enough to be part of an object: past the line ``cut``. A class
        is judged by its mean, so it can hold a halo of background around an object; this
        trims it."""
        return self.beyond(self.smooth, cut)


def intensity_classes(
    classes: np.ndarray,
    intensity: np.ndarray,
    cut: float = CLASS_CUT,
    *,
    spatial_ndim: int | None = None,
) -> list[int]:
    """The background classes by their brightness: those whose mean brightness does not
    pass the line drawn ``cut`` of the way from the largest class's mean to Otsu's
    threshold (see :class:`Brightness`).

    Classes are judged by their mean, so a dim class of objects (the rim of a nucleus, a
    faint nucleus) stays with the objects when its mean lies past the line, even where
    Otsu's threshold would cut it away.
    """
    return Brightness.of(classes, intensity, spatial_ndim).background(classes, cut)


def objects_from_classes(
    classes: np.ndarray,
    *,
    background: Iterable[int] | str = "border",
    intensity: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    split: str = "distance",
    min_distance: int = 5,
    min_size: int = 16,
    fill_holes: bool = True,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Labels 1..n, one per object, background 0, from a map of classes.

    In order: the ``background`` classes become 0; every other class is foreground, so the
    classes of one object (a bright core and its rim) join; holes in the foreground (pixels
    of background that it encloses) are filled; each face-connected piece of foreground is
    one object, or, with ``split="distance"``, is split by a watershed of its Euclidean
    distance transform, seeded at its local maxima at least ``min_distance`` pixels apart,
    so that touching round objects part along their waist; objects smaller than
    ``min_size`` pixels become 0.

    Works for 2D images and 3D volumes alike (any number of dimensions); neighbours share a
    face (4-connected in 2D, 6-connected in 3D).

    Parameters
    ----------
    classes : numpy.ndarray of int
        A class per pixel (the network's argmax), 2D or 3D.
    background : iterable of int, or {"border", "intensity"}
        The background classes, or how to find them: "border", those of
        :func:`border_classes`; "intensity", those of :func:`intensity_classes` (needs
        ``intensity``; see :func:`background_and_mask`).
    intensity : numpy.ndarray, optional
        One brightness per pixel (``classes``' shape), for ``background="intensity"``.
    mask : numpy.ndarray of bool, optional
        The pixels that may be part of an object; None: all, or with
        ``background="intensity"`` those bright enough (:meth:`Brightness.pixels`).
    split : {"distance", "off"}
        "distance": split touching objects by the distance-transform watershed; "off":
        each connected piece of foreground is one object.
    min_distance : int
        Least distance, in pixels, between two objects' centres (local maxima of the
        distance transform); higher: fewer splits.
    min_size : int
        Objects smaller than this many pixels become background (0 or 1: keep all).
    fill_holes : bool
        Fill the holes in the foreground (in 3D, cavities that no face reaches).
    spacing : sequence of float, optional
        The pixel or voxel size along each axis (None: equal), so that the distance
        transform of an anisotropic volume is measured in physical units.

    Returns
    -------
    numpy.ndarray
        Labels of ``classes``' shape, 0 for background and 1..n for the objects (ordered by
        their first pixel in C order), in the smallest unsigned dtype that holds n.
    """
    from scipy import ndimage

    classes = np.asarray(classes)
    if split not in OBJECT_SPLITS:
        raise ValueError(f"split must be one of {OBJECT_SPLITS}; got {split!r}")
    if spacing is not None and len(spacing) != classes.ndim:
        raise ValueError(
            f"spacing needs one size per axis ({classes.ndim}); got {tuple(spacing)!r}"
        )
    chosen, rule_mask = background_and_mask(classes, background, intensity)
    mask = rule_mask if mask is None else mask
    foreground = ~np.isin(classes, chosen)
    if mask is not None:
        foreground &= np.asarray(mask, dtype=bool)
    if fill_holes:
        foreground = ndimage.binary_fill_holes(foreground)
    pieces, n_pieces = ndimage.label(foreground)  # face connectivity
    if split == "distance" and n_pieces:
        pieces = _split_touching(pieces, n_pieces, min_distance, spacing)
    if min_size > 1:
        sizes = np.bincount(pieces.ravel())
        small = sizes < min_size
        small[0] = False
        pieces[small[pieces]] = 0
    return _consecutive(pieces)


def object_options(settings: Any) -> dict[str, Any]:
    """The options of :func:`objects_from_classes` that a ``SegmentationParams``' object
    settings give (``object_split``, ``object_min_distance``, ``object_min_size``,
    ``fill_holes``)."""
    return {
        "split": settings.object_split or "distance",
        "min_distance": settings.object_min_distance or 1,
        "min_size": settings.object_min_size or 0,
        "fill_holes": bool(settings.fill_holes),
    }


def objects_in_planes(
    classes: np.ndarray,
    *,
    spatial_ndim: int = 2,
    background: Iterable[int] | str = "border",
    intensity: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    **options: Any,
) -> np.ndarray:
    """Objects of every plane of a stack of class maps, numbered across the whole stack.

    The leading axes of ``classes`` are planes (time points, z positions, files of one
    model); the last ``spatial_ndim`` axes are one image or volume. The classes of one
    model mean the same thing in every plane, so the background is chosen once for the
    stack (``background`` as in :func:`objects_from_classes`, over all planes: their
    borders, or their ``intensity`` of ``classes``' shape) and each plane's objects come
    from :func:`objects_from_classes` with ``options`` (and ``mask``, the pixels that may be
    objects, found once for the stack like the background). Plane 0 holds labels 1..n0, plane 1
    n0+1..n0+n1, and so on: no two planes share a label, so counting and measuring the
    labels counts every object once.

    Returns
    -------
    numpy.ndarray
        Labels of ``classes``' shape, 0 for background, in the smallest unsigned dtype that
        holds the stack's count.
    """
    classes = np.asarray(classes)
    if not 1 <= spatial_ndim <= classes.ndim:
        raise ValueError(f"spatial_ndim must be 1..{classes.ndim}; got {spatial_ndim}")
    planes = classes.reshape(-1, *classes.shape[classes.ndim - spatial_ndim :])
    chosen, rule_mask = background_and_mask(classes, background, intensity, spatial_ndim)
    mask = rule_mask if mask is None else mask
    masks = [None] * len(planes) if mask is None else np.asarray(mask).reshape(planes.shape)
    labelled = [
        objects_from_classes(plane, background=chosen, mask=plane_mask, **options)
        for plane, plane_mask in zip(planes, masks, strict=True)
    ]
    counts = [int(plane.max(initial=0)) for plane in labelled]
    out = np.zeros(classes.shape, dtype=smallest_unsigned_dtype(sum(counts)))
    flat = out.reshape(planes.shape)
    offset = 0
    for index, (plane, count) in enumerate(zip(labelled, counts, strict=True)):
        flat[index] = np.where(plane > 0, plane.astype(np.int64) + offset, 0)
        offset += count
    return out


def background_and_mask(
    classes: np.ndarray,
    background: Iterable[int] | str,
    intensity: np.ndarray | None = None,
    spatial_ndim: int | None = None,
) -> tuple[list[int], np.ndarray | None]:
    """The background classes that ``background`` names, or finds by its rule, and the
    pixels the rule lets be part of an object (None: all). "border": the classes of
    :func:`border_classes`, every pixel; "intensity": by the :class:`Brightness` of
    ``intensity``, the classes below its class cut and the pixels past its pixel cut.
    ``spatial_ndim``: the leading axes of a stack are planes."""
    if not isinstance(background, str):
        return [int(v) for v in background], None
    if background not in BACKGROUND_RULES:
        raise ValueError(f"background must be one of {BACKGROUND_RULES}; got {background!r}")
    if background == "border":
        return border_classes(classes, spatial_ndim=spatial_ndim), None
    if intensity is None:
        raise ValueError("background='intensity' needs the image's intensity")
    brightness = Brightness.of(classes, intensity, spatial_ndim)
    return brightness.background(classes), brightness.pixels()


def _split_touching(
    pieces: np.ndarray, n_pieces: int, min_distance: int, spacing: Sequence[float] | None
) -> np.ndarray:
    """Each piece split by a watershed of its distance transform, one object per maximum."""
    from scipy import ndimage
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    foreground = pieces > 0
    distance = ndimage.distance_transform_edt(foreground, sampling=spacing)
    distance = ndimage.gaussian_filter(distance, DISTANCE_SMOOTHING)
    peaks = peak_local_max(
        distance, min_distance=max(int(min_distance), 1), labels=pieces, exclude_border=False
    )
    markers = np.zeros(pieces.shape, dtype=np.int64)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # a piece without a peak (none can be found on a flat one) keeps a marker of its own
    seeded = np.zeros(n_pieces + 1, dtype=bool)
    seeded[pieces[tuple(peaks.T)]] = True
    unseeded = ~seeded[pieces] & foreground
    markers[unseeded] = pieces[unseeded] + len(peaks)
    return watershed(-distance, markers, mask=foreground)


def _consecutive(labels: np.ndarray) -> np.ndarray:
    """``labels`` renumbered 1..n in order of first appearance, 0 kept, smallest dtype."""
    flat = labels.ravel()
    values, first = np.unique(flat, return_index=True)
    order = values[np.argsort(first)]
    order = order[order != 0]
    lookup = np.zeros(int(values.max()) + 1 if values.size else 1, dtype=np.int64)
    lookup[order] = np.arange(1, len(order) + 1)
    dtype = smallest_unsigned_dtype(len(order))
    return lookup[labels].astype(dtype, copy=False)
