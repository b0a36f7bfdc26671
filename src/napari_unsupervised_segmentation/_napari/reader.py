"""npe2 reader: opens label TIFFs as Labels layers and leaves every other TIFF to napari.

A thin adapter over :mod:`napari_unsupervised_segmentation.io`; it imports neither napari
nor torch, and imports tifffile only when napari asks about a file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

LayerData = tuple[Any, dict[str, Any], str]
ReaderFunction = Callable[[str | Sequence[str]], list[LayerData]]


def get_reader(path: str | Sequence[str]) -> ReaderFunction | None:
    """Return :func:`read_labels` when every path is a label TIFF, else None.

    A label TIFF is a single-channel integer TIFF that carries the writer's marker or whose
    name marks it as labels (``*_labels.tif``, ``*_masks.tif``, ...). Only the header is
    read. A file with such a name that cannot be parsed is claimed too, so that the reader
    reports what is wrong with it instead of napari's image reader.
    """
    from ..io._label_tiff import _sniff, has_label_name

    paths = [path] if isinstance(path, str) else list(path)
    if not paths:
        return None
    for item in paths:
        if not isinstance(item, str) or not item.lower().endswith((".tif", ".tiff")):
            return None
        kind = _sniff(item)
        if kind == "other" or (kind == "unreadable" and not has_label_name(item)):
            return None
    return read_labels


def read_labels(path: str | Sequence[str]) -> list[LayerData]:
    """Read each label TIFF into a ``labels`` layer with its name, scale and axis labels.

    Raises ``ValueError`` naming the file when it is corrupt or truncated; napari shows it
    as a notification.
    """
    from ..io import read_label_tiff
    from ..io._label_tiff import _AXES_ORDER  # the letters the label TIFF module knows

    paths = [path] if isinstance(path, str) else list(path)
    layers: list[LayerData] = []
    for item in paths:
        data, info = read_label_tiff(item)
        meta: dict[str, Any] = {"name": info["name"], "scale": info["scale"]}
        axes: str = info["axes"]
        if len(set(axes)) == len(axes) and set(axes) <= set(_AXES_ORDER):
            meta["axis_labels"] = tuple(axis.lower() for axis in axes)
            if info["units"] is not None:
                meta["units"] = tuple(info["units"] if axis in "ZYX" else "pixel" for axis in axes)
        layers.append((data, meta, "labels"))
    return layers
