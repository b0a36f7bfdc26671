"""Label images as TIFF files that napari, Fiji/ImageJ, tifffile and scikit-image all read.

What is written:

* uint8 and uint16 labels: an ImageJ hyperstack (axes such as YX, ZYX, TZYX), with the pixel
  size in the resolution tags, ``spacing`` (Z), ``finterval`` (T) and ``unit``.
* uint32 labels, labels of 3.75 GiB or more uncompressed (BigTIFF), and axes out of
  ImageJ's TZCYX order (``ZTYX``): an OME-TIFF, because ImageJ hyperstacks can hold none of
  these; the pixel size is in the OME-XML (``PhysicalSizeX/Y/Z``, ``TimeIncrement``).
* Always zlib (deflate) compressed, and marked with a line ``napari labels`` in the ImageJ
  ``Info`` property or the OME image ``Description``, so that the reader knows its own files,
  beside a line ``axes=...`` with which the reader restores axes of size 1 (tifffile drops
  them).

Files are written to a temporary file in the target folder and moved into place at the end,
so that a failed write never leaves a partial file nor destroys an existing one. The
temporary file's name carries the writer's process id (``.NAME.PID-HOST.RANDOM.tmp``): one
left by a writer that was killed is removed the next time that file is written.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import socket
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import tifffile

from ..core.labels import smallest_unsigned_dtype

LABEL_MARKER = "napari labels"
"""The line that marks a TIFF written by :func:`write_label_tiff` as a label image."""

_MARKER_TEXT = f"{LABEL_MARKER}\nwritten by napari-unsupervised-segmentation"
_AXES_LINE = re.compile(r"^axes=([TZCYX]{2,5})$", re.MULTILINE)  # the axes as written
_AXES_ORDER = "TZCYX"
_DEFAULT_AXES = {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TZCYX"}
_SUFFIXES = (".tif", ".tiff")
#: Endings that mark a label file's name (after a separator), and the TIFF suffixes.
LABEL_ENDINGS = ("labels", "label", "masks", "mask", "seg")
_SEPARATORS = "_. -"
_TIFF_SUFFIXES = ("tif", "tiff", "ome.tif", "ome.tiff")
# A separator, the ending, and the " [N]" napari adds to a repeated layer name.
_LABEL_NAME = re.compile(
    rf"[{re.escape(_SEPARATORS)}](?:{'|'.join(LABEL_ENDINGS)})(?: \[[^\]]*\])?$", re.IGNORECASE
)
_IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))
_UINT32_MAX = int(np.iinfo(np.uint32).max)
#: Uncompressed files at least this large are memory-mapped; smaller ones are read into
#: memory, so that the file is not held open (on Windows a mapped file cannot be replaced,
#: so the common "open, paint, save over it" would fail) and no other program's later
#: change to the file shows up in the layer.
MEMORY_MAP_MIN_BYTES = 256 * 2**20

#: The largest numerator or denominator of a TIFF rational (the resolution tags).
_RATIONAL_MAX = 2**32 - 1

#: Labels smaller than this (uncompressed) always fit a classic TIFF (4 GiB of offsets) once
#: compressed: zlib adds at most a few bytes per 16 kB block, and the margin covers that and
#: the page directories. Larger ones are written as BigTIFF at once, whatever they compress
#: to: tifffile's ImageJ writer would not fail beyond 4 GiB but truncate the file with a
#: warning, which no later check could undo.
CLASSIC_TIFF_MAX_BYTES = 2**32 - 2**28

# Canonical (pint) unit name -> (ImageJ spelling, OME-XML spelling).
_UNITS = {
    "micrometer": ("micron", "µm"),
    "nanometer": ("nm", "nm"),
    "millimeter": ("mm", "mm"),
    "centimeter": ("cm", "cm"),
    "meter": ("m", "m"),
}
_UNIT_ALIASES = {
    "micron": "micrometer",
    "microns": "micrometer",
    "micrometre": "micrometer",
    "um": "micrometer",
    "µm": "micrometer",  # MICRO SIGN
    "μm": "micrometer",  # GREEK SMALL LETTER MU
    "\\u00b5m": "micrometer",  # ImageJ's ASCII escape
    "nm": "nanometer",
    "nanometre": "nanometer",
    "mm": "millimeter",
    "millimetre": "millimeter",
    "cm": "centimeter",
    "centimetre": "centimeter",
    "m": "meter",
    "metre": "meter",
}
_NO_UNIT = {"", "pixel", "pixels", "px", "none"}
#: Metres in one of each supported length unit: sizes given in different units share one.
_METRES = {
    "micrometer": 1e-6,
    "nanometer": 1e-9,
    "millimeter": 1e-3,
    "centimeter": 1e-2,
    "meter": 1.0,
}
#: Seconds in one of each time unit (pint's names, as napari's ``layer.units``, and OME's).
_SECONDS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "ms": 1e-3,
    "millisecond": 1e-3,
    "µs": 1e-6,  # MICRO SIGN
    "μs": 1e-6,  # GREEK SMALL LETTER MU
    "\\u00b5s": 1e-6,  # ImageJ's ASCII escape
    "us": 1e-6,
    "microsecond": 1e-6,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}


class LabelTiffError(ValueError):
    """A file could not be read as a label TIFF (corrupt, truncated or not a TIFF)."""


def has_label_name(path: str | os.PathLike[str]) -> bool:
    """Whether the file name marks a label image, e.g. ``*_labels.tif`` or ``*_masks.tif``.

    Recognised endings (:data:`LABEL_ENDINGS`, case-insensitive, before ``.tif``, ``.tiff``,
    ``.ome.tif`` or ``.ome.tiff``): ``labels``, ``label``, ``masks``, ``mask``, ``seg``, after
    ``_``, ``-``, ``.`` or a space, optionally followed by napari's `` [N]``
    (``img labels [1].tif``). These are the names that Cellpose, StarDist and common
    scripts give their label images. (napari offers the plugin's reader only for lower-case
    endings: see :func:`reader_filename_patterns`.)
    """
    return bool(_LABEL_NAME.search(_file_stem(Path(path))))


def reader_filename_patterns() -> list[str]:
    """The napari reader's filename patterns (``napari.yaml``): the names
    :func:`has_label_name` accepts, with lower-case endings (npe2 lower-cases the patterns
    and compares them with the name, lower-cased from its first dot only)."""
    return [
        f"*[{_SEPARATORS}]{ending}{tail}.{suffix}"
        for ending in LABEL_ENDINGS
        for tail in ("", " [[]*]")
        for suffix in _TIFF_SUFFIXES
    ]


def label_dtype(labels: Any) -> np.dtype:
    """The smallest of uint8, uint16 and uint32 that holds ``labels``.

    Raises ``ValueError`` for empty data, negative labels, non-integer values or labels
    beyond uint32, which TIFF label files (and Fiji) cannot represent.
    """
    arr = np.asarray(labels)
    if arr.size == 0:
        raise ValueError("labels are empty: there is nothing to write")
    kind = arr.dtype.kind
    if kind == "b":
        return np.dtype(np.uint8)
    if kind == "f":
        if not np.isfinite(arr).all():
            raise ValueError("labels must be whole numbers >= 0; found NaN or infinity")
        fractional = arr != np.floor(arr)
        if fractional.any():
            example = arr[fractional].flat[0]
            raise ValueError(f"labels must be whole numbers; found the value {example}")
    elif kind not in "ui":
        raise ValueError(f"labels must be integers; got data of type {arr.dtype}")
    low, high = arr.min(), arr.max()
    if low < 0:
        raise ValueError(f"labels must be >= 0 (0 is the background); found {low}")
    if high > _UINT32_MAX:
        raise ValueError(
            f"label {high} is larger than {_UINT32_MAX}, the largest a uint32 TIFF holds; "
            "relabel the segments consecutively first"
        )
    return smallest_unsigned_dtype(int(high))


def write_label_tiff(
    path: str | os.PathLike[str],
    labels: Any,
    *,
    scale: Sequence[float] | None = None,
    axes: str | None = None,
    units: str | None = None,
    overwrite: bool = True,
) -> Path:
    """Write ``labels`` to a compressed, marked TIFF atomically and return the final path.

    Parameters
    ----------
    path
        Target file, ending in ``.tif`` or ``.tiff``. An existing file is replaced only
        once the new file is complete.
    labels
        Array-like of 2 to 5 dimensions with whole numbers >= 0; stored in the smallest of
        uint8, uint16, uint32 (see :func:`label_dtype`).
    scale
        Size of a pixel along each axis (napari's layer scale); default 1.
    axes
        Distinct letters of ``TZCYX`` ending in ``YX``. Default from the number of
        dimensions: ``YX``, ``ZYX``, ``TZYX``, ``TZCYX``. Axes out of ImageJ's order
        (``ZTYX``) are kept as given, in an OME-TIFF (an ImageJ hyperstack cannot hold them).
    units
        Length unit of the Z, Y and X sizes (``"micrometer"``, ``"um"``, ``"nm"``, ...).
        The time interval is in seconds.
    overwrite
        False: never replace a file at ``path``, also not one that another program creates
        while this one writes (the file is published with a hard link, which fails where a
        file exists; where the file system has no hard links, the name is first claimed by
        creating it empty and exclusively).

    Raises
    ------
    ValueError
        For unsuitable data or arguments; no file is created or changed.
    FileExistsError
        With ``overwrite=False``, when ``path`` exists (before or after writing); the
        existing file is left as it is and no temporary file remains.
    """
    target = Path(os.path.abspath(os.fspath(path)))
    if target.suffix.lower() not in _SUFFIXES:
        raise ValueError(f"label TIFF files must end in .tif or .tiff; got {target.name!r}")
    arr = np.asarray(labels)
    if arr.ndim not in _DEFAULT_AXES:
        raise ValueError(
            f"labels must have 2 to 5 dimensions (YX to TZCYX); got {arr.ndim} (shape {arr.shape})"
        )
    data = arr.astype(label_dtype(arr), copy=False)
    axes = _check_axes(axes, arr.ndim)
    sizes = dict(zip(axes, _check_scale(scale, arr.ndim), strict=True))
    unit = _check_unit(units)
    _check_resolution(sizes, unit)
    if not overwrite and os.path.lexists(target):
        raise _exists_error(target)
    ome = _ome_options(data, axes, sizes, unit, _file_stem(target))
    if data.dtype in _IMAGEJ_DTYPES and _in_imagej_order(axes):
        # All six hyperstack axes spelled out: tifffile would otherwise take a last axis of
        # size 1 (a one-pixel-wide plane) for samples and write a file that cannot be read.
        hyperstack = data.reshape([data.shape[axes.index(a)] if a in axes else 1 for a in "TZCYX"])
        first_try = hyperstack[..., np.newaxis], _imagej_options(axes, sizes, unit)
    else:
        first_try = data, ome
    if data.nbytes < CLASSIC_TIFF_MAX_BYTES:
        _write_and_publish(target, *first_try, bigtiff=False, overwrite=overwrite)
    else:  # as OME-TIFF: ImageJ hyperstacks cannot be BigTIFF; Bio-Formats (Fiji) reads it
        _write_and_publish(target, data, ome, bigtiff=True, overwrite=overwrite)
    return target


def read_label_tiff(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Read the first image series of a TIFF with its calibration.

    Uncompressed contiguous data in native byte order of :data:`MEMORY_MAP_MIN_BYTES` or more
    is memory-mapped copy-on-write (edits stay in memory, the file is never changed); other
    data is read or decoded into memory once.

    Returns
    -------
    data, info
        ``info`` has ``name`` (file name without suffix), ``axes`` (tifffile's axis letters,
        e.g. ``"ZYX"``), ``scale`` (a float per axis), ``units`` (a pint unit name of the
        spatial axes, or None), ``marker`` (written by :func:`write_label_tiff`) and
        ``memory_mapped``.

    Raises
    ------
    LabelTiffError
        A ``ValueError`` naming the file when it is not a TIFF, corrupt or truncated.
    """
    source = Path(path)
    try:
        with tifffile.TiffFile(source) as tif:
            series = tif.series[0]
            axes, shape = series.axes, tuple(series.shape)
            sizes, unit, marker, written_axes = _describe(tif)
            # tifffile drops axes of size 1; the writer's files say which axes they had
            full_axes, full_shape = series.get_axes(False), series.get_shape(False)
            restored: tuple[int, ...] | None = None
            if written_axes and all(axis in full_axes for axis in written_axes):
                unsqueezed = tuple(full_shape[full_axes.index(axis)] for axis in written_axes)
                if np.prod(unsqueezed) == np.prod(shape):
                    axes, restored = written_axes, unsqueezed
            _check_complete(source, series)
            offset = series.dataoffset
            file_dtype = np.dtype(series.dtype).newbyteorder(tif.byteorder)
            mappable = (
                offset is not None
                and file_dtype.kind != "b"  # 1-bit masks are packed 8 pixels to a byte
                and file_dtype.isnative
                and series.size > 0
                and series.nbytes >= MEMORY_MAP_MIN_BYTES
            )
            data = None if mappable else series.asarray()
        if data is not None and data.shape != shape:  # tifffile only logs missing planes
            raise LabelTiffError(
                f"cannot read {str(source)!r}: the file is truncated "
                f"(found {data.shape} instead of {shape} pixels)"
            )
        if mappable:
            mapped = np.memmap(source, dtype=file_dtype, mode="c", offset=offset, shape=shape)
            data = np.asarray(mapped)
        if restored is not None:
            data = data.reshape(restored)
        if data.dtype == bool:  # a 1-bit mask: labels 0 and 1, as napari needs integers
            data = data.view(np.uint8)
    except (FileNotFoundError, LabelTiffError):
        raise
    except Exception as exc:
        if "imagecodecs" in str(exc):  # sound, but compressed as tifffile alone cannot read
            raise LabelTiffError(
                f"cannot read {str(source)!r}: {exc}; install it: pip install imagecodecs"
            ) from exc
        raise LabelTiffError(
            f"cannot read {str(source)!r}: not a valid or complete TIFF file "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    info = {
        "name": _file_stem(source),
        "axes": axes,
        "scale": tuple(float(sizes.get(axis, 1.0)) for axis in axes),
        "units": unit,
        "marker": marker,
        "memory_mapped": mappable,
    }
    return data, info


def is_label_tiff(path: str | os.PathLike[str]) -> bool:
    """Whether the file is a label TIFF, deciding from its header only (no pixels read).

    True for a single-channel integer (or 1-bit) TIFF that carries the writer's marker or
    whose name marks it as labels (:func:`has_label_name`). The marker alone is not enough:
    Fiji keeps it when a labels file is converted to 32-bit, and napari cannot show floats
    as labels.
    """
    return _sniff(path) == "labels"


def _sniff(path: str | os.PathLike[str]) -> Literal["labels", "other", "unreadable"]:
    """Classify a file from its name and first image header (no pixel data read)."""
    try:
        with tifffile.TiffFile(path) as tif:
            marker = _describe(tif)[2]
            if not (marker or has_label_name(path)):
                return "other"
            page = tif.pages.first
            integer = page.dtype is not None and np.dtype(page.dtype).kind in "uib"  # b: 1-bit
            return "labels" if integer and page.samplesperpixel == 1 else "other"
    except Exception:
        return "unreadable"


def _file_stem(path: Path) -> str:
    """The file name without ``.tif``, ``.tiff`` or ``.ome.tif(f)``."""
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return path.stem


def _check_axes(axes: str | None, ndim: int) -> str:
    """Validate axis letters (T, Z and C in any order, then YX), or choose the default for
    ``ndim`` (ImageJ order)."""
    if axes is None:
        return _DEFAULT_AXES[ndim]
    axes = axes.upper()
    if len(axes) != ndim or len(set(axes)) != ndim or not set(axes) <= set(_AXES_ORDER):
        raise ValueError(
            f"axes must be {ndim} distinct letters of TZCYX, the last two YX; got {axes!r}"
        )
    if not axes.endswith("YX"):
        raise ValueError(f"axes must end in YX (a TIFF stores planes of rows); got {axes!r}")
    return axes


def _in_imagej_order(axes: str) -> bool:
    """Whether ``axes`` follow ImageJ's hyperstack order, TZCYX (else only OME holds them)."""
    return axes == "".join(axis for axis in _AXES_ORDER if axis in axes)


def _check_scale(scale: Sequence[float] | None, ndim: int) -> list[float]:
    """Validate one positive, finite pixel size per axis (default 1)."""
    if scale is None:
        return [1.0] * ndim
    values = [float(value) for value in scale]
    if len(values) != ndim or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"scale must be {ndim} positive numbers, one per axis; got {scale!r}")
    return values


def _check_resolution(sizes: dict[str, float], unit: str | None) -> None:
    """X and Y sizes must fit the TIFF resolution tags, which hold 1/size as a fraction of
    32-bit integers (a 0.1 nm pixel given in metres does not)."""
    for axis in "XY":
        if not 1 / _RATIONAL_MAX <= 1 / sizes[axis] <= _RATIONAL_MAX:
            in_unit = f" {unit}" if unit else ""
            raise ValueError(
                f"a pixel size of {sizes[axis]:g}{in_unit} along {axis} cannot be stored in "
                f"a TIFF (1/size must be from 1/{_RATIONAL_MAX} to {_RATIONAL_MAX}); give the "
                "scale in a unit that suits it (nm instead of m, say)"
            )


def _check_unit(units: str | None) -> str | None:
    """The canonical name of a supported length unit; None for no unit or pixels."""
    if units is None or str(units).strip().lower() in _NO_UNIT:
        return None
    unit = _canonical_unit(units)
    if unit is None:
        raise ValueError(f"unsupported unit {units!r}; use one of {', '.join(_UNITS)}")
    return unit


def _canonical_unit(unit: object) -> str | None:
    """Map an ImageJ, OME or pint spelling of a length unit to its pint name, else None."""
    if unit is None:
        return None
    text = str(unit).strip().lower()
    return text if text in _UNITS else _UNIT_ALIASES.get(text)


def _length_factor(unit: object, to: str | None) -> float | None:
    """How many ``to`` (a canonical length unit) make one ``unit``; None when either is not
    a supported length unit."""
    canonical = _canonical_unit(unit)
    if canonical is None or to is None:
        return None
    return _METRES[canonical] / _METRES[to]


def _seconds_factor(unit: object) -> float | None:
    """Seconds in one ``unit`` of time, or None when it is not a known time unit."""
    return _SECONDS.get(str(unit).strip().lower())


def _imagej_options(axes: str, sizes: dict[str, float], unit: str | None) -> dict[str, Any]:
    """tifffile arguments for an ImageJ hyperstack (uint8, uint16)."""
    metadata: dict[str, Any] = {"axes": "TZCYXS", "Info": f"{_MARKER_TEXT}\naxes={axes}"}
    if "Z" in sizes:
        metadata["spacing"] = sizes["Z"]
    if "T" in sizes:
        metadata["finterval"] = sizes["T"]
    if unit is not None:
        metadata["unit"] = _UNITS[unit][0]
    return {
        "imagej": True,
        "metadata": metadata,
        "resolution": (1.0 / sizes["X"], 1.0 / sizes["Y"]),
        "photometric": "minisblack",
        "compression": "zlib",
    }


def _ome_options(
    data: np.ndarray, axes: str, sizes: dict[str, float], unit: str | None, name: str
) -> dict[str, Any]:
    """tifffile arguments for an OME-TIFF (uint32, BigTIFF or axes out of TZCYX order, which
    ImageJ hyperstacks cannot hold).

    The OME-XML is made here and passed as the first image's description, so that it is
    stored at the start of the file (tifffile's own OME writer appends it at the end, where a
    truncated file would lose it without an error).
    """
    metadata: dict[str, Any] = {
        "Name": _xml_safe(name),
        "Description": f"{_MARKER_TEXT}\naxes={axes}",
    }
    ome_unit = _UNITS[unit][1] if unit is not None else "pixel"
    for axis in "XYZ":
        if axis in sizes:
            metadata[f"PhysicalSize{axis}"] = sizes[axis]
            metadata[f"PhysicalSize{axis}Unit"] = ome_unit
    if "T" in sizes:
        metadata["TimeIncrement"] = sizes["T"]
        metadata["TimeIncrementUnit"] = "s"
    *planes, height, width = data.shape
    omexml = tifffile.OmeXml()
    stored = (int(np.prod(planes, dtype=np.int64)), 1, 1, height, width, 1)
    omexml.addimage(data.dtype, data.shape, stored, axes=axes, **metadata)
    return {
        "ome": False,
        "metadata": None,
        "description": omexml.tostring(declaration=True).encode("utf-8"),
        "resolution": (1.0 / sizes["X"], 1.0 / sizes["Y"]),
        "resolutionunit": "NONE",
        "photometric": "minisblack",
        "compression": "zlib",
    }


#: Characters that XML 1.0 cannot hold, not even escaped (control characters, surrogates).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_safe(text: str) -> str:
    """``text`` with every character that XML cannot hold replaced by U+FFFD (a file name
    may hold control characters, or undecodable bytes as surrogates); tifffile escapes
    ``<``, ``&`` and quotes itself."""
    return _NOT_XML.sub("\ufffd", text)


#: Tells this computer's temporary files from those of others writing to a shared folder,
#: whose process ids mean nothing here.
_HOST_TAG = hashlib.sha1(socket.gethostname().encode("utf-8", "surrogateescape")).hexdigest()[:8]


def _temporary_path(target: Path) -> Path:
    """A new hidden name next to ``target`` that names this process (see
    :func:`_remove_stale_temporaries`)."""
    token = secrets.token_hex(4)
    return target.with_name(f".{target.name}.{os.getpid()}-{_HOST_TAG}.{token}.tmp")


def _remove_stale_temporaries(target: Path) -> None:
    """Remove the temporary files of ``target`` that writers on this computer left when they
    were killed (their process no longer runs); those of running writers, of other targets
    and of other computers are kept."""
    pattern = re.compile(
        rf"\.{re.escape(target.name)}\.(\d{{1,10}})-{_HOST_TAG}\.[0-9a-f]{{8}}\.tmp"
    )
    try:
        names = os.listdir(target.parent)
    except OSError:
        return
    for name in names:
        found = pattern.fullmatch(name)
        if found and not _process_runs(int(found.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(target.parent / name)


def _process_runs(pid: int) -> bool:
    """Whether a process with this id runs here (True when that cannot be told)."""
    if os.name == "nt":  # os.kill would end the process there: keep its file
        return True
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # another user's process, or not a process id
        return True
    return True


def _exists_error(target: Path) -> FileExistsError:
    """The error for a target that must not be replaced."""
    return FileExistsError(errno.EEXIST, "exists and is kept (not overwriting)", str(target))


def _write_and_publish(
    target: Path, data: np.ndarray, options: dict[str, Any], *, bigtiff: bool, overwrite: bool
) -> None:
    """Write to a new hidden file next to ``target``, then publish it as ``target``.

    Publishing is atomic on one file system: with ``overwrite`` a rename over ``target``,
    else a hard link that fails where ``target`` exists (see :func:`_publish_new`). On any
    failure (including interruption) the temporary file is removed and ``target`` is
    untouched.
    """
    publish_written(
        target,
        lambda handle: tifffile.imwrite(handle, data, bigtiff=bigtiff, **options),
        overwrite=overwrite,
    )


def publish_written(target: Path, write: Callable[[BinaryIO], None], *, overwrite: bool) -> None:
    """Let ``write`` fill a new hidden file next to ``target``, then publish it as ``target``
    (see :func:`_write_and_publish`); any file format, one publishing rule."""
    _remove_stale_temporaries(target)
    temporary = _temporary_path(target)
    try:
        with open(temporary, "xb") as handle:  # "x": never opens an existing file
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            _publish_over(temporary, target)
        else:
            _publish_new(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _publish_over(temporary: Path, target: Path) -> None:
    """Rename ``temporary`` to ``target``, replacing any file there."""
    try:
        os.replace(temporary, target)
    except PermissionError as exc:
        raise PermissionError(
            f"cannot replace {str(target)!r}: it is read-only, open in another program, "
            "or (on Windows) memory-mapped by an open layer; save under another name"
        ) from exc


def _publish_new(temporary: Path, target: Path) -> None:
    """Give ``temporary`` the name ``target`` only if no file has it, in one atomic step.

    A hard link fails where ``target`` exists. On file systems without hard links (FAT,
    exFAT, some network shares) the name is claimed by creating ``target`` empty and
    exclusively, then the complete file is renamed over that empty one: readers may see an
    empty file for a moment, never a partial one nor a replaced one.
    """
    try:
        os.link(temporary, target)
    except FileExistsError:
        raise _exists_error(target) from None
    except OSError:  # no hard links here
        _claim_and_replace(temporary, target)
        return
    os.unlink(temporary)


def _claim_and_replace(temporary: Path, target: Path) -> None:
    """Create ``target`` exclusively (empty), then rename ``temporary`` over it; the empty
    file is removed again when the rename fails."""
    try:
        descriptor = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        raise _exists_error(target) from None
    claimed = os.fstat(descriptor)
    os.close(descriptor)
    try:
        _publish_over(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            now = os.stat(target)
            if (now.st_dev, now.st_ino) == (claimed.st_dev, claimed.st_ino):
                os.unlink(target)
        raise


def _describe(tif: tifffile.TiffFile) -> tuple[dict[str, float], str | None, bool, str | None]:
    """Pixel sizes per axis letter, spatial unit, marker and the axes the writer was given
    (its own files only), from ImageJ or OME metadata."""
    if tif.is_ome:
        return _describe_ome(tif.ome_metadata or "")
    if tif.is_imagej:
        imagej = tif.imagej_metadata or {}
        page = tif.pages.first
        sizes = {
            "X": _pixel_size(page.tags.get("XResolution")),
            "Y": _pixel_size(page.tags.get("YResolution")),
        }
        for axis, key in (("Z", "spacing"), ("T", "finterval")):
            with contextlib.suppress(TypeError, ValueError):
                value = float(imagej.get(key, 1.0))
                if np.isfinite(value) and value > 0:
                    sizes[axis] = value
        unit = _canonical_unit(imagej.get("unit"))
        # ImageJ may name other units for Y, Z (yunit, zunit) and the interval (tunit); a
        # size in a unit not known here is dropped rather than taken for X's unit or seconds
        for axis, key in (("Y", "yunit"), ("Z", "zunit"), ("T", "tunit")):
            if axis in sizes and key in imagej:
                factor = (
                    _seconds_factor(imagej[key])
                    if axis == "T"
                    else _length_factor(imagej[key], unit)
                )
                if factor is None:
                    del sizes[axis]
                else:
                    sizes[axis] *= factor
        info = str(imagej.get("Info", ""))
        marker = _has_marker_line(info)
        return sizes, unit, marker, _written_axes(info, marker)
    return {}, None, False, None


def _describe_ome(xml: str) -> tuple[dict[str, float], str | None, bool, str | None]:
    """Pixel sizes, unit, marker and written axes of the first image in an OME-XML document."""
    root = ElementTree.fromstring(xml)
    image = next((e for e in root.iter() if _local(e.tag) == "Image"), None)
    if image is None:
        return {}, None, False, None
    description = next((e for e in image if _local(e.tag) == "Description"), None)
    text = "" if description is None else description.text or ""
    marker = _has_marker_line(text)
    pixels = next((e for e in image if _local(e.tag) == "Pixels"), None)
    sizes: dict[str, float] = {}
    unit = None
    if pixels is not None:
        attrib = pixels.attrib
        if "PhysicalSizeX" in attrib:  # OME's default length unit is µm
            unit = _canonical_unit(attrib.get("PhysicalSizeXUnit", "µm"))
        for axis in "XYZ":  # each axis has its own unit: Y and Z are converted to X's
            key = f"PhysicalSize{axis}"
            if key in attrib:
                factor = _length_factor(attrib.get(f"{key}Unit", "µm"), unit)
                if factor is not None or unit is None:  # else a unit not known here: dropped
                    sizes[axis] = float(attrib[key]) * (1.0 if factor is None else factor)
        if "TimeIncrement" in attrib:  # in seconds, as ImageJ's frame interval
            factor = _seconds_factor(attrib.get("TimeIncrementUnit", "s"))
            if factor is not None:
                sizes["T"] = float(attrib["TimeIncrement"]) * factor
    sizes = {axis: v for axis, v in sizes.items() if np.isfinite(v) and v > 0}
    return sizes, unit, marker, _written_axes(text, marker)


def _written_axes(text: str, marker: bool) -> str | None:
    """The ``axes=...`` line that :func:`write_label_tiff` adds beside its marker, if any."""
    found = _AXES_LINE.search(text) if marker else None
    return found.group(1) if found else None


def _local(tag: str) -> str:
    """An XML tag without its namespace."""
    return tag.rsplit("}", 1)[-1]


def _has_marker_line(text: str) -> bool:
    """Whether one line of ``text`` is the label marker (case and spaces ignored)."""
    return any(line.strip().lower() == LABEL_MARKER for line in text.splitlines())


def _pixel_size(tag: tifffile.TiffTag | None) -> float:
    """Pixel size from an X/YResolution tag (pixels per unit), 1 when absent or invalid."""
    if tag is None:
        return 1.0
    try:
        numerator, denominator = tag.value
        size = float(denominator) / float(numerator)
    except (TypeError, ValueError, ZeroDivisionError):
        return 1.0
    return size if np.isfinite(size) and size > 0 else 1.0


def _check_complete(source: Path, series: tifffile.TiffPageSeries) -> None:
    """Raise :class:`LabelTiffError` when the image data runs past the end of the file."""
    size = source.stat().st_size
    if series.dataoffset is not None:
        end = series.dataoffset + series.nbytes
    else:
        end = 0
        for page in series.pages:
            if page is None:
                raise LabelTiffError(f"cannot read {str(source)!r}: image planes are missing")
            segments = zip(page.dataoffsets, page.databytecounts, strict=False)
            end = max([end, *(offset + count for offset, count in segments)])
    if end > size:
        raise LabelTiffError(
            f"cannot read {str(source)!r}: the file is truncated "
            f"(image data ends at byte {end}, the file has {size} bytes)"
        )
