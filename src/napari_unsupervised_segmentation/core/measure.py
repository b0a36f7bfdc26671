"""Per-object measurements of a label image: a table with one row per label.

:func:`measure_objects` measures each label (0, the background, is skipped) with
scikit-image's ``regionprops_table``: its size and position, in physical units when the
pixel size (``spacing``) is given, its mean intensity in each channel of an image, and its
shape; each plane of a stack on its own, with the plane's position as columns.
:func:`write_measurements_csv` writes such a table as a CSV file. numpy and
scikit-image only (no napari, no torch).
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = ["SHAPE_2D", "SHAPE_3D", "measure_objects", "write_measurements_csv"]

#: The shape descriptors of a 2D label (``perimeter`` is NaN for unequal pixel sides,
#: which scikit-image does not measure it for).
SHAPE_2D = (
    "perimeter",
    "eccentricity",
    "solidity",
    "axis_major_length",
    "axis_minor_length",
    "orientation",
)
#: The shape descriptors of a 3D label (``solidity`` is NaN for an object too flat or thin
#: to have a 3D convex hull).
SHAPE_3D = ("axis_major_length", "axis_minor_length", "solidity", "extent")


def measure_objects(
    labels: np.ndarray,
    image: np.ndarray | None = None,
    *,
    channel_axis: int | None = None,
    spacing: Sequence[float] | None = None,
    spatial_ndim: int | None = None,
    plane_names: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Measure every label of a 2D or 3D label image, or of each plane of a stack of them:
    a column table, one row per label (per label and plane in a stack).

    Parameters
    ----------
    labels
        Integer labels, 2D or 3D (or, with ``spatial_ndim``, a stack of 2D or 3D label
        images); 0 is the background and gets no row.
    image
        The image the labels are of (same shape, stack axes included), for the mean
        intensities; with channels on ``channel_axis``.
    channel_axis
        The axis of ``image`` that holds channels, or None for one channel.
    spacing
        The pixel (voxel) size along each spatial axis of ``labels`` (the last
        ``spatial_ndim`` axes), e.g. the layer's scale in µm.
    spatial_ndim
        2 or 3: the number of spatial axes, the last ones of ``labels``; the axes before
        them are planes of a stack (time points, z positions, files), each measured on its
        own (in 2D for 2, in 3D for 3). None: every axis of ``labels`` is spatial.
    plane_names
        The names of the stack's columns, one per axis before the spatial ones (e.g.
        ``("t", "z")``). None: ``plane`` for one such axis, ``axis_0``, ``axis_1``, ... for
        more.

    Returns
    -------
    dict of str to 1D array, all of one length (the number of labels):

    - ``label``: the label value;
    - for a stack, one integer column per stack axis (see ``plane_names``): the index of
      the plane the row measures;
    - ``area``: pixels (voxels in 3D), or with ``spacing`` in its units squared (cubed in
      3D: a volume), e.g. µm² for a scale in µm;
    - ``centroid-0``, ``centroid-1`` (``centroid-2`` in 3D): along each spatial axis, in
      pixels from the first pixel's centre, or in ``spacing``'s units;
    - with ``image``, ``intensity_mean`` (one channel) or ``intensity_mean-0``,
      ``intensity_mean-1``, ... (one per channel, in channel order);
    - the shape: :data:`SHAPE_2D` (lengths in ``spacing``'s units, ``orientation`` in
      radians) or :data:`SHAPE_3D`.

    Rows are in label order. In a stack a label found in several planes (labels numbered
    from 1 in each plane, or classes) has a row for each of them, in plane order; objects
    numbered across the stack have one row each.
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integers, not {labels.dtype}")
    if spatial_ndim is None:
        spatial_ndim = labels.ndim
        if labels.ndim not in (2, 3):
            raise ValueError(f"labels must be 2D or 3D, not of shape {labels.shape}")
    elif spatial_ndim not in (2, 3) or labels.ndim < spatial_ndim:
        raise ValueError(
            f"spatial_ndim must be 2 or 3 and at most the labels' {labels.ndim} axes; "
            f"got {spatial_ndim}"
        )
    stack_shape = labels.shape[: labels.ndim - spatial_ndim]
    if spacing is not None:
        spacing = tuple(float(size) for size in spacing)
        if len(spacing) != spatial_ndim:
            raise ValueError(
                f"spacing {spacing} must give one size per spatial axis of {labels.shape} "
                f"({spatial_ndim})"
            )
    intensity = None
    if image is not None:
        intensity = np.asarray(image)
        if channel_axis is not None:
            intensity = np.moveaxis(intensity, channel_axis, -1)
        if intensity.shape[: labels.ndim] != labels.shape or intensity.ndim > labels.ndim + (
            channel_axis is not None
        ):
            raise ValueError(
                f"image of shape {np.shape(image)} (channel axis {channel_axis}) does not "
                f"match labels of shape {labels.shape}"
            )
    if not stack_shape:
        return _measure_one(labels, intensity, spacing)
    names = _plane_columns(len(stack_shape), plane_names)
    tables = []
    planes = list(np.ndindex(stack_shape))
    if not planes:  # a stack of no planes: the columns, empty
        empty = np.zeros(labels.shape[len(stack_shape) :], labels.dtype)
        spatial = intensity.shape[len(stack_shape) :] if intensity is not None else None
        table = _measure_one(empty, None if spatial is None else np.zeros(spatial), spacing)
        where = {name: np.zeros(0, dtype=np.int64) for name in names}
        return {"label": table.pop("label"), **where, **table}
    for index in planes:
        table = _measure_one(
            labels[index], None if intensity is None else intensity[index], spacing
        )
        n = len(table["label"])
        where = {
            name: np.full(n, value, dtype=np.int64)
            for name, value in zip(names, index, strict=True)
        }
        clash = set(where) & set(table)
        if clash:
            raise ValueError(f"plane_names {sorted(clash)} are names of measured columns")
        tables.append({"label": table.pop("label"), **where, **table})
    table = {name: np.concatenate([part[name] for part in tables]) for name in tables[0]}
    order = np.argsort(table["label"], kind="stable")  # planes in order within a label
    return {name: column[order] for name, column in table.items()}


def _plane_columns(n_axes: int, plane_names: Sequence[str] | None) -> list[str]:
    """The names of a stack's columns: ``plane_names``, else ``plane`` or ``axis_k``."""
    if plane_names is None:
        return ["plane"] if n_axes == 1 else [f"axis_{axis}" for axis in range(n_axes)]
    names = [str(name) for name in plane_names]
    if len(names) != n_axes or len(set(names)) != n_axes:
        raise ValueError(
            f"plane_names {tuple(names)} must give one distinct name per stack axis ({n_axes})"
        )
    return names


def _measure_one(
    labels: np.ndarray, intensity: np.ndarray | None, spacing: tuple[float, ...] | None
) -> dict[str, np.ndarray]:
    """The table of one 2D or 3D label image; ``intensity`` has its channels last."""
    from skimage.measure import regionprops_table

    shape = SHAPE_2D if labels.ndim == 2 else SHAPE_3D
    isotropic = spacing is None or len(set(spacing)) == 1
    properties = ["label", "area", "centroid"]
    if intensity is not None:
        properties.append("intensity_mean")
    properties += [name for name in shape if name != "perimeter" or isotropic]
    with warnings.catch_warnings():
        # a thin object has no convex hull (scikit-image warns): its solidity is NaN below
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        table = regionprops_table(
            labels.astype(np.intp, copy=False),
            intensity,
            properties=properties,
            spacing=spacing,
        )
    table = {name: np.asarray(column) for name, column in table.items()}
    if intensity is not None and intensity.ndim > labels.ndim and "intensity_mean" in table:
        table["intensity_mean-0"] = table.pop("intensity_mean")  # one channel on an axis
    n = len(table["label"])
    if "perimeter" in shape and not isotropic:
        table["perimeter"] = np.full(n, np.nan)
    if "solidity" in table:
        solidity = table["solidity"].astype(float)
        solidity[~np.isfinite(solidity)] = np.nan
        table["solidity"] = solidity
    first = ["label", "area", *(f"centroid-{axis}" for axis in range(labels.ndim))]
    means = sorted(name for name in table if name.startswith("intensity_mean"))
    means.sort(key=lambda name: int(name.rsplit("-", 1)[1]) if "-" in name else -1)
    return {name: table[name] for name in [*first, *means, *shape]}


def write_measurements_csv(
    table: Mapping[str, Any], path: str | os.PathLike[str], *, overwrite: bool = True
) -> Path:
    """Write a column table (:func:`measure_objects`) as a CSV file: a header of the column
    names, then one row per label. Returns the path written.

    The file is written under a temporary name beside ``path`` and then published, as the
    label TIFFs are (:func:`~..io.write_label_tiff`): a reader never sees half a file and an
    interrupted write leaves ``path`` as it was. Without ``overwrite`` an existing ``path``
    is kept (FileExistsError).
    """
    target = Path(path)
    names = list(table)
    columns = [np.asarray(table[name]).tolist() for name in names]
    lengths = {len(column) for column in columns}
    if len(lengths) > 1:
        raise ValueError(f"the columns have different lengths: {sorted(lengths)}")
    from ..io._label_tiff import publish_written

    def write_rows(handle: BinaryIO) -> None:
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow(names)
        writer.writerows(zip(*columns, strict=True))
        text.flush()
        text.detach()  # the binary file stays open for publish_written

    publish_written(target, write_rows, overwrite=overwrite)
    return target
