"""How an array is segmented, decided from its shape, dtype and axis names alone: which
axes are a plane's rows and columns, which holds channels and whether they are colour,
which axes are planes of a stack, and whether training fits memory whole or goes by crops
(prediction always goes by tiles: ``SegmentationModel.default_tile_shape``).

One policy for the widget, napari's console and the command line, so that the same array
is read the same way everywhere. Nothing here reads pixels, imports torch or napari.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import memory  # its available_memory() is looked up when called (tests replace it)
from .memory import SWITCH, estimate_bytes
from .normalize import channels_look_like_colour, check_channel_axis_type
from .params import SegmentationParams

__all__ = [
    "PLANES",
    "AmbiguousChannels",
    "PlanePlan",
    "PlanesChoice",
    "channels_are_colour",
    "check_copy_fits",
    "guess_channel_axis",
    "is_channel_name",
    "labels_folder",
    "labels_on_disk",
    "plan_plane",
    "planes_choice",
    "volume_offered",
    "whole_image_fits",
]

#: Axis names (napari's axis labels, lower-cased) that say an axis holds channels.
CHANNEL_NAMES = frozenset({"c", "ch", "channel", "channels"})
#: TIFF axis letters (tifffile's) of channels: ``C``, and ``S`` for the samples of colour.
CHANNEL_LETTERS = frozenset({"C", "S"})
#: Axis names of time, which a stack orders before depth (as a TZYX label stack).
TIME_NAMES = frozenset({"t", "time"})
#: Axis names of depth.
DEPTH_NAMES = frozenset({"z", "depth"})


class AmbiguousChannels(ValueError):
    """The shape and names do not tell which axis holds channels; the caller says how to
    give one (a flag, a control)."""


def is_channel_name(name: str) -> bool:
    """Whether an axis name says the axis holds channels: a TIFF letter ``C`` or ``S``, or a
    label such as ``c`` or ``channel``."""
    return name in CHANNEL_LETTERS or name.strip().lower() in CHANNEL_NAMES


def guess_channel_axis(
    shape: Sequence[int], names: Sequence[str] | None = None, *, from_shape: bool = True
) -> int | None:
    """The channel axis of an array when nobody says which.

    An axis whose name says channels (:func:`is_channel_name`) is it; two such axes raise
    :class:`AmbiguousChannels`. Without one, and when every axis has a name, there are no
    channels. Otherwise, with ``from_shape``, a 3D array whose last axis has 3 or 4 entries
    has its channels last (photos), a 2D array has none, and anything else raises
    :class:`AmbiguousChannels`; without ``from_shape`` (napari, where a layer's RGB flag
    already says colour), there are none.
    """
    ndim = len(shape)
    given = list(names) if names is not None and len(names) == ndim else None
    if given is not None:
        named = [axis for axis, name in enumerate(given) if name and is_channel_name(name)]
        if len(named) > 1:
            raise AmbiguousChannels(
                f"axes {''.join(given)} hold both channels and colour samples"
                if {given[axis] for axis in named} == CHANNEL_LETTERS
                else f"axes {', '.join(map(str, named))} are all named as channels"
            )
        if named:
            return named[0]
        if all(given):
            return None
    if not from_shape:
        return None
    if ndim == 3 and shape[-1] in (3, 4):
        return ndim - 1
    if ndim == 2:
        return None
    raise AmbiguousChannels(f"cannot tell the channel axis of an array of shape {tuple(shape)}")


def channels_are_colour(
    n_channels: int,
    dtype: np.dtype | None = None,
    *,
    declared: bool | None = None,
    channels_last: bool = True,
    letter: str | None = None,
) -> bool:
    """Whether the channels on the channel axis are colour (RGB, RGBA whose alpha is
    dropped) rather than independent channels (stains, bands).

    ``declared``, when given, says it (a flag, a layer that is not RGB). Else the axis's
    TIFF ``letter``, when the file gives one: a TIFF holds colour only as the samples of
    RGB, ``S``. Else
    channels last that look like colour (:func:`~.normalize.channels_look_like_colour`:
    three, or four uint8): how photos come (four of an unknown ``dtype`` are not).
    """
    if declared is not None:
        return bool(declared) and n_channels in (3, 4)
    if letter is not None:
        return letter == "S" and n_channels in (3, 4)
    return channels_last and channels_look_like_colour(n_channels, dtype or np.float64)


@dataclass(frozen=True)
class PlanePlan:
    """Which part of an nD array is segmented: two plane axes, an optional channel axis,
    and an index for every other (sliced) axis."""

    plane_axes: tuple[int, int]
    channel_axis: int | None
    index: tuple[int | None, ...]  # per axis: an int for sliced axes, else None
    #: With all planes: the axes that are neither plane nor channels, and their sizes; every
    #: plane along them is segmented (``index`` is then None for them too).
    stack_axes: tuple[int, ...] = ()
    stack_shape: tuple[int, ...] = ()
    #: 3: the last stack axis is the depth (z) of volumes segmented as 3D objects, the
    #: stack axes before it are volumes (time points, ...).
    spatial_ndim: int = 2

    @property
    def n_planes(self) -> int:
        """How many 2D planes are segmented (one, or all along the stack axes)."""
        return int(np.prod(self.stack_shape, dtype=np.int64))

    @property
    def is_volume(self) -> bool:
        """Whether volumes are segmented (the engine's ``spatial_ndim=3``)."""
        return self.spatial_ndim == 3

    @property
    def unit(self) -> str:
        """What the engine segments one at a time: "plane" or "volume"."""
        return "volume" if self.is_volume else "plane"

    @property
    def n_units(self) -> int:
        """How many planes, or volumes, the engine segments."""
        return self.n_planes // self.stack_shape[-1] if self.is_volume else self.n_planes

    def unit_planes(self, number: int) -> range:
        """The numbers (:meth:`stack_indices` order) of the planes of the ``number``-th
        unit: the plane itself, or every plane of the volume (its depth is the last stack
        axis, so its planes follow one another)."""
        if not self.is_volume:
            return range(number, number + 1)
        depth = self.stack_shape[-1]
        return range(number * depth, (number + 1) * depth)

    def volume_spacing(self, scale: Sequence[float]) -> tuple[float, float, float] | None:
        """The voxel size (dz, dy, dx) of a volume from the layer's ``scale`` (one entry per
        axis): the depth axis's, then the plane's rows' and columns'. None for planes."""
        if not self.is_volume:
            return None
        axes = (self.stack_axes[-1], *self.plane_axes)
        return tuple(abs(float(scale[axis])) for axis in axes)  # type: ignore[return-value]

    @property
    def engine_channel_axis(self) -> int | None:
        """The channel axis among the axes of one plane (what the engine is given)."""
        if self.channel_axis is None:
            return None
        kept = [ax for ax, i in enumerate(self.index) if i is None and ax not in self.stack_axes]
        return kept.index(self.channel_axis)

    def plane_key(self, stack_index: Sequence[int]) -> tuple[int | slice, ...]:
        """The index, in an array with the plan's axes, of the plane at ``stack_index``
        (see :meth:`stack_indices`): every other axis whole (channels included)."""
        position = dict(zip(self.stack_axes, stack_index, strict=True))
        return tuple(
            int(position[ax]) if ax in position else slice(None) for ax in range(len(self.index))
        )

    def stack_indices(self) -> list[tuple[int, ...]]:
        """The index along ``stack_axes`` of every plane, in order (one empty index for a
        single plane)."""
        return list(np.ndindex(*self.stack_shape))


def plan_plane(
    shape: Sequence[int],
    displayed: Sequence[int] | None = None,
    data_point: Sequence[float] | None = None,
    channel_axis: int | None = None,
    *,
    all_planes: bool = False,
    axis_names: Sequence[str] | None = None,
    volume: bool = False,
) -> PlanePlan:
    """Choose the 2D plane of an array of ``shape`` to segment.

    The plane is the last two ``displayed`` axes other than ``channel_axis`` (None: every
    axis, so the last two; with ``axis_names`` naming ``Y`` and ``X`` once, those). Every
    other axis except the channel axis is held at ``data_point`` (rounded and clipped, as
    napari does when slicing; None: 0), or, with ``all_planes``, is a stack axis along
    which every plane is segmented (time before depth where ``axis_names`` say which).
    With ``volume`` (all planes implied), the last stack axis is the depth of volumes
    segmented as 3D objects (``spatial_ndim`` 3). Raises ValueError when no such plane (or
    volume) exists.
    """
    ndim = len(shape)
    if ndim < 2:
        raise ValueError(f"the layer has {ndim} dimension(s); segmentation needs at least 2")
    if channel_axis is not None:
        check_channel_axis_type(channel_axis)
        if not -ndim <= channel_axis < ndim:
            raise ValueError(
                f"channel axis {channel_axis} is out of range for shape {tuple(shape)}"
            )
        channel_axis %= ndim
        if ndim < 3:
            raise ValueError("a channel axis needs an array with at least 3 dimensions")
    names = list(axis_names) if axis_names is not None and len(axis_names) == ndim else None
    if displayed is None:
        displayed = range(ndim)
        if names is not None and names.count("Y") == names.count("X") == 1:
            rows_columns = [names.index("Y"), names.index("X")]
            if channel_axis not in rows_columns:
                displayed = rows_columns
    candidates = [ax for ax in displayed if ax != channel_axis]
    if len(candidates) < 2:
        raise ValueError(
            f"axis {channel_axis} is both the channel axis and a displayed axis; "
            "display two other axes or choose another channel axis"
        )
    plane = tuple(sorted(candidates[-2:]))
    others = [ax for ax in range(ndim) if ax not in plane and ax != channel_axis]
    if names is not None:
        others.sort(key=lambda ax: _stack_rank(names[ax]))
    if volume and not others:
        raise ValueError(
            f"a volume needs 3 axes besides channels (z, y, x); shape {tuple(shape)} has "
            f"{ndim - (channel_axis is not None)}"
        )
    stack_axes = tuple(others) if all_planes or volume else ()
    point = [0.0] * ndim if data_point is None else data_point
    index: list[int | None] = []
    for ax, size in enumerate(shape):
        if ax in plane or ax == channel_axis or ax in stack_axes:
            index.append(None)
        else:
            index.append(int(np.clip(np.round(point[ax]), 0, size - 1)))
    return PlanePlan(
        plane_axes=(plane[0], plane[1]),
        channel_axis=channel_axis,
        index=tuple(index),
        stack_axes=stack_axes,
        stack_shape=tuple(int(shape[ax]) for ax in stack_axes),
        spatial_ndim=3 if volume else 2,
    )


#: The ways to segment an nD layer, as the widget's Planes control and the console's
#: ``planes=`` name them: the plane shown; all planes with one model; each plane on its
#: own; volumes as 3D objects (with one model).
PLANES = ("shown", "all", "each", "volume")


@dataclass(frozen=True)
class PlanesChoice:
    """What a :data:`PLANES` choice asks of the planning and of training."""

    name: str
    all_planes: bool  # every plane of the stack (or volume) is labelled
    volume: bool  # segmented as volumes (``spatial_ndim`` 3)
    one_model: bool  # one model trained for all of them (``iter_fit``), then applied
    #: A plane too large to train whole trains one model on crops of it (every choice but
    #: each plane on its own, which trains each plane whole).
    crops_allowed: bool


def planes_choice(name: str) -> PlanesChoice:
    """The :class:`PlanesChoice` named ``name`` (one of :data:`PLANES`); ValueError else."""
    if name not in PLANES:
        raise ValueError(f"planes must be one of {', '.join(map(repr, PLANES))}; got {name!r}")
    return PlanesChoice(
        name=name,
        all_planes=name != "shown",
        volume=name == "volume",
        one_model=name in ("all", "volume"),
        crops_allowed=name != "each",
    )


def volume_offered(shape: Sequence[int], channel_axis: int | None = None) -> bool:
    """Whether an array of ``shape`` can be segmented as volumes: 3 axes or more besides
    the channel axis."""
    ndim = len(shape)
    channels = 0 if channel_axis is None or not -ndim <= channel_axis < ndim else 1
    return ndim - channels >= 3


def _stack_rank(name: str) -> int:
    """Time first, then the unnamed or other axes, depth last (a stable sort keeps the rest)."""
    lowered = name.strip().lower()
    return 0 if lowered in TIME_NAMES else 2 if lowered in DEPTH_NAMES else 1


def _memory_check_off() -> bool:
    return os.environ.get(SWITCH, "").strip() == "0"


def whole_image_fits(
    height: int,
    width: int,
    settings: SegmentationParams,
    n_input_channels: int = 3,
    *,
    network_in_memory: bool = False,
    extra_bytes: int = 0,
) -> bool:
    """Whether training on a whole ``height`` x ``width`` plane fits the memory available
    now (:func:`~.memory.estimate_bytes`; ``extra_bytes`` held beside it); True when that is
    unknown or the check is switched off. When it does not fit, training goes by crops."""
    free = memory.available_memory()
    if free is None or _memory_check_off():
        return True
    network, other = estimate_bytes(height, width, settings, n_input_channels)
    return other + (network if network_in_memory else 0) + extra_bytes <= free


def check_copy_fits(n_bytes: int, plane: str, planes: int = 1, unit: str = "plane") -> None:
    """MemoryError when ``n_bytes`` (a copy of an image of ``planes`` planes of ``plane``,
    "H x W", or volumes of "D x H x W" with ``unit`` "volume", and its labels) exceed the
    memory available: training on crops keeps its own memory small, but the copy must fit
    (see :func:`~.memory.check_memory`'s switch)."""
    free = memory.available_memory()
    if free is None or _memory_check_off() or n_bytes <= free:
        return
    gib = 2**30
    single = "image" if unit == "plane" else unit
    what = f"stack of {planes} {plane} {unit}s" if planes > 1 else f"{plane} {single}"
    raise MemoryError(
        f"a copy of a {what} needs about {n_bytes / gib:.1f} GiB of memory and "
        f"{free / gib:.1f} GiB is available; segment a crop or a downscaled copy; to run "
        f"anyway, set the environment variable {SWITCH}=0"
    )


#: Labels larger than this share of the memory available go to a zarr array on disk
#: (:func:`labels_on_disk`): the image's copy, training and the viewer need the rest.
LABELS_MEMORY_SHARE = 0.25
#: The folder, under the system's temporary folder, that holds labels written to disk.
LABELS_FOLDER = "napari-unsupervised-segmentation"


def labels_on_disk(
    shape: Sequence[int], dtype: np.dtype | type, available: int | None = None
) -> bool:
    """Whether labels of ``shape`` and ``dtype`` (a run's whole labels layer) go to a zarr
    array on disk rather than a numpy array in memory: when they would take more than
    :data:`LABELS_MEMORY_SHARE` of the ``available`` bytes (None: the memory available
    now, :func:`~.memory.available_memory`; never when that is unknown or the memory
    check is switched off)."""
    if available is None:
        if _memory_check_off():
            return False
        available = memory.available_memory()
        if available is None:
            return False
    n_bytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return n_bytes > LABELS_MEMORY_SHARE * available


def labels_folder(layer_name: str, base: str | os.PathLike[str] | None = None) -> Path:
    """A new, empty folder for a layer's labels on disk, named after the layer:
    ``<system temporary folder>/napari-unsupervised-segmentation/<layer name>-<random>.zarr``
    (``base`` instead of the system temporary folder). It is kept after napari closes:
    the labels stay there until you delete it (or the system clears its temporary files)."""
    parent = Path(tempfile.gettempdir() if base is None else base) / LABELS_FOLDER
    parent.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", layer_name).strip("._") or "labels"
    return Path(tempfile.mkdtemp(prefix=f"{name}-", suffix=".zarr", dir=parent))
