"""npe2 writer: saves a Labels layer as a label TIFF (see :mod:`..io`).

A thin adapter over :func:`napari_unsupervised_segmentation.io.write_label_tiff`; it imports
neither napari nor torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class LabelsNotSavedError(RuntimeError):
    """The layer's data cannot be stored as a label TIFF; nothing was written.

    Deliberately not a ``ValueError``: napari's ``layer.save(..., plugin=...)`` takes a
    ``ValueError`` from a writer for "no suitable writer" and would hide the reason.
    """


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write one Labels layer to ``path`` (.tif or .tiff) and return ``[path]``.

    The layer's scale becomes the pixel size, its axis labels the TIFF axes when they are
    letters of TZCYX in that order (else the default for the number of dimensions), and
    its spatial unit the TIFF unit when napari knows one. Raises
    :class:`LabelsNotSavedError` for data that cannot be stored as labels (negative,
    non-integer, beyond uint32), naming the file and the reason.
    """
    from .io import write_label_tiff
    from .io._label_tiff import _DEFAULT_AXES, _canonical_unit

    if meta.get("multiscale"):
        data = data[0]  # the full-resolution level
    ndim = len(data.shape)
    scale = meta.get("scale")
    if scale is not None:
        scale = [abs(float(value)) for value in scale]  # a negative scale only flips the view
    axes = _axes_from_labels(meta.get("axis_labels"), ndim)
    layer_units = meta.get("units") or ()
    spatial = {
        _canonical_unit(unit)
        for axis, unit in zip(axes or _DEFAULT_AXES.get(ndim, ""), layer_units, strict=False)
        if axis in "ZYX"
    }
    units = spatial.pop() if len(spatial) == 1 else None
    try:
        written = write_label_tiff(path, data, scale=scale, axes=axes, units=units)
    except ValueError as exc:
        raise LabelsNotSavedError(f"labels not saved to {path!r}: {exc}") from exc
    return [str(written)]


def _axes_from_labels(labels: Sequence[str] | None, ndim: int) -> str | None:
    """TIFF axes from napari axis labels such as ``("z", "y", "x")``, else None."""
    from .io._label_tiff import _check_axes

    if not labels or len(labels) != ndim:
        return None
    try:
        return _check_axes("".join(str(label) for label in labels), ndim)
    except ValueError:  # not letters of TZCYX in order ending in YX: the default axes
        return None
