"""npe2 writer: saves a Labels layer as a label TIFF (see the package's ``io`` module).

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
    distinct letters of TZCYX ending in YX (else the default for the number of
    dimensions; out of ImageJ's order the file is an OME-TIFF), and
    its spatial units the TIFF's one length unit (:func:`_in_tiff_units`). Raises
    :class:`LabelsNotSavedError` for data that cannot be stored as labels (negative,
    non-integer, beyond uint32), naming the file and the reason.
    """
    from ..io import write_label_tiff
    from ..io._label_tiff import _DEFAULT_AXES

    if meta.get("multiscale"):
        data = data[0]  # the full-resolution level
    ndim = len(data.shape)
    scale = meta.get("scale")
    # a negative scale only flips the view
    scale = [abs(float(value)) for value in ([1.0] * ndim if scale is None else scale)]
    axes = _axes_from_labels(meta.get("axis_labels"), ndim)
    letters = axes or _DEFAULT_AXES.get(ndim, "")
    scale, units = _in_tiff_units(letters, scale, list(meta.get("units") or ()))
    try:
        written = write_label_tiff(path, data, scale=scale, axes=axes, units=units)
    except ValueError as exc:
        raise LabelsNotSavedError(f"labels not saved to {path!r}: {exc}") from exc
    return [str(written)]


def _in_tiff_units(
    letters: str, scale: list[float], units: Sequence[Any]
) -> tuple[list[float], str | None]:
    """napari's unit per axis as a TIFF's: one length unit (X's; the Z and Y sizes converted
    to it) and T in seconds. Without a known length unit on every spatial axis (e.g.
    pixels), no unit, and the spatial sizes are kept as they are."""
    from ..io._label_tiff import _canonical_unit, _length_factor, _seconds_factor

    if len(units) != len(letters) or len(scale) != len(letters):
        return scale, None
    scale = list(scale)
    spatial = [i for i, axis in enumerate(letters) if axis in "ZYX"]
    unit = _canonical_unit(units[spatial[-1]]) if spatial else None
    factors = [_length_factor(units[i], unit) for i in spatial]
    if unit is None or None in factors:
        unit = None
    else:
        for i, factor in zip(spatial, factors, strict=True):
            scale[i] *= factor
    for i, axis in enumerate(letters):
        seconds = _seconds_factor(units[i]) if axis == "T" else None
        if seconds is not None:
            scale[i] *= seconds
    return scale, unit


def _axes_from_labels(labels: Sequence[str] | None, ndim: int) -> str | None:
    """TIFF axes from napari axis labels such as ``("z", "y", "x")``, else None."""
    from ..io._label_tiff import _check_axes

    if not labels or len(labels) != ndim:
        return None
    try:
        return _check_axes("".join(str(label) for label in labels), ndim)
    except ValueError:  # not distinct letters of TZCYX ending in YX: the default axes
        return None
