"""Reading and writing label images as TIFF files (numpy and tifffile only; no napari, no Qt).

Used by the napari reader and writer, the command line and the benchmarks, so that all of
them produce and accept the same files.
"""

from __future__ import annotations

from ._label_tiff import (
    LABEL_MARKER,
    LabelTiffError,
    has_label_name,
    is_label_tiff,
    label_dtype,
    read_label_tiff,
    write_label_tiff,
)

__all__ = [
    "LABEL_MARKER",
    "LabelTiffError",
    "has_label_name",
    "is_label_tiff",
    "label_dtype",
    "read_label_tiff",
    "write_label_tiff",
]
