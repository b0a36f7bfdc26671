"""The objects of a run's classes, made again when a class changes side.

A run with ``label_by="object"`` keeps the network's classes (:class:`ClassObjects`): the
widget then redraws the objects, without training, when the user clicks a class to turn it
from background into object or back, and one-model runs number the objects of every plane
(or volume) across the whole stack. numpy and scikit-image only (no torch, no Qt).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.objects import background_and_mask, object_options, objects_in_planes

if TYPE_CHECKING:
    from ..core.params import SegmentationParams

__all__ = ["ClassObjects"]


@dataclass(frozen=True, eq=False)
class ClassObjects:
    """A run's classes, which of them are background, and how objects are made of them.

    ``classes`` holds a class per pixel: one plane or volume, or a stack of them with the
    stack's axes first (the last ``spatial_ndim`` axes are one plane or volume).
    :meth:`labels` gives objects 1..n numbered across the stack, background 0. ``mask``
    holds the pixels that may be part of an object (None: all): with the brightness rule,
    those bright enough, and every pixel of a class the user made an object.
    """

    classes: np.ndarray
    background: frozenset[int]
    options: dict[str, Any]
    spatial_ndim: int = 2
    mask: np.ndarray | None = None

    @classmethod
    def of(
        cls,
        classes: np.ndarray,
        settings: SegmentationParams,
        *,
        spatial_ndim: int = 2,
        spacing: Sequence[float] | None = None,
        intensity: np.ndarray | None = None,
    ) -> ClassObjects:
        """The objects of ``classes`` with the ``object_*`` settings, the background found
        once for the whole stack by ``object_background``
        (:func:`~..core.objects.background_and_mask`: by each class's brightness in
        ``intensity``, of ``classes``' shape, or along every plane's border);
        ``spacing``: the spatial axes' pixel (voxel) size, None: equal."""
        classes = np.asarray(classes)
        rule = settings.object_background or "border"
        background, mask = background_and_mask(classes, rule, intensity, spatial_ndim)
        options = {**object_options(settings), "spacing": spacing}
        return cls(classes, frozenset(background), options, spatial_ndim, mask)

    def labels(self) -> np.ndarray:
        """Objects 1..n (numbered plane after plane), background 0, of ``classes``' shape."""
        return objects_in_planes(
            self.classes,
            spatial_ndim=self.spatial_ndim,
            background=sorted(self.background),
            mask=self.mask,
            **self.options,
        )

    def toggled(self, value: int) -> ClassObjects:
        """The same classes with class ``value`` on the other side: background becomes
        object (all of its pixels), object becomes background."""
        value = int(value)
        mask = self.mask
        if mask is not None and value in self.background:
            mask = mask | (self.classes == value)
        return replace(self, background=self.background ^ {value}, mask=mask)

    def class_at(self, index: Sequence[int]) -> int | None:
        """The class at ``index`` (one integer per axis of ``classes``), or None outside."""
        index = tuple(int(i) for i in index)
        if len(index) != self.classes.ndim or not all(
            0 <= i < size for i, size in zip(index, self.classes.shape, strict=True)
        ):
            return None
        return int(self.classes[index])
