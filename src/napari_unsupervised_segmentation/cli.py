"""Command line: segment image files (or bundled samples) into label TIFFs."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ._napari.sample_data import SAMPLES, load_sample
from .core.params import OBJECT_SETTINGS, PRESETS, SegmentationParams
from .core.wording import counted, labels_per_plane
from .io._label_tiff import _file_stem

PROG = "unsupervised-segmentation"


def build_parser() -> argparse.ArgumentParser:
    """Arguments: inputs, output folder, preset, channel axis and every engine parameter."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Segment images with a CNN that self-trains on each image (Kanezaki, ICASSP 2018) "
            "and write one label TIFF per image."
        ),
    )
    parser.add_argument("images", nargs="*", type=Path, help="image files to segment")
    parser.add_argument("--out", type=Path, required=True, help="folder for the label TIFFs")
    parser.add_argument(
        "--sample",
        action="append",
        default=[],
        choices=sorted(SAMPLES),
        help="segment a bundled sample image instead of / besides files",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="parameter set to start from (default: default); 'objects' gives one label per "
        "nucleus or cell, background 0",
    )
    parser.add_argument(
        "--channel-axis",
        type=channel_axis_setting,
        default="auto",
        metavar="AXIS",
        help="channel axis, 'none' for grayscale, or 'auto': a TIFF's C or S axis; in other "
        "files (H, W) is grayscale and (H, W, 3|4) has its channels last (colour or not: --rgb)",
    )
    parser.add_argument(
        "--rgb",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the channels are colour, RGB or RGBA (--no-rgb: independent channels such as "
        "stains); default: in a TIFF only the samples of RGB (S) are colour, in other files "
        "three channels last (four if uint8)",
    )
    parser.add_argument(
        "--planes",
        action="store_true",
        help="segment each 2D plane of a stack (z-stack, time series) on its own and write "
        "one label stack (each plane numbered from 1; objects numbered across the stack)",
    )
    parser.add_argument(
        "--volume",
        action="store_true",
        help="segment a stack as a volume of 3D objects (one label per object across z): "
        "the plane and the axis before it (Z where the TIFF names it) are z, y, x; any axis "
        "before them is a series of volumes, each segmented on its own",
    )
    parser.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        metavar=("DZ", "DY", "DX"),
        help="with --volume: the voxel size along z, y and x (default: the TIFF's physical "
        "sizes, ImageJ or OME, when it gives all three; else equal sizes)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        metavar="PATH",
        help="label every image with a saved model (--save-model) instead of training: the "
        "same label for the same class in every plane and file (the preset's "
        "post-processing is not applied); with label_by='object' (the model's, or --preset "
        "objects, --label-by object) objects, numbered across each file",
    )
    parser.add_argument(
        "--one-model",
        action="store_true",
        help="train one network on crops from every plane of every input, then label each "
        "input with it: the same label for the same class in every output file (the "
        "preset's post-processing is not applied); with label_by='object' (--preset "
        "objects) objects, numbered across each file",
    )
    parser.add_argument(
        "--save-model",
        type=Path,
        metavar="PATH",
        help="save the network trained on the one 2D input image (with --one-model: on all "
        "inputs), to apply with --model",
    )
    parser.add_argument(
        "--calibration",
        action="store_true",
        help="give the labels the input TIFF's pixel size and unit (ImageJ or OME), for Fiji "
        "and readers that apply them (napari's own TIFF reader opens the image at pixel size "
        "1: without this flag the labels overlay it there)",
    )
    parser.add_argument(
        "--measure",
        action="store_true",
        help="also write <name>_labels.csv beside each label TIFF: per label its area, "
        "centroid, mean intensity in each channel and shape, in the label TIFF's units "
        "(pixels, or with --calibration the image's pixel size); each plane of a --planes "
        "stack (each volume of a series) measured on its own, with columns saying where "
        "(named by the TIFF's axes: t, z)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace label TIFFs that already exist in --out (default: refuse to start, and "
        "keep a label TIFF that another run writes meanwhile)",
    )
    parser.add_argument(
        "--dask",
        metavar="local|ADDRESS",
        help="label the files on a dask.distributed cluster, one task per file: 'local' starts "
        "one worker process per CPU, an address (tcp://host:8786) uses a running scheduler "
        "whose workers see the same files; outputs already complete are skipped, so a rerun "
        "resumes (needs the 'distributed' extra; see docs/scaling-out.md)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bars (the one-line summary per image is still printed)",
    )
    add_setting_flags(parser)
    return parser


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting (``--max-iter`` for ``max_iter``), in one group per kind of
    setting, from the settings' declarations; a flag not given leaves the preset's value."""
    from .core.params import GROUPS, SETTINGS

    groups = {
        name: parser.add_argument_group(f"{name} settings (default: the preset's value)", what)
        for name, what in GROUPS.items()
    }
    for name, declared in SETTINGS.items():
        text = declared.help
        if declared.requires:
            text += " Applies with " + " and ".join(r.words() for r in declared.requires) + "."
        # SUPPRESS: a flag the user did not give leaves the preset's value alone.
        options: dict[str, Any] = {"default": argparse.SUPPRESS, "help": text}
        if declared.choices is not None:
            options["choices"] = declared.choices
        elif declared.kind == "bool":
            options["action"] = argparse.BooleanOptionalAction
        elif name == "seed":
            options["type"] = seed_setting
        else:
            options["type"] = {"int": int, "float": float, "str": str}[declared.kind]
            options["metavar"] = declared.kind.upper()
        groups[declared.group].add_argument("--" + name.replace("_", "-"), **options)


def seed_setting(text: str) -> int | None:
    """``--seed``: an integer, or ``none`` for a fresh random start."""
    if text.strip().lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or none, got {text!r}") from None


def params_from_args(args: argparse.Namespace) -> SegmentationParams:
    """The preset with every flag the user gave applied on top; with ``--model``, but for
    the object settings, which apply to the model's own (:func:`object_settings`)."""
    from .core.params import SETTINGS

    overrides = {name: getattr(args, name) for name in SETTINGS if hasattr(args, name)}
    if getattr(args, "model", None) is not None:
        overrides = {k: v for k, v in overrides.items() if k not in OBJECT_SETTINGS}
    return PRESETS[args.preset or "default"].replace(**overrides)


def channel_axis_setting(text: str) -> str | int | None:
    """``--channel-axis``: ``auto``, ``none`` or an axis number (checked when parsing)."""
    lowered = text.strip().lower()
    if lowered in ("auto", "none"):
        return None if lowered == "none" else "auto"
    try:
        return int(lowered)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected auto, none or an axis number, got {text!r}"
        ) from None


def known_letters(letters: str | None, ndim: int) -> str | None:
    """A TIFF's axis letters when they say what every axis is, else None (tifffile writes
    ``Q`` or ``I`` for an axis it knows nothing about)."""
    if letters is None or len(letters) != ndim or set(letters) & set("QI"):
        return None
    return letters


def image_axes(
    shape: tuple[int, ...], setting: str | int | None, letters: str | None = None
) -> tuple[int | None, tuple[int, ...]]:
    """The channel axis and the stack axes (one 2D plane per index) of an image.

    ``setting`` is ``--channel-axis``. ``"auto"``: a TIFF's own axis letters say it when
    known (``S``, the samples of RGB, or ``C``; both at once is an error); otherwise 2D is
    grayscale and a last axis of 3 or 4 is colour. The plane is the ``Y`` and ``X`` axes
    when the letters are known, else the last two axes other than the channels; any axis
    left is a stack axis, time before depth.
    """
    from .core.plan import AmbiguousChannels, guess_channel_axis, plan_plane

    ndim = len(shape)
    raw_letters = letters if letters is not None and len(letters) == ndim else None
    # tifffile's Q and I name axes it knows nothing about; S and C beside them still count
    names = [("" if letter in "QI" else letter) for letter in raw_letters or ""] or None
    if setting == "auto":
        try:
            channel_axis = guess_channel_axis(shape, names)
        except AmbiguousChannels as error:
            if names is not None and "S" in names and "C" in names:
                raise ValueError(
                    f"axes {raw_letters} hold both channels (C) and colour samples (S); "
                    "pass --channel-axis N for the axis to segment together"
                ) from None
            raise ValueError(
                f"{error}; pass --channel-axis N for the axis holding channels (0 for "
                "(C, H, W), -1 for (H, W, C)), or --channel-axis none --planes for a "
                "grayscale stack"
            ) from None
    elif setting is None:
        channel_axis = None
    else:
        if not -ndim <= int(setting) < ndim:
            raise ValueError(f"--channel-axis {setting} is out of range for shape {shape}")
        channel_axis = int(setting) % ndim
    if len([axis for axis in range(ndim) if axis != channel_axis]) < 2:
        raise ValueError(f"an image of shape {shape} has no 2D plane besides its channels")
    # Y and X are the plane where the file names them; time before depth, as the label
    # stack is written (TZYX)
    plan = plan_plane(shape, channel_axis=channel_axis, all_planes=True, axis_names=raw_letters)
    return channel_axis, plan.stack_axes


class Calibration(NamedTuple):
    """What an image file says about its pixels' physical size (ImageJ or OME metadata)."""

    sizes: dict[str, float]  # size per axis letter (X, Y, Z in ``unit``; T in seconds)
    unit: str | None  # the length unit, or None when the file names none


#: What a file without calibration (PNG, JPEG, a plain TIFF) or a sample has.
UNCALIBRATED = Calibration({}, None)


#: What tifffile reads (BigTIFF's own suffixes too); everything else goes to scikit-image.
_TIFFFILE_SUFFIXES = (".tif", ".tiff", ".btf", ".tf2", ".tf8")


def read_image(path: Path) -> tuple[np.ndarray, str | None, Calibration]:
    """Pixels of an image file and, for a TIFF, its axis letters (tifffile's, e.g. ``ZYX``)
    and calibration, which the labels keep so that Fiji measures them as it does the image.

    ``S`` is kept only for the samples of a colour image (see :func:`_colour_letters`).
    A TIFF that tifffile finds damaged (cut off, broken structure: errors it logs while
    falling back to what it can read, such as the first page of a cut-off ImageJ stack)
    raises ValueError rather than passing part of the file for the whole.
    """
    if path.suffix.lower() not in _TIFFFILE_SUFFIXES:
        return _read_other_image(path), None, UNCALIBRATED
    import tifffile

    errors = _LoggedErrors()
    logger = logging.getLogger("tifffile")
    logger.addHandler(errors)
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ValueError("it holds no readable image")
            pixels, letters = _read_series(path.name, tif.series)
            calibration = _calibration(tif)
    except MemoryError:
        raise
    except Exception as error:
        if "imagecodecs" in str(error):  # sound, but compressed (LZW, JPEG, ...)
            message = f"{path.name}: {error}; install it: pip install imagecodecs"
            raise ValueError(message) from error
        raise ValueError(f"{path.name} is a damaged TIFF: {error}") from error
    finally:
        logger.removeHandler(errors)
    if errors.messages:
        raise ValueError(f"{path.name} is a damaged TIFF: {errors.messages[0]}")
    return pixels, letters, calibration


def _read_series(name: str, series: Sequence[Any]) -> tuple[np.ndarray, str]:
    """The pixels and axis letters of a TIFF's images: one image, or images of one shape
    (pages written one by one, OME positions) stacked along a first axis ``I`` (unknown,
    as tifffile names the pages of a plain multi-page TIFF), with a note; of images of
    different shapes or types (a thumbnail beside the image) the first, with a note."""
    first = series[0]
    letters = _colour_letters(first)
    if len(series) == 1:
        return first.asarray(), letters
    same = [(s.shape, s.dtype, s.axes) == (first.shape, first.dtype, first.axes) for s in series]
    if all(same):
        print(f"{PROG}: note: {name} holds {len(series)} images of shape {first.shape}; "
              "read as a stack along a first axis", file=sys.stderr)  # fmt: skip
        stacked = np.empty((len(series), *first.shape), first.dtype)  # one copy, not two
        for index, one in enumerate(series):
            one.asarray(out=stacked[index])
        return stacked, "I" + letters  # I: tifffile's letter for a sequence of images
    print(f"{PROG}: note: {name} holds {len(series)} images of different shapes or types; "
          f"segmenting the first, of shape {first.shape}", file=sys.stderr)  # fmt: skip
    return first.asarray(), letters


def _read_other_image(path: Path) -> np.ndarray:
    """A PNG, JPEG, ... as scikit-image reads it; a PNG of gray and alpha (two values per
    pixel: PNG has no other two-channel kind) loses its alpha, as colour does, rather than
    passing for two stains."""
    from skimage.io import imread

    try:
        pixels = imread(path)
    except (MemoryError, FileNotFoundError, IsADirectoryError, PermissionError):
        raise  # its own message says it (imageio's undecodable file is an OSError too)
    except Exception as error:  # imageio's message would suggest installing plugins
        raise ValueError(
            f"{path.name} could not be read as an image: damaged, or a format scikit-image "
            f"cannot open ({type(error).__name__})"
        ) from error
    if path.suffix.lower() == ".png" and pixels.ndim == 3 and pixels.shape[-1] == 2:
        return pixels[..., 0]
    return pixels


def _calibration(tif: Any) -> Calibration:
    """A TIFF's pixel sizes and unit; uncalibrated when its metadata cannot be parsed (the
    pixels are still good)."""
    from .io._label_tiff import _describe  # the reader's own parser of ImageJ and OME

    try:
        sizes, unit = _describe(tif)[:2]
    except Exception:  # malformed OME-XML or ImageJ values: the image is still readable
        return UNCALIBRATED
    return Calibration(sizes, unit)


class _LoggedErrors(logging.Handler):
    """Collects the error messages a logger emits (tifffile logs, then reads what it can)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _colour_letters(series: Any) -> str:
    """A TIFF series' axis letters, with ``S`` only for the samples of a colour image.

    Colour is RGB, or YCbCr compressed as JPEG (decoded to RGB), with 3 samples, or 4 when
    the fourth is alpha; any other samples (a grayscale image's extra samples, an RGB
    image's unspecified fourth) are channels, ``C`` (``Q``, unknown, beside a ``C`` axis).
    """
    import tifffile

    letters: str = series.axes
    if "S" not in letters:
        return letters
    page = series.keyframe
    photometric, compression = page.photometric, page.compression
    is_colour = photometric == tifffile.PHOTOMETRIC.RGB or (
        photometric == tifffile.PHOTOMETRIC.YCBCR and compression == tifffile.COMPRESSION.JPEG
    )
    samples = series.shape[letters.index("S")]
    alpha = (tifffile.EXTRASAMPLE.ASSOCALPHA, tifffile.EXTRASAMPLE.UNASSALPHA)
    if samples == 4:
        extras = tuple(page.extrasamples)
        is_colour = is_colour and bool(extras) and extras[0] in alpha
    if is_colour and samples in (3, 4):
        return letters
    return letters.replace("S", "Q" if "C" in letters else "C")


class Written(NamedTuple):
    """What :func:`segment_to_file` made of one image."""

    path: Path  # the label TIFF
    plane_labels: list[int]  # the number of labels in each plane (one for a 2D image)
    iterations: int  # training iterations, all planes together
    unit: str = "plane"  # what plane_labels count: "plane", or "volume" with --volume
    objects: bool = False  # labels are objects numbered across the stack (label_by="object")


def segment_to_file(
    name: str,
    image: np.ndarray,
    out_dir: Path,
    args: argparse.Namespace,
    params: SegmentationParams,
    letters: str | None = None,
    calibration: Calibration = UNCALIBRATED,
    voxel_sizes: Calibration | None = None,
) -> Written:
    """Segment one image (each plane of a stack with ``--planes``, each volume with
    ``--volume``) into ``<name>_labels.tif``.

    The labels keep the image's pixel sizes and unit (``calibration``) for the axes they
    share with it. With ``--volume`` the voxel size is ``--spacing``, else the file's
    (``voxel_sizes``, default ``calibration``). Progress bars run over the iterations of
    each plane. Without ``--overwrite`` a label TIFF that appeared meanwhile is kept
    (FileExistsError).
    """
    channel_axis, stack_axes = image_axes(image.shape, args.channel_axis, letters)
    if getattr(args, "volume", False):
        return _volumes_to_file(
            name, image, out_dir, args, params, letters, calibration,
            voxel_sizes or calibration, channel_axis, stack_axes,
        )  # fmt: skip
    if stack_axes and args.save_model is not None and not args.one_model:
        raise ValueError("--save-model saves the network of one 2D image, and this is a stack")
    if stack_axes and not args.planes:
        raise _stack_without_planes(image.shape, letters, stack_axes, "segment each plane")
    # the stack axes first; the channels keep their place beside the plane
    plane_axes = [axis for axis in range(image.ndim) if axis not in stack_axes]
    rgb = colour_setting(name, image.shape, channel_axis, letters, args.rgb)
    arranged = np.transpose(image, [*stack_axes, *plane_axes])
    stack_shape = arranged.shape[: len(stack_axes)]
    engine_channel_axis = None if channel_axis is None else plane_axes.index(channel_axis)
    n_planes = int(np.prod(stack_shape))
    planes = [
        _segment_part(
            name,
            _plane_words(number, n_planes, index, stack_shape, letters, stack_axes),
            arranged[index],
            args,
            params,
            engine_channel_axis,
            rgb,
        )
        for number, index in enumerate(np.ndindex(stack_shape), start=1)
    ]
    labels = np.stack([plane.labels for plane in planes]).reshape(
        *stack_shape, *planes[0].labels.shape
    )
    counts = [plane.n_labels for plane in planes]
    measured_channel_axis = (
        None if engine_channel_axis is None else len(stack_axes) + engine_channel_axis
    )
    objects = _object_settings(args, params)
    if objects is not None:
        labels, counts = _objects_across(
            labels, objects, args, 2, image=(arranged, measured_channel_axis, rgb)
        )
    path = _write_outputs(name, labels, arranged, measured_channel_axis, out_dir, args, letters,
                          calibration, image.ndim, stack_axes, spatial_ndim=2)  # fmt: skip
    iterations = sum(plane.iterations for plane in planes)
    return Written(path, counts, iterations, objects=objects is not None)


def _volumes_to_file(
    name: str,
    image: np.ndarray,
    out_dir: Path,
    args: argparse.Namespace,
    params: SegmentationParams,
    letters: str | None,
    calibration: Calibration,
    voxel_sizes: Calibration,
    channel_axis: int | None,
    stack_axes: tuple[int, ...],
) -> Written:
    """``--volume``: segment each volume of ``image`` (the last stack axis is its depth) as
    3D objects and write the labels as :func:`segment_to_file` does."""
    if not stack_axes:
        raise ValueError(f"shape {image.shape} has no axis besides its plane and channels to "
                         "be the volume's z")  # fmt: skip
    series_axes, depth_axis = stack_axes[:-1], stack_axes[-1]
    if series_axes and args.save_model is not None:
        raise ValueError("--save-model saves the network of one volume, and this is a series")
    plane_axes = [axis for axis in range(image.ndim) if axis not in stack_axes]
    rgb = colour_setting(name, image.shape, channel_axis, letters, args.rgb)
    arranged = np.transpose(image, [*stack_axes, *plane_axes])
    series_shape = arranged.shape[: len(series_axes)]
    engine_channel_axis = None if channel_axis is None else 1 + plane_axes.index(channel_axis)
    spacing = volume_spacing(args.spacing, voxel_sizes, letters, (depth_axis, *plane_axes))
    n_volumes = int(np.prod(series_shape))
    volumes = [
        _segment_part(
            name,
            f"volume {number}/{n_volumes}" if series_axes else "",
            arranged[index],
            args,
            params,
            engine_channel_axis,
            rgb,
            spatial_ndim=3,
            spacing=spacing,
        )
        for number, index in enumerate(np.ndindex(series_shape), start=1)
    ]
    labels = np.stack([volume.labels for volume in volumes]).reshape(
        *arranged.shape[: len(stack_axes)], *volumes[0].labels.shape[1:]
    )
    counts = [volume.n_labels for volume in volumes]
    measured_channel_axis = (
        None if engine_channel_axis is None else len(series_axes) + engine_channel_axis
    )
    objects = _object_settings(args, params)
    if objects is not None:
        labels, counts = _objects_across(
            labels, objects, args, 3, spacing, image=(arranged, measured_channel_axis, rgb)
        )
    path = _write_outputs(name, labels, arranged, measured_channel_axis, out_dir, args, letters,
                          calibration, image.ndim, stack_axes, spatial_ndim=3)  # fmt: skip
    iterations = sum(volume.iterations for volume in volumes)
    return Written(path, counts, iterations, "volume", objects=objects is not None)


def volume_spacing(
    given: Sequence[float] | None,
    calibration: Calibration,
    letters: str | None,
    axes: Sequence[int],
) -> tuple[float, float, float] | None:
    """The voxel size (dz, dy, dx) for ``--volume``: ``--spacing`` when given, else the
    file's physical sizes when its z, y and x ``axes`` are its Z, Y and X and it gives all
    three; else None (equal sizes)."""
    if given is not None:
        return tuple(float(size) for size in given)  # type: ignore[return-value]
    if letters is None or len(axes) != 3:
        return None
    named = "".join(letters[axis] if axis < len(letters) else "?" for axis in axes[:1])
    sizes = [calibration.sizes.get(letter) for letter in "ZYX"]
    if named != "Z" or any(size is None for size in sizes):
        return None
    return tuple(float(size) for size in sizes)  # type: ignore[return-value,arg-type]


def object_settings(
    args: argparse.Namespace, params: SegmentationParams
) -> SegmentationParams | None:
    """The settings of the objects this command gives, or None when its labels are not
    objects (``label_by`` other than ``"object"``).

    Training (also ``--one-model``) gives objects as ``params`` say. A saved model
    (``--model``) gives them as its own settings say, unless the command line says
    otherwise: ``--preset`` gives the preset's object settings, and ``--label-by`` and the
    ``--object-*`` and ``--fill-holes`` flags their own values. Raises ValueError for
    settings that do not go together.
    """
    settings = params
    model = getattr(args, "loaded_model", None)
    if args.model is not None and model is not None:
        settings = model.settings
        if args.preset is not None:
            preset = PRESETS[args.preset]
            settings = settings.replace(**{n: getattr(preset, n) for n in OBJECT_SETTINGS})
        given = {name: getattr(args, name) for name in OBJECT_SETTINGS if hasattr(args, name)}
        settings = settings.replace(**given)
    return settings if settings.label_by == "object" else None


def _object_settings(
    args: argparse.Namespace, params: SegmentationParams
) -> SegmentationParams | None:
    """:func:`object_settings` as ``main`` found them (``args.objects``), else found now."""
    if hasattr(args, "objects"):
        return args.objects
    return object_settings(args, params)


def _objects_across(
    labels: np.ndarray,
    settings: SegmentationParams,
    args: argparse.Namespace,
    spatial_ndim: int,
    spacing: Sequence[float] | None = None,
    image: tuple[np.ndarray, int | None, bool | None] | None = None,
) -> tuple[np.ndarray, list[int]]:
    """Objects of a stack of planes (``spatial_ndim`` 2) or volumes (3), numbered across it
    (plane 0 holds 1..n0, plane 1 n0+1..n0+n1, ...), and the count in each plane.

    With one model (``--model``, ``--one-model``) ``labels`` are its classes, which mean
    the same in every plane: the objects come from them with ``settings``, the background
    chosen once for the stack (:func:`~.core.objects.objects_in_planes`). Trained on each
    plane, ``labels`` are already each plane's objects 1..n: they are numbered on.
    ``image``: the image with the stack's axes first, its channel axis and colour, whose
    brightness the objects' background rule may judge the model's classes by."""
    from .core.labels import smallest_unsigned_dtype

    planes = labels.reshape(-1, *labels.shape[labels.ndim - spatial_ndim :])
    if args.loaded_model is not None:
        from .core.objects import object_options, objects_in_planes

        labels = objects_in_planes(
            labels,
            spatial_ndim=spatial_ndim,
            background=settings.object_background or "border",
            intensity=None if image is None else _model_brightness(args, settings, *image),
            spacing=None if spacing is None else tuple(spacing),
            **object_options(settings),
        )
        planes = labels.reshape(planes.shape)
        counts = [len(np.unique(plane[plane > 0])) for plane in planes]
        return labels, counts
    counts = [int(plane.max(initial=0)) for plane in planes]
    numbered = np.zeros(labels.shape, smallest_unsigned_dtype(sum(counts)))
    flat = numbered.reshape(planes.shape)
    offset = 0
    for index, (plane, count) in enumerate(zip(planes, counts, strict=True)):
        flat[index] = np.where(plane > 0, plane.astype(np.int64) + offset, 0)
        offset += count
    return numbered, counts


def _model_brightness(
    args: argparse.Namespace,
    settings: SegmentationParams,
    image: np.ndarray,
    channel_axis: int | None,
    rgb: bool | None,
) -> np.ndarray | None:
    """The brightness of every pixel of ``image`` as the loaded model scales it, for the
    objects' background rule; None without a model or when the rule does not need it."""
    if args.loaded_model is None or settings.object_background != "intensity":
        return None
    return args.loaded_model.brightness(image, channel_axis=channel_axis, rgb=rgb)


def _plane_names(letters: str | None, ndim: int, axes: Sequence[int]) -> list[str] | None:
    """The measurements' columns for a stack's ``axes``: the TIFF's letters in lower case
    (``t``, ``z``) where it names every axis, else None (``plane``, ``axis_0``, ...)."""
    known = known_letters(letters, ndim)
    if not axes or known is None:
        return None
    names = [known[axis].lower() for axis in axes]
    return names if len(set(names)) == len(names) else None


def _write_outputs(
    name: str,
    labels: np.ndarray,
    image: np.ndarray,
    channel_axis: int | None,
    out_dir: Path,
    args: argparse.Namespace,
    letters: str | None,
    calibration: Calibration,
    ndim: int,
    stack_axes: tuple[int, ...],
    spatial_ndim: int = 2,
) -> Path:
    """Write a label image (or stack) as ``<name>_labels.tif`` with the image's calibration
    where it has one this command knows, and with ``--measure`` the measurements of the
    labels and of ``image`` (its axes in the labels' order, channels on ``channel_axis``)
    as a CSV beside it, in the TIFF's units: each plane (``spatial_ndim`` 2) or volume (3)
    on its own, with a column per stack axis; the TIFF's path."""
    from .io import write_label_tiff

    axes = _stack_letters(known_letters(letters, ndim), stack_axes)
    scale = _label_scale(calibration, axes, labels.ndim)
    unit = calibration.unit if scale is not None else None
    if scale is None and calibration.sizes:
        print(f"{PROG}: note: {shown(name)}: its pixel size is in no length unit this command "
              "knows; the labels are written at pixel size 1", file=sys.stderr)  # fmt: skip
    path = output_path(out_dir, name)
    write = {"axes": axes, "overwrite": args.overwrite}
    try:
        write_label_tiff(path, labels, scale=scale, units=unit, **write)
    except ValueError as error:
        if scale is None:
            raise
        print(f"{PROG}: note: {shown(name)}: {error}; the labels are written at pixel size 1",
              file=sys.stderr)  # fmt: skip
        write_label_tiff(path, labels, **write)
        scale = None
    if getattr(args, "measure", False):
        from .core.measure import measure_objects, write_measurements_csv

        spacing = None if scale is None else scale[-spatial_ndim:]
        planes = stack_axes[: len(stack_axes) - (spatial_ndim - 2)]
        table = measure_objects(
            labels,
            image,
            channel_axis=channel_axis,
            spacing=spacing,
            spatial_ndim=spatial_ndim,
            plane_names=_plane_names(letters, ndim, planes),
        )
        write_measurements_csv(table, measurements_path(path), overwrite=args.overwrite)
    return path


def measurements_path(labels_path: Path) -> Path:
    """The CSV that ``--measure`` writes beside a label TIFF: ``<name>_labels.csv``."""
    return labels_path.with_suffix(".csv")


#: How the status lines name the axes a TIFF names (tifffile's letters).
_AXIS_WORDS = {"T": "time", "Z": "z", "C": "channel", "S": "channel"}


def _axis_word(letters: str | None, axis: int) -> str | None:
    """A biologist's word for an axis (``z``, ``time``, ``channel``), or None when the file
    does not say what the axis is."""
    if letters is None or axis >= len(letters):
        return None
    return _AXIS_WORDS.get(letters[axis])


def _stack_without_planes(
    shape: tuple[int, ...], letters: str | None, stack_axes: Sequence[int], planes_do: str
) -> ValueError:
    """The error for a stack given without ``--planes`` (``planes_do``: what ``--planes``
    would do with it), which may instead be an image with channels."""
    n_planes = int(np.prod([shape[axis] for axis in stack_axes]))
    return ValueError(
        f"shape {shape} is a stack of {n_planes} planes along {_along(letters, stack_axes)}; "
        f"pass --planes to {planes_do}, or --channel-axis N if axis N holds channels"
    )


def _along(letters: str | None, axes: Sequence[int]) -> str:
    """The stack axes in words: ``z``, ``time and z``, or ``axis 0`` when unnamed."""
    words = [_axis_word(letters, axis) for axis in axes]
    if all(words):
        return " and ".join(word for word in words if word)
    numbers = " and ".join(map(str, axes))
    return f"axes {numbers}" if len(axes) > 1 else f"axis {numbers}"


def _plane_words(
    number: int,
    n_planes: int,
    index: tuple[int, ...],
    stack_shape: tuple[int, ...],
    letters: str | None,
    stack_axes: Sequence[int],
) -> str:
    """Where a plane is, counted from 1 as Fiji does: ``plane 3/12``, and for a stack of
    more than one axis also the place along each, ``plane 7/15 (time 2/5, z 1/3)``; empty
    for a 2D image."""
    if not stack_axes:
        return ""
    where = f"plane {number}/{n_planes}"
    if len(stack_axes) > 1:
        places = [
            f"{_axis_word(letters, axis) or f'axis {axis}'} {at + 1}/{size}"
            for axis, at, size in zip(stack_axes, index, stack_shape, strict=True)
        ]
        where += f" ({', '.join(places)})"
    return where


def shown(text: str | os.PathLike[str]) -> str:
    """``text`` fit for one line of a terminal: control characters (a newline, an escape
    sequence in a file name) written as escapes such as ``\\x1b``."""
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape", "backslashreplace").decode()
        for char in os.fspath(text)
    )


def _label_scale(calibration: Calibration, axes: str | None, ndim: int) -> list[float] | None:
    """Pixel sizes of the label axes (``axes``: T and Z letters the input named, then YX;
    None: unnamed stack axes, which get 1), or None when the image states no length unit
    (sizes in an unknown unit would mean nothing)."""
    if not calibration.sizes or calibration.unit is None:
        return None
    letters = axes if axes is not None else "?" * (ndim - 2) + "YX"
    return [calibration.sizes.get(letter, 1.0) for letter in letters]


def colour_setting(
    name: str,
    shape: tuple[int, ...],
    channel_axis: int | None,
    letters: str | None,
    flag: bool | None,
) -> bool | None:
    """The engine's ``rgb`` for an image: ``--rgb``/``--no-rgb`` (``flag``) when given, else
    a TIFF's own word (colour only on its ``S`` axis), else None (the engine's guess from the
    layout)."""
    if flag and (channel_axis is None or shape[channel_axis] not in (3, 4)):
        found = "none" if channel_axis is None else f"{shape[channel_axis]} entries"
        raise ValueError(
            f"--rgb needs a channel axis of 3 or 4 entries (RGB, RGBA), and shape {shape} has "
            f"{found} on the channel axis; leave --rgb out, or give the colour axis with "
            "--channel-axis"
        )
    if flag is not None or channel_axis is None or letters is None or len(letters) != len(shape):
        return flag
    from .core.plan import channels_are_colour

    # a TIFF holds colour only as the samples of RGB (S)
    rgb = channels_are_colour(shape[channel_axis], letter=letters[channel_axis])
    if rgb and channel_axis < letters.find("Y"):  # planar: S stored before the rows
        _note_planar_colour(name, shape[channel_axis])
    return rgb


def _note_planar_colour(name: str, n_samples: int) -> None:
    """Warn that planes stored as colour samples are taken as colour, as the file says.

    ``tifffile.imwrite`` and ``skimage.io.imsave`` store any ``(3|4, H, W)`` array so
    unless told otherwise: a 3-plane stack or three stains would silently become one
    colour image (and a fourth plane its alpha).
    """
    alpha = " (the fourth is taken as alpha and dropped)" if n_samples == 4 else ""
    print(
        f"{PROG}: note: {name} stores its {n_samples} planes as the samples of a colour "
        f"image; segmenting them as colour{alpha}. Pass --no-rgb if they are stains, or "
        "--channel-axis none --planes if they are a stack of planes",
        file=sys.stderr,
    )


class PlaneResult(NamedTuple):
    """The labels of one 2D plane, how many there are, and the training iterations."""

    labels: np.ndarray
    iterations: int
    n_labels: int


def _segment_part(
    name: str,
    where: str,
    part: np.ndarray,
    args: argparse.Namespace,
    params: SegmentationParams,
    channel_axis: int | None,
    rgb: bool | None,
    **engine: Any,
) -> PlaneResult:
    """:func:`_segment_plane` on one plane (or volume) of the image ``name``; ``where``
    (e.g. ``"plane 2/5"``, empty for the whole image) names it in the progress bar and
    begins the message of any ValueError it raises."""
    try:
        return _segment_plane(
            f"{shown(name)} {where}" if where else shown(name),
            part,
            args,
            params,
            channel_axis,
            rgb,
            **engine,
        )
    except ValueError as error:
        raise ValueError(f"{where}: {error}" if where else str(error)) from error


def _segment_plane(
    desc: str,
    plane: np.ndarray,
    args: argparse.Namespace,
    params: SegmentationParams,
    channel_axis: int | None,
    rgb: bool | None,
    **engine: Any,
) -> PlaneResult:
    """Labels of one 2D plane (or, with ``engine`` ``spatial_ndim=3`` and ``spacing``, of
    one volume), with a progress bar over iterations.

    While training the bar shows the network's classes (what the stopping rule counts);
    at the end the labels the user gets, after post-processing, which can number more.
    """
    from tqdm import tqdm

    from .core import iter_segment

    if args.loaded_model is not None:  # one model: classes are labels, the same everywhere
        labels = args.loaded_model.predict(plane, channel_axis=channel_axis, rgb=rgb)
        return PlaneResult(labels, 0, len(np.unique(labels)))
    step = None
    with tqdm(total=params.max_iter, desc=desc, unit="it", leave=False, disable=args.quiet) as bar:
        for step in iter_segment(plane, params, channel_axis=channel_axis, rgb=rgb, **engine):
            bar.update(1)
            bar.set_postfix_str(f"{counted(step.n_classes, 'class')} while training")
        assert step is not None
        labels = step.labels
        bar.set_postfix_str(counted(int(labels.max()), "label"))
    if args.save_model is not None:
        step.model.save(args.save_model)
    return PlaneResult(labels, step.iteration, int(labels.max()))


def _stack_letters(letters: str | None, stack_axes: tuple[int, ...]) -> str | None:
    """TIFF axes of a label stack: the input's T and Z letters where it has them, else the
    default for the number of dimensions."""
    if not stack_axes:
        return None
    kept = "".join(letters[axis] for axis in stack_axes) if letters else ""
    return f"{kept}YX" if kept in ("T", "Z", "TZ") else None


def output_path(out_dir: Path, name: str) -> Path:
    """The label TIFF written for the input called ``name``."""
    return out_dir / f"{name}_labels.tif"


def _overwrite_problems(args: argparse.Namespace, names: Sequence[str]) -> list[str]:
    """Why writing the outputs of ``names`` would destroy a file, one message per output.

    An output that is one of the input images is always refused (it would be overwritten
    before it is read); any other existing output only without ``--overwrite``.
    """
    problems = []
    targets = [output_path(args.out, name) for name in names]
    if getattr(args, "measure", False):
        targets += [measurements_path(target) for target in targets]
    for target in targets:
        if not target.exists():
            continue
        if any(path.exists() and target.samefile(path) for path in args.images):
            problems.append(f"{target} is one of the input images")
        elif not args.overwrite and getattr(args, "dask", None) is None:  # --dask: skipped
            problems.append(f"{target} exists (pass --overwrite to replace it)")
    return problems


def _inputs(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """(name, loader) for every sample and file, in the order given."""
    inputs: list[tuple[str, Any]] = []
    for sample in args.sample:
        inputs.append((sample, lambda sample=sample: (*load_sample(sample), UNCALIBRATED)))
    for path in args.images:
        inputs.append((_file_stem(path), lambda path=path: read_image(path)))
    return _unique_names(inputs)


def _unique_names(inputs: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Suffix repeated names (``a/x.tif``, ``b/x.png``) so no output overwrites another."""
    used: set[str] = set()  # compared case-insensitively, as on macOS and Windows
    unique = []
    for name, load in inputs:
        candidate, number = name, 1
        while candidate.lower() in used:
            number += 1
            candidate = f"{name}_{number}"
        used.add(candidate.lower())
        unique.append((candidate, load))
    return unique


#: Exit statuses besides argparse's 2 for a usage error: every image written; some failed;
#: stopped by Ctrl-C; stopped by SIGTERM (128 + the signal number, as a shell reports it).
EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a job scheduler's time limit), raised where the program is, so that
    it stops as after Ctrl-C: the label TIFF being written is removed, not left partial."""


@contextlib.contextmanager
def sigterm_stops_like_ctrl_c() -> Iterator[None]:
    """Raise :class:`Terminated` on SIGTERM while the block runs (in the main thread only,
    where Python runs signal handlers; a SIGTERM the caller ignores stays ignored)."""
    sigterm = getattr(signal, "SIGTERM", None)
    if sigterm is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(sigterm)
    if previous == signal.SIG_IGN:
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise Terminated

    signal.signal(sigterm, stop)
    try:
        yield
    finally:
        signal.signal(sigterm, signal.SIG_DFL if previous is None else previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; exit status 0 when every image was written, 1 when some failed,
    2 for a usage error, 130 after Ctrl-C and 143 after SIGTERM."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.images and not args.sample:
        parser.error("give image files and/or --sample NAME")
    try:
        params = params_from_args(args)
    except (ValueError, TypeError) as error:
        parser.error(str(error))
    inputs = _inputs(args)
    if args.dask is not None and (args.one_model or args.save_model is not None):
        parser.error("--dask labels each file on its own; leave out --one-model and --save-model")
    problems = _overwrite_problems(args, [name for name, _ in inputs])
    if problems:
        parser.error("not overwriting: " + "; ".join(problems))
    problem = _out_problem(args.out)
    if problem:
        parser.error(problem)
    _check_models(parser, args, len(inputs))
    _check_volume(parser, args)
    try:
        args.objects = object_settings(args, params)
    except (ValueError, TypeError) as error:
        parser.error(str(error))
    with sigterm_stops_like_ctrl_c():
        try:
            _check_device(parser, params.device)
            if args.dask is not None:
                failures = _dask_inputs(args, params)
            elif args.one_model:
                failures = _one_model_inputs(inputs, args, params)
            else:
                failures = _segment_inputs(inputs, args, params)
        except Terminated:
            print(f"{PROG}: interrupted (SIGTERM)", file=sys.stderr)
            return EXIT_TERMINATED
        except KeyboardInterrupt:  # Ctrl-C: no traceback; files already written are complete
            print(f"{PROG}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
    if failures:
        print(f"{PROG}: {failures} of {len(inputs)} image(s) failed", file=sys.stderr)
    return EXIT_FAILED if failures else EXIT_OK


def _check_models(parser: argparse.ArgumentParser, args: argparse.Namespace, n_inputs: int) -> None:
    """Refuse --model with --save-model or --one-model, --save-model of several images
    without --one-model, and a model file that cannot be read (before any image is read);
    keep the loaded model in ``args``."""
    args.loaded_model = None
    if args.model is not None and args.save_model is not None:
        parser.error("--model applies a saved model and --save-model trains one: give one")
    if args.model is not None and args.one_model:
        parser.error("--model applies a saved model and --one-model trains one: give one")
    if args.save_model is not None and n_inputs != 1 and not args.one_model:
        parser.error(f"--save-model saves the network trained on one image; {n_inputs} given")
    if args.model is not None:
        from .core import load_model

        try:
            args.loaded_model = load_model(args.model)
        except (OSError, ValueError) as error:
            parser.error(f"--model: {error}")


def _check_volume(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse --volume with --planes or --one-model, and --spacing without --volume or with
    a size that is not > 0."""
    if args.volume and (args.planes or args.one_model):
        parser.error("--volume segments each volume on its own; leave out --planes and "
                     "--one-model")  # fmt: skip
    if args.spacing is not None:
        if not args.volume:
            parser.error("--spacing is the voxel size of --volume; pass --volume too")
        if not all(np.isfinite(size) and size > 0 for size in args.spacing):
            parser.error(f"--spacing: sizes must be > 0; got {' '.join(map(str, args.spacing))}")


def _out_problem(out: Path) -> str | None:
    """Why label TIFFs cannot be written in ``out`` (created when missing), or None: found
    by writing and removing a small file, before any image is segmented (a read-only disk,
    a folder without write permission)."""
    if out.exists() and not out.is_dir():
        return f"--out {shown(out)} is a file, not a folder"
    try:
        out.mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(dir=out, prefix=f".{PROG}-check-", suffix=".tmp")
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        return f"--out {shown(out)}: cannot write label files there: {error.strerror or error}"
    return None


def _check_device(parser: argparse.ArgumentParser, device: str) -> None:
    """A ``--device`` this machine lacks is a usage error, once, before any image ("auto"
    always resolves, and needs no torch import here)."""
    if device.strip().lower() == "auto":
        return
    from .core.devices import resolve_device

    try:
        resolve_device(device)
    except ValueError as error:
        parser.error(f"--device: {error}")


def _segment_inputs(
    inputs: list[tuple[str, Any]], args: argparse.Namespace, params: SegmentationParams
) -> int:
    """Segment and write every input, printing a summary line for each (stdout, also with
    ``--quiet``); the number that failed (each reported on stderr)."""
    from tqdm import tqdm

    failures = 0
    for name, load in tqdm(
        inputs, desc="images", unit="image", disable=args.quiet or len(inputs) < 2
    ):
        started = time.perf_counter()
        try:
            image, letters, read = load()
            calibration = read if args.calibration else UNCALIBRATED
            written = segment_to_file(
                name, image, args.out, args, params, letters, calibration, voxel_sizes=read
            )
        except FileExistsError:  # written by another run since the check at the start
            failures += 1
            target = shown(output_path(args.out, name))
            print(f"{PROG}: skipped {shown(name)}: {target} appeared while segmenting (another "
                  "run?) and is kept; pass --overwrite to replace it", file=sys.stderr)  # fmt: skip
        except Exception as error:  # one bad file must not stop the others
            failures += 1
            print(f"{PROG}: skipped {shown(name)}: {shown(str(error))}", file=sys.stderr)
        else:
            seconds = time.perf_counter() - started
            tqdm.write(summary_line(name, written, output_path(args.out, name), seconds))
    return failures


def _dask_inputs(args: argparse.Namespace, params: SegmentationParams) -> int:
    """``--dask``: label every input as a task on a dask.distributed cluster, printing each
    file's summary line (or why it failed, or that its outputs were complete and kept) as
    its task completes; the number that failed."""
    from tqdm import tqdm

    from . import distributed

    try:
        client = distributed.connect(args.dask)
    except ImportError as error:
        print(f"{PROG}: --dask: {error}", file=sys.stderr)
        return len(args.images) + len(args.sample)
    except OSError as error:  # no scheduler at that address
        print(f"{PROG}: --dask {shown(args.dask)}: cannot connect: {error}", file=sys.stderr)
        return len(args.images) + len(args.sample)
    jobs = distributed.input_sources(args)
    bar = tqdm(total=len(jobs), desc="images", unit="image", disable=args.quiet or len(jobs) < 2)

    def report(result: distributed.FileResult) -> None:
        bar.update(1)
        if result.status == "failed":
            print(f"{PROG}: skipped {shown(result.name)}: {shown(str(result.error))}",
                  file=sys.stderr)  # fmt: skip
        elif result.status == "skipped":
            tqdm.write(f"{shown(result.name)}: {result.summary} -> {shown(str(result.path))}")
        else:
            tqdm.write(str(result.summary))

    try:
        with bar:
            results = distributed.run(jobs, args, params, client=client, progress=report)
    finally:
        distributed.close(client)
    return sum(result.status == "failed" for result in results)


class _Loaded(NamedTuple):
    """An input read for --one-model, with what its axes and colour were found to be."""

    name: str
    image: np.ndarray
    letters: str | None
    calibration: Calibration
    training: np.ndarray  # planes first, channels last (one for grayscale)
    is_rgb: bool


def _one_model_inputs(
    inputs: list[tuple[str, Any]], args: argparse.Namespace, params: SegmentationParams
) -> int:
    """--one-model: read every input, train one network on them all, then label and write
    each with it; the number of inputs that failed. An input that cannot be read or
    segmented is reported and left out; if training fails, every input has failed."""
    from tqdm import tqdm

    from .core import iter_fit

    loaded: list[_Loaded] = []
    failures = 0
    for name, load in inputs:
        try:
            loaded.append(_load_for_training(name, load, args))
        except Exception as error:  # one bad file must not stop the others
            failures += 1
            print(f"{PROG}: skipped {shown(name)}: {shown(str(error))}", file=sys.stderr)
    if not loaded:
        return failures
    colours = {item.is_rgb for item in loaded}
    n_channels = {item.training.shape[-1] for item in loaded}
    if len(colours) > 1:
        words = ", ".join(f"{shown(i.name)}: {'colour' if i.is_rgb else 'not'}" for i in loaded)
        print(f"{PROG}: --one-model needs inputs that are all colour or all not ({words}); "
              "nothing was written", file=sys.stderr)  # fmt: skip
        return len(inputs)
    is_rgb = colours.pop()
    started = time.perf_counter()
    step = None
    desc = f"one model on {counted(len(loaded), 'image')}"
    try:
        with tqdm(total=params.max_iter, desc=desc, unit="it", leave=False,
                  disable=args.quiet) as bar:  # fmt: skip
            for step in iter_fit(
                [item.training for item in loaded],
                params,
                channel_axis=-1,
                rgb=is_rgb,
            ):
                bar.update(1)
                bar.set_postfix_str(f"{counted(step.n_classes, 'class')} while training")
    except Exception as error:
        print(f"{PROG}: --one-model: training failed: {shown(str(error))}; nothing was "
              f"written", file=sys.stderr)  # fmt: skip
        return len(inputs)
    assert step is not None
    args.loaded_model = step.model
    saved = ""
    if args.save_model is not None:
        step.model.save(args.save_model)
        saved = f" -> {shown(args.save_model)}"
    channels = "colour" if is_rgb else counted(max(n_channels), "channel")
    tqdm.write(f"one model: {counted(len(loaded), 'image')} ({channels}), "
               f"{counted(step.iteration, 'iteration')}, "
               f"{time.perf_counter() - started:.1f} s{saved}")  # fmt: skip
    for item in loaded:
        started = time.perf_counter()
        try:
            written = segment_to_file(item.name, item.image, args.out, args, params,
                                      item.letters, item.calibration)  # fmt: skip
        except FileExistsError:
            failures += 1
            target = shown(output_path(args.out, item.name))
            print(f"{PROG}: skipped {shown(item.name)}: {target} appeared meanwhile (another "
                  "run?) and is kept; pass --overwrite to replace it", file=sys.stderr)  # fmt: skip
        except Exception as error:
            failures += 1
            print(f"{PROG}: skipped {shown(item.name)}: {shown(str(error))}", file=sys.stderr)
        else:
            seconds = time.perf_counter() - started
            path = output_path(args.out, item.name)
            tqdm.write(summary_line(item.name, written, path, seconds))
    return failures


def _load_for_training(name: str, load: Any, args: argparse.Namespace) -> _Loaded:
    """Read one input and arrange it for training: its planes first (a stack only with
    --planes, as when segmenting), its channels last, its colour decided as when
    segmenting it alone (so that moving the channels does not change the guess)."""
    from .core.normalize import image_layout

    image, letters, calibration = load()
    if not args.calibration:
        calibration = UNCALIBRATED
    channel_axis, stack_axes = image_axes(image.shape, args.channel_axis, letters)
    if stack_axes and not args.planes:
        raise _stack_without_planes(
            image.shape, letters, stack_axes, "train on and label each plane"
        )
    plane_axes = [axis for axis in range(image.ndim) if axis not in stack_axes]
    rgb = colour_setting(name, image.shape, channel_axis, letters, args.rgb)
    plane_shape = tuple(image.shape[axis] for axis in plane_axes)
    plane_channel_axis = None if channel_axis is None else plane_axes.index(channel_axis)
    is_rgb = image_layout(plane_shape, image.dtype, plane_channel_axis, rgb).is_rgb
    channels_last = [axis for axis in plane_axes if axis != channel_axis]
    if channel_axis is not None:
        channels_last.append(channel_axis)
    training = np.transpose(image, [*stack_axes, *channels_last])
    if channel_axis is None:  # one channel, on the axis where the others have theirs
        training = training[..., np.newaxis]
    return _Loaded(name, image, letters, calibration, training, is_rgb)


def summary_line(name: str, written: Written, path: Path, seconds: float) -> str:
    """One line per image for people and scripts.

    ``NAME: L labels, I iterations, S s -> PATH`` for a 2D image;
    ``NAME: P planes, A to B labels per plane, I iterations, S s -> PATH`` for a stack (each
    plane is numbered from 1 on its own: the range of the planes' label counts, one number
    when all planes have as many; ``I`` is the iterations of all planes together). Objects
    (``label_by="object"``), numbered across the stack, are counted in all and per plane:
    ``NAME: P planes, N objects (A to B per plane), ...``. Counts of one are singular
    (``1 label``). ``S`` is the seconds from reading the image to
    the written file.
    """
    counts = written.plane_labels
    labels = labels_per_plane(counts)
    if written.objects:  # numbered across the stack: the total, then per plane
        labels = counted(sum(counts), "object")
        if len(counts) > 1:
            low, high = min(counts), max(counts)
            each = f"{low}" if low == high else f"{low} to {high}"
            labels = f"{len(counts)} {written.unit}s, {labels} ({each} per {written.unit})"
    elif len(counts) > 1:
        labels = f"{len(counts)} {written.unit}s, {labels}"
        if written.unit != "plane":
            labels = labels.replace(" per plane", f" per {written.unit}")
    # a saved model labels without training: no iterations
    iterations = counted(written.iterations, "iteration") if written.iterations else "no training"
    return f"{shown(name)}: {labels}, {iterations}, {seconds:.1f} s -> {shown(path)}"


if __name__ == "__main__":
    sys.exit(main())
