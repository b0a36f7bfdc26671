"""From a napari image layer to the engine and back, shared by the console and the widget.

:func:`layer_input` snapshots the 2D plane (with its channels), or every plane of a stack,
to segment for an image layer (of a lazy layer that one model is trained for or applied
to, a :class:`LazyView` that reads it region by region) and remembers how to place the
result; :func:`show_labels` puts the labels into a "<image name> labels" Labels layer with
the image's spatial transforms (reusing one only while it holds what the plugin last wrote
into it; never for a stack). The console (:mod:`.console`) and the widget (:mod:`.widget`)
both use them. Nothing here imports Qt or torch.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.plan import (  # numpy only
    PlanePlan,
    channels_are_colour,
    labels_folder,
    labels_on_disk,
    plan_plane,
)

if TYPE_CHECKING:
    import napari
    from napari.components import Dims
    from napari.layers import Image, Labels

    from ..core import SegmentationParams

__all__ = [
    "METADATA_KEY",
    "DiskLabels",
    "LayerInput",
    "LazyView",
    "holds_last_write",
    "labels_layer_name",
    "layer_displayed_axes",
    "layer_input",
    "PlaneStack",
    "full_resolution",
    "reusable_labels_layer",
    "show_disk_labels",
    "show_labels",
    "write_plane",
]


def labels_layer_name(image_name: str) -> str:
    """The name of the Labels layer that holds the segmentation of ``image_name``."""
    return f"{image_name} labels"


def layer_displayed_axes(
    world_order: Sequence[int], ndisplay: int, layer_ndim: int
) -> tuple[int, ...]:
    """The layer axes napari displays, given the viewer's axis order and ``ndisplay``.

    A layer's axes are the world's last ``layer_ndim`` axes. As napari does, the layer's
    axis order keeps those world axes in the order they have in ``world_order``; a layer
    with more axes than the world puts its extra (leading) axes first.
    """
    offset = len(world_order) - layer_ndim
    if offset >= 0:
        order = [axis - offset for axis in world_order if axis >= offset]
    else:
        order = list(range(-offset)) + [axis - offset for axis in world_order]
    return tuple(order[-min(ndisplay, layer_ndim) :])


@dataclass(frozen=True)
class LayerInput:
    """A snapshot of what to segment for an image layer and how to place the labels."""

    #: The plane (or stack), axes in the layer's order, RGB(A) last: a copy, or for a lazy
    #: layer read by crops and tiles, a :class:`LazyView` of it (:attr:`lazy`).
    image: np.ndarray | LazyView
    channel_axis: int | None  # for the engine: the plane's channel axis, or None
    rgb: bool  # colour (RGB, or RGBA whose alpha is dropped), else independent channels
    layer_name: str
    layer_shape: tuple[int, ...]  # the layer's spatial shape (RGB channels excluded)
    plan: PlanePlan
    transforms: dict[str, Any] = field(default_factory=dict)  # Labels layer keyword arguments
    layer_id: str = ""  # the image layer's napari unique_id: another image may share its name
    #: Per layer axis (RGB excluded), its name as the viewer shows it ("z", "t", "c"), or ""
    #: where it has none (napari's default labels are numbers).
    axis_names: tuple[str, ...] = ()
    #: The plane is too large to train on whole: training goes by crops, labels by tiles.
    by_crops: bool = False
    #: The number (in :meth:`PlanePlan.stack_indices` order) of the plane the viewer shows.
    shown_plane: int = 0
    #: Volumes: the voxel size (dz, dy, dx) from the layer's scale; None for planes.
    spacing: tuple[float, ...] | None = None
    #: The labels' dtype when they are too large for memory and go to a zarr array on disk
    #: (:class:`DiskLabels`, see :func:`~..core.plan.labels_on_disk`); None: in memory.
    disk_labels: np.dtype | None = None

    @property
    def lazy(self) -> bool:
        """Whether :attr:`image` is a view of a lazy layer, read region by region."""
        return isinstance(self.image, LazyView)

    @property
    def labels_shape(self) -> tuple[int, ...]:
        """The shape of the labels layer's data (:meth:`to_layer_data`): the layer's, with
        size 1 along the sliced axes."""
        return labels_layer_shape(self.layer_shape, self.plan)

    @property
    def n_units(self) -> int:
        """How many planes, or volumes, the engine segments (:attr:`PlanePlan.n_units`)."""
        return self.plan.n_units

    @property
    def shown_unit(self) -> int:
        """The number of the plane, or of the volume, the viewer shows."""
        if not self.plan.is_volume:
            return self.shown_plane
        return self.shown_plane // self.plan.stack_shape[-1]

    @property
    def engine_options(self) -> dict[str, Any]:
        """What ``fit``/``iter_fit`` are told besides the image: ``spatial_ndim=3`` and the
        ``spacing`` for volumes; ``crops=True`` for planes trained on crops (the image's
        copy, which the engine does not count, or a lazy layer read whole, may not fit
        beside training whole); nothing else for planes."""
        if self.plan.is_volume:
            return {"spatial_ndim": 3, "spacing": self.spacing}
        return {"crops": True} if self.by_crops else {}

    def unit_image(self, number: int) -> tuple[np.ndarray | LazyView, int | None]:
        """The ``number``-th plane, or volume (its depth first), and its channel axis: what
        a model labels (``predict``)."""
        plan = self.plan
        if not plan.is_volume:
            return self.plane_image(plan.stack_indices()[number]), self.channel_axis
        image, channels = self.arranged()
        leading = len(plan.stack_axes) - 1  # the axes of volumes, before the depth
        index = np.unravel_index(number, plan.stack_shape[:-1]) if leading else ()
        if channels is not None and channels >= 0:
            channels -= leading
        return _part(image, tuple(int(i) for i in index)), channels

    def unit_planes(self, number: int, labels: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """The labels of the ``number``-th unit (a plane's, or a volume's) as (plane number,
        2D labels) pairs, for :class:`PlaneStack` and :func:`write_plane`."""
        numbers = self.plan.unit_planes(number)
        if not self.plan.is_volume:
            return [(numbers[0], labels)]
        return list(zip(numbers, labels, strict=True))

    @property
    def labels_name(self) -> str:
        """The name of the Labels layer for this input."""
        return labels_layer_name(self.layer_name)

    @property
    def plane_shape(self) -> tuple[int, int]:
        """Height and width of one plane."""
        height, width = (self.layer_shape[axis] for axis in self.plan.plane_axes)
        return height, width

    @property
    def n_planes(self) -> int:
        """How many 2D planes are segmented (one, or all along the stack axes)."""
        return self.plan.n_planes

    def arranged(self) -> tuple[np.ndarray | LazyView, int | None]:
        """The image with the stack axes first (in :meth:`PlanePlan.stack_indices` order)
        and a plane's axes after them, and its channel axis: how ``fit`` takes a stack."""
        plan = self.plan
        if not plan.stack_axes:
            return self.image, self.channel_axis
        kept = [ax for ax, i in enumerate(plan.index) if i is None]  # the copy's axes
        order = [kept.index(ax) for ax in plan.stack_axes]
        order += [a for a in range(self.image.ndim) if a not in order]
        if isinstance(self.image, LazyView):
            image: np.ndarray | LazyView = self.image.transposed(order)
        else:
            image = np.transpose(self.image, order)
        channels = self.channel_axis
        if channels is not None and channels >= 0:
            channels += len(plan.stack_axes)
        return image, channels

    def plane_image(self, stack_index: tuple[int, ...]) -> np.ndarray | LazyView:
        """The plane at ``stack_index`` (see :meth:`PlanePlan.stack_indices`) of the image,
        for the engine with :attr:`channel_axis` and :attr:`rgb`."""
        if not self.plan.stack_axes:
            return self.image
        # an RGB(A) last axis stays whole
        return _part(self.image, self.plan.plane_key(stack_index))

    @property
    def note(self) -> str:
        """Which plane of an nD layer is segmented and where its channels are, in the words
        the viewer shows (status line; empty for a 2D layer without channels): "plane z=6,
        t=2 · 3 channels (c)", or with unnamed axes "plane 6 along axis 0 · 3 channels
        (axis 1)". Positions are 0-based, as napari's sliders and ``viewer.dims`` show them.
        """
        plan = self.plan
        parts = []
        if plan.stack_axes:
            parts.append(f"all {self.n_planes} planes along {self._axes_text(plan.stack_axes)}")
        else:
            held = [self._position(axis, i) for axis, i in enumerate(plan.index) if i is not None]
            if held:
                parts.append("plane " + ", ".join(held))
        not_channels = [axis for axis in range(len(self.layer_shape)) if axis != plan.channel_axis]
        if parts and list(plan.plane_axes) != not_channels[-2:]:  # the viewer's axes were rolled
            parts[0] += f" ({self._axes_text(plan.plane_axes)})"
        if plan.channel_axis is not None:
            n_channels = self.layer_shape[plan.channel_axis]
            parts.append(f"{n_channels} channels ({self._axes_text((plan.channel_axis,))})")
        return " · ".join(parts)

    def _name(self, axis: int) -> str:
        return self.axis_names[axis] if axis < len(self.axis_names) else ""

    def _position(self, axis: int, index: int) -> str:
        """Where a sliced axis is held: "z=6", or "6 along axis 0" for an unnamed axis."""
        name = self._name(axis)
        return f"{name}={index}" if name else f"{index} along axis {axis}"

    def _axes_text(self, axes: Sequence[int]) -> str:
        """ "z", "t, z", "axis 0" or "axes 0, 1" (names where the axes have them)."""
        if not any(self._name(axis) for axis in axes):
            numbers = ", ".join(map(str, axes))
            return f"axis {numbers}" if len(axes) == 1 else f"axes {numbers}"
        return ", ".join(self._name(axis) or f"axis {axis}" for axis in axes)

    def to_layer_data(self, labels: np.ndarray) -> np.ndarray:
        """Place ``labels`` of the plane (2D), or of all planes (the stack axes and the plane
        axes, in the layer's order), into an array with the layer's number of axes.

        Sliced axes get size 1 (the Labels layer's translate puts them at the right index);
        a channel axis gets its full size so the labels show on every channel.
        """
        if len(self.layer_shape) == 2:
            return labels
        shape = [1] * len(self.layer_shape)
        kept = sorted((*self.plan.stack_axes, *self.plan.plane_axes))
        for ax, size in zip(kept, labels.shape, strict=True):
            shape[ax] = size
        out = labels.reshape(shape)
        if self.plan.channel_axis is not None:
            out = np.repeat(
                out, self.layer_shape[self.plan.channel_axis], axis=self.plan.channel_axis
            )
        return out


def _part(image: np.ndarray | LazyView, key: tuple[int | slice, ...]) -> np.ndarray | LazyView:
    """``image[key]``: for a lazy view, a view of it (nothing read)."""
    return image.view(key) if isinstance(image, LazyView) else image[key]


def labels_layer_shape(layer_shape: Sequence[int], plan: PlanePlan) -> tuple[int, ...]:
    """The shape of the labels layer of a layer of ``layer_shape`` (RGB excluded) segmented
    as ``plan`` says: size 1 along the sliced axes (see :meth:`LayerInput.to_layer_data`)."""
    return tuple(
        1 if index is not None else int(size)
        for size, index in zip(layer_shape, plan.index, strict=True)
    )


class DiskLabels:
    """A run's labels layer as a zarr array on disk (labels too large for memory), which
    ``predict`` writes tile by tile, a plane (or volume) at a time (:meth:`unit_out`).

    The array has the labels layer's shape (:attr:`LayerInput.labels_shape`) and is in a
    new folder named after the layer (:func:`~..core.plan.labels_folder`; ``folder``
    instead), which stays after napari closes.
    """

    def __init__(self, inp: LayerInput, folder: str | Path | None = None) -> None:
        import zarr

        if inp.disk_labels is None:
            raise ValueError(f"the labels of {inp.layer_name!r} are not meant for disk")
        self.inp = inp
        self.path = labels_folder(inp.layer_name) if folder is None else Path(folder)
        shape = inp.labels_shape
        plane_axes = inp.plan.plane_axes
        chunks = tuple(
            min(size, 1024) if axis in plane_axes else 1 for axis, size in enumerate(shape)
        )
        self.array = zarr.create_array(
            store=str(self.path),
            shape=shape,
            dtype=inp.disk_labels,
            chunks=chunks,
            fill_value=0,
            overwrite=True,
        )

    def unit_out(self, number: int) -> UnitOut:
        """Where ``predict`` writes the labels of ``inp``'s ``number``-th plane (volume)."""
        return UnitOut(self.array, self.inp.plan, number)


class UnitOut:
    """The labels of one plane (or volume) inside a labels layer's array on disk, as an
    ``out=`` array for ``predict``: its shape and dtype, and writes placed in the layer's
    axes (on every channel of a channel axis); it also notes which labels were written."""

    def __init__(self, array: Any, plan: PlanePlan, number: int) -> None:
        self.array = array
        self.channel_axis = plan.channel_axis
        depth = (plan.stack_axes[-1],) if plan.is_volume else ()
        #: The layer axes of the labels' axes, in the labels' order (depth, rows, columns).
        self.axes: tuple[int, ...] = (*depth, *plan.plane_axes)
        first = plan.unit_planes(number)[0]
        at = np.unravel_index(first, plan.stack_shape) if plan.stack_axes else ()
        fixed = {axis: int(i) for axis, i in zip(plan.stack_axes, at, strict=True)}
        fixed.update({axis: 0 for axis, i in enumerate(plan.index) if i is not None})
        self.fixed = {axis: i for axis, i in fixed.items() if axis not in self.axes}
        self.shape = tuple(int(array.shape[axis]) for axis in self.axes)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)
        #: The labels written so far.
        self.classes: set[int] = set()

    def __setitem__(self, key: Any, value: Any) -> None:
        keys = (slice(None),) * self.ndim if key is Ellipsis else tuple(key)
        values = np.asarray(value)  # a tile's labels (predict writes whole tiles)
        self.classes.update(np.unique(values).tolist())
        order = np.argsort(self.axes)  # the labels' axes in the layer's order
        values = np.transpose(values, order)
        placed = dict(zip(self.axes, keys, strict=True))
        channel_axis = self.channel_axis
        channels = [None] if channel_axis is None else range(self.array.shape[channel_axis])
        for channel in channels:
            full = tuple(
                channel
                if axis == channel_axis
                else self.fixed[axis]
                if axis in self.fixed
                else placed[axis]
                for axis in range(self.array.ndim)
            )
            self.array[full] = values


class PlaneStack:
    """The labels of every plane of a stack (see :attr:`PlanePlan.stack_axes`), filled plane
    by plane; planes not segmented (yet) are 0."""

    def __init__(self, plan: PlanePlan, plane_shape: tuple[int, int]) -> None:
        self.plan = plan
        self._data = np.zeros((*plan.stack_shape, *plane_shape), np.uint8)  # stack axes first

    def put(self, number: int, labels: np.ndarray) -> None:
        """Set the labels of the ``number``-th plane (in :meth:`PlanePlan.stack_indices`
        order), widening the dtype when they need it."""
        if np.dtype(labels.dtype).itemsize > self._data.dtype.itemsize:
            self._data = self._data.astype(labels.dtype)
        self._data[np.unravel_index(number, self.plan.stack_shape)] = labels

    def plane(self, number: int) -> np.ndarray:
        """The labels of the ``number``-th plane so far (a view: zeros before its first)."""
        return self._data[np.unravel_index(number, self.plan.stack_shape)]

    def snapshot(self) -> np.ndarray:
        """A copy with the stack and plane axes in the layer's order (for
        :meth:`LayerInput.to_layer_data`)."""
        return in_layer_order(self.plan, self._data).copy()


def in_layer_order(plan: PlanePlan, data: np.ndarray) -> np.ndarray:
    """A view of ``data``, a stack's labels with the stack axes first (then a plane's axes,
    as :class:`PlaneStack` holds them), with its axes in the layer's order."""
    order = [*plan.stack_axes, *plan.plane_axes]
    positions = [sorted(order).index(axis) for axis in order]
    return np.moveaxis(data, list(range(len(order))), positions)


def in_stack_order(plan: PlanePlan, labels: np.ndarray) -> np.ndarray:
    """A view of ``labels`` in the layer's order (:meth:`PlaneStack.snapshot`) with the
    stack axes first, then a plane's axes: the inverse of :func:`in_layer_order`."""
    order = [*plan.stack_axes, *plan.plane_axes]
    positions = [sorted(order).index(axis) for axis in order]
    return np.moveaxis(labels, positions, list(range(len(order))))


def stack_index(plan: PlanePlan, data_position: Sequence[float]) -> tuple[int, ...]:
    """The index, in a stack's labels with the stack axes first (:func:`in_stack_order`),
    of a point given in the labels layer's data coordinates (one per layer axis)."""
    return tuple(
        int(np.floor(float(data_position[axis]) + 0.5))
        for axis in (*plan.stack_axes, *plan.plane_axes)
    )


class LazyView:
    """Part of a lazy array (dask, zarr, ...), some of its axes held at an index and the
    others in a chosen order, that reads nothing until indexed: ``view[key]`` reads only
    that region of the source (a numpy array), :meth:`view` and :meth:`transposed` make
    further views. What the engine is handed for a lazy layer (see
    :func:`~..core.plan.reads_lazily`): ``iter_fit`` reads it crop by crop, ``predict``
    tile by tile.
    """

    def __init__(self, source: Any, key: Sequence[int | slice], axes: Sequence[int]) -> None:
        self.source = source
        #: Per source axis: an index, or the slice (positive step) of the view's entries.
        self.key = tuple(key)
        #: The source axis of each of the view's axes.
        self.axes = tuple(axes)
        self.shape = tuple(len(self._range(axis)) for axis in self.axes)
        self.dtype = np.dtype(source.dtype)
        self.ndim = len(self.shape)

    @classmethod
    def of(cls, source: Any, key: Sequence[int | slice]) -> LazyView:
        """The view ``source[key]`` (``key``: an index or a slice per axis), its axes in
        the source's order."""
        full = tuple(
            int(k) if not isinstance(k, slice) else slice(*k.indices(int(size)))
            for k, size in zip(key, source.shape, strict=True)
        )
        return cls(source, full, [axis for axis, k in enumerate(full) if isinstance(k, slice)])

    def _range(self, axis: int) -> range:
        part = self.key[axis]
        assert isinstance(part, slice)
        return range(*part.indices(int(self.source.shape[axis])))

    def _source_key(self, key: Any) -> tuple[tuple[int | slice, ...], list[int]]:
        """The source index of the view's ``key`` (ints and slices), and the view axes kept."""
        parts = key if isinstance(key, tuple) else (key,)
        if any(part is Ellipsis for part in parts):
            at = parts.index(Ellipsis)
            fill = (slice(None),) * (self.ndim - len(parts) + 1)
            parts = parts[:at] + fill + parts[at + 1 :]
        if len(parts) > self.ndim:
            raise IndexError(f"too many indices for a view of {self.ndim} axes")
        parts = parts + (slice(None),) * (self.ndim - len(parts))
        source = list(self.key)
        kept = []
        for view_axis, (axis, part) in enumerate(zip(self.axes, parts, strict=True)):
            entries = self._range(axis)
            if isinstance(part, slice):
                chosen = entries[part]
                if chosen.step < 0:
                    raise IndexError("a lazy view takes slices with a positive step only")
                source[axis] = slice(chosen.start, chosen.stop, chosen.step)
                kept.append(view_axis)
            elif isinstance(part, int | np.integer):
                source[axis] = entries[int(part)]
            else:
                raise IndexError(f"a lazy view takes integers and slices, not {part!r}")
        return tuple(source), kept

    def view(self, key: Any) -> LazyView:
        """The view of ``self[key]`` (ints and slices), without reading it."""
        source, kept = self._source_key(key)
        return LazyView(self.source, source, [self.axes[axis] for axis in kept])

    def transposed(self, order: Sequence[int]) -> LazyView:
        """The view with its axes in ``order`` (as ``numpy.transpose``)."""
        if sorted(order) != list(range(self.ndim)):
            raise ValueError(f"{tuple(order)} is no order of {self.ndim} axes")
        return LazyView(self.source, self.key, [self.axes[axis] for axis in order])

    def __getitem__(self, key: Any) -> np.ndarray:
        """Read the region ``key`` (ints and slices) from the source."""
        source, kept = self._source_key(key)
        block = np.asarray(self.source[source])
        # the source returns the kept axes in its own order
        axes = [self.axes[axis] for axis in kept]
        return np.transpose(block, np.argsort(np.argsort(axes)))

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        block = self[...]
        return block if dtype is None else block.astype(dtype, copy=False)

    def __len__(self) -> int:
        return self.shape[0]


def full_resolution(layer: Any) -> Any:
    """An image layer's data, or its full-resolution level when it is multiscale."""
    return layer.data[0] if layer.multiscale else layer.data


def _labels_transforms(layer: Image, plan: PlanePlan) -> dict[str, Any]:
    """The image layer's spatial transforms for the Labels layer, shifted to the plane's index."""
    from napari.utils.transforms import CompositeAffine

    ndim = layer.ndim
    scale = np.asarray(layer.scale, dtype=float)
    translate = np.asarray(layer.translate, dtype=float)
    offset = np.array([0.0 if i is None else float(i) for i in plan.index])
    if offset.any():
        linear = CompositeAffine(
            scale=scale, translate=translate, rotate=layer.rotate, shear=layer.shear, ndim=ndim
        ).linear_matrix
        translate = translate + linear @ offset
    transforms: dict[str, Any] = {
        "scale": tuple(scale),
        "translate": tuple(translate),
        "rotate": np.array(layer.rotate),
        "shear": np.array(layer.shear),
        "affine": np.array(layer.affine.affine_matrix),
    }
    for name in ("units", "axis_labels"):
        value = getattr(layer, name, None)
        if value is not None:
            transforms[name] = tuple(value)
    return transforms


def layer_input(
    layer: Any,
    dims: Dims | None = None,
    channel_axis: int | None = None,
    params: SegmentationParams | None = None,
    *,
    all_planes: bool = False,
    crops_allowed: bool = False,
    volume: bool = False,
    model_labels: np.dtype | type | None = None,
    one_model: bool = False,
) -> LayerInput:
    """Snapshot (copy) the plane of image ``layer`` that the viewer displays (with
    ``all_planes``: every plane parallel to it, the whole stack), or of a lazy layer, view
    it.

    ``dims`` is the viewer's ``viewer.dims`` (None: the layer's last two axes at index 0).
    ``channel_axis`` names a layer axis holding channels of a non-RGB layer: they are
    independent channels (stains). RGB(A) layers use their colour axis as colour, except
    four channels of a dtype other than uint8, which stay four channels. Raises ValueError
    with a message for the user when the layer cannot be segmented. With ``params``, a
    plane whose computer-memory share (see
    :func:`~napari_unsupervised_segmentation.core.memory.check_memory`; the network's is
    checked when training starts) exceeds the memory available raises MemoryError before
    it is copied (a multiscale layer's full-resolution level can be far larger than what
    the screen shows); the plane's copy and its channels count, and with ``all_planes``
    the stack's copy and its labels. With ``crops_allowed`` (one model trained for the
    plane or stack), a plane too large to train on whole is trained on crops instead
    (:attr:`LayerInput.by_crops`) and only its copy must fit. With ``volume``, the
    planes make volumes (:func:`~..core.plan.plan_plane`) segmented as 3D objects, their
    voxel size from the layer's scale; the copy and its labels must fit (the engine checks
    its own share, and goes by 3D crops where a volume is too large). ``model_labels`` is
    the labels' dtype when one model labels the layer (its classes: all planes, volumes,
    crops, a model applied): then labels too large for memory
    (:func:`~..core.plan.labels_on_disk`) go to a zarr array on disk
    (:attr:`LayerInput.disk_labels`) and only the image's copy must fit. ``one_model``
    says that one model is trained for every plane (volume) or applied: then, as for a
    plane trained on crops, a lazy layer (:func:`~..core.plan.reads_lazily`: dask, zarr,
    a multiscale layer's full-resolution level) is not copied but viewed
    (:class:`LazyView`), read by crops and tiles while the run goes, and its copy need not
    fit.
    """
    from napari.layers import Image

    from ..core.normalize import image_layout  # numpy only
    from ..core.plan import reads_lazily

    if not isinstance(layer, Image):
        kind = type(layer).__name__
        raise ValueError(
            f"layer {getattr(layer, 'name', layer)!r} is a {kind}; choose an image layer"
        )
    rgb = bool(layer.rgb)
    if rgb and channel_axis is not None:
        raise ValueError(
            f"layer {layer.name!r} is RGB(A): its colour axis is the channel axis already"
        )
    data = full_resolution(layer)
    spatial_shape = tuple(int(s) for s in (data.shape[:-1] if rgb else data.shape))
    ndim = len(spatial_shape)
    if dims is None:
        displayed: tuple[int, ...] = tuple(range(ndim))[-2:]
        point: Sequence[float] = [0.0] * ndim
    else:
        displayed = layer_displayed_axes(tuple(dims.order), dims.ndisplay, ndim)
        point = layer.world_to_data(dims.point) if ndim > 2 else [0.0] * ndim
    plan = plan_plane(
        spatial_shape, displayed, point, channel_axis, all_planes=all_planes, volume=volume
    )
    key = tuple(slice(None) if i is None else i for i in plan.index)
    engine_channel_axis = -1 if rgb else plan.engine_channel_axis
    plane_axes = [ax for ax, i in enumerate(plan.index) if i is None and ax not in plan.stack_axes]
    # napari calls any (H, W, 3|4) layer RGB(A) whatever its dtype; the policy's own rule
    # decides (four channels that are not uint8 stay four channels)
    colour = rgb and channels_are_colour(int(data.shape[-1]), data.dtype)
    # what the engine refuses from a plane's shape and dtype is refused before the copy
    # (of a whole stack, perhaps, of a lazy array that reads it from disk)
    plane = tuple(spatial_shape[ax] for ax in plane_axes) + ((int(data.shape[-1]),) if rgb else ())
    image_layout(plane, data.dtype, engine_channel_axis, colour)
    by_crops = False
    lazy = reads_lazily(data)
    disk = model_labels is not None and labels_on_disk(
        labels_layer_shape(spatial_shape, plan), model_labels
    )
    if params is not None:
        from ..core.memory import check_memory  # numpy only: no torch import here
        from ..core.plan import check_copy_fits, whole_image_fits

        height, width = (spatial_shape[axis] for axis in plan.plane_axes)
        channels = 1 if plan.channel_axis is None else spatial_shape[plan.channel_axis]
        colours = int(data.shape[-1]) if rgb else 1
        # the copy of the plane (or of the stack) in the layer's dtype; none of a lazy
        # layer that one model is trained for (a lazy plane trained whole is copied)
        kept = [size for size, k in zip(data.shape, key, strict=False) if isinstance(k, slice)]
        copied = not (lazy and (one_model or volume))
        extra = int(np.prod(kept, dtype=np.int64)) * colours * data.dtype.itemsize * copied
        if plan.stack_axes and not disk:  # and the stack's labels
            # uint32 at most: the stack, its snapshot, and the layer's old and new data (on
            # every channel)
            pixels = int(np.prod(plan.stack_shape, dtype=np.int64)) * height * width
            copies = 2 + 2 * channels if channels > 1 else 3  # one channel: a view, no repeat
            extra += pixels * 4 * copies
        n_input = channels * colours
        if plan.is_volume:
            volume_shape = (plan.stack_shape[-1], height, width)
            if not lazy:
                check_copy_fits(extra, " x ".join(map(str, volume_shape)), plan.n_units, "volume")
        elif crops_allowed and not whole_image_fits(
            height, width, params, n_input, extra_bytes=extra
        ):
            by_crops = True  # only the copy is checked here; the crops' share at training
            if not lazy:  # a lazy layer is read by crops: nothing is copied
                check_copy_fits(extra, f"{height} x {width}", plan.n_planes)
        else:  # the network's share is checked when training starts
            check_memory(
                height,
                width,
                params,
                network_in_memory=False,
                extra_bytes=extra,
                planes=max(1, plan.n_planes),
                n_input_channels=n_input,
            )
    # a plane trained whole (on its own, with post-processing) has labels in memory
    disk = disk and (bool(plan.stack_axes) or by_crops or params is None)
    if rgb:
        key = (*key, slice(None))
    shown = tuple(
        int(np.clip(np.round(point[ax]), 0, spatial_shape[ax] - 1)) for ax in plan.stack_axes
    )
    if lazy and (one_model or by_crops or volume):
        image: np.ndarray | LazyView = LazyView.of(data, key)  # read by crops and tiles
    else:
        image = np.array(data[key])  # a copy: the user may edit the layer while training runs
    return LayerInput(
        image=image,
        channel_axis=engine_channel_axis,
        rgb=colour,
        layer_name=layer.name,
        layer_shape=spatial_shape,
        plan=plan,
        transforms=_labels_transforms(layer, plan),
        layer_id=_identity(layer),
        axis_names=_axis_names(layer, dims, ndim),
        by_crops=by_crops,
        shown_plane=int(np.ravel_multi_index(shown, plan.stack_shape)) if shown else 0,
        spacing=plan.volume_spacing(layer.scale),
        disk_labels=np.dtype(model_labels) if disk and model_labels is not None else None,
    )


def _axis_names(layer: Any, dims: Dims | None, ndim: int) -> tuple[str, ...]:
    """The name of each of the layer's ``ndim`` axes as the viewer shows it: the layer's
    own axis label, else the viewer's label of the world axis it lies on (napari aligns the
    last axes), else "" (napari's default labels are numbers: '-3', '-2', '0', ...)."""
    own = [str(label) for label in getattr(layer, "axis_labels", None) or ()]
    world = [str(label) for label in dims.axis_labels] if dims is not None else []
    offset = len(world) - ndim
    names = []
    for axis in range(ndim):
        candidates = [own[axis] if len(own) == ndim else ""]
        if offset >= 0:
            candidates.append(world[axis + offset])
        names.append(next((label for label in candidates if _is_axis_name(label)), ""))
    return tuple(names)


def _is_axis_name(label: str) -> bool:
    """Whether an axis label names the axis (napari's default labels are integers)."""
    return bool(label.strip()) and not label.strip().lstrip("-").isdigit()


#: ``Labels.metadata`` key under which the plugin records what it last wrote into a layer.
METADATA_KEY = "napari-unsupervised-segmentation"


#: A plane's CRC-32 in a record for a plane edited since the run wrote it (no CRC is -1).
EDITED = -1


def _fingerprint(data: Any, inp: LayerInput) -> tuple[str, tuple[int, ...], list[int]]:
    """dtype, shape and CRC-32s of a label array: tells whether anyone edited it since.

    One CRC per plane for a stack of ``inp``'s shape (so that a run can check and update
    the plane it writes, :func:`write_plane`), else one for the whole array.
    """
    array = np.asarray(data)
    stack = bool(inp.plan.stack_axes) and array.shape == inp.layer_shape
    keys = [_plane_key(inp.plan, n) for n in range(inp.n_planes)] if stack else [()]
    return array.dtype.str, tuple(array.shape), [_crc(array[key]) for key in keys]


def _crc(array: np.ndarray) -> int:
    """CRC-32 of an array's bytes."""
    return zlib.crc32(np.ascontiguousarray(array).view(np.uint8).ravel())


def _source_of(inp: LayerInput) -> dict[str, Any]:
    """What a Labels layer segments: the image layer (its identity, as two images may share
    a name, and its name) and the plane of that layer."""
    plan = inp.plan
    return {
        "image_layer": inp.layer_id,
        "image": inp.layer_name,
        "shape": inp.layer_shape,
        "plane": (plan.plane_axes, plan.channel_axis, plan.index, plan.stack_axes),
    }


def _record_write(layer: Labels, inp: LayerInput) -> None:
    """Note in the layer's metadata which plane it holds and a fingerprint of its data.

    The layer's ``unique_id`` is kept too: napari copies the metadata into a duplicate,
    which must not pass for the plugin's layer.
    """
    layer.metadata[METADATA_KEY] = {
        **_source_of(inp),
        "layer": _identity(layer),
        "name": layer.name,
        "fingerprint": _fingerprint(layer.data, inp),
    }


def _identity(layer: Any) -> str:
    """A layer's napari ``unique_id`` (a UUID; ``id()`` where napari has none)."""
    return str(getattr(layer, "unique_id", id(layer)))


def holds_last_write(layer: Any, inp: LayerInput) -> bool:
    """Whether ``layer`` is a Labels layer this plugin wrote for ``inp``'s image and plane,
    still under the name it was given and unchanged since (not painted, filled, erased or
    set from the console): the only kind of layer a run may write into."""
    return _written_for(layer, inp) and (
        layer.metadata[METADATA_KEY].get("fingerprint") == _fingerprint(layer.data, inp)
    )


def _written_for(layer: Any, inp: LayerInput) -> bool:
    """Whether ``layer`` is a Labels layer this plugin wrote for ``inp``'s image and plane,
    still under the name it was given (whatever it holds now)."""
    from napari.layers import Labels

    record = layer.metadata.get(METADATA_KEY) if isinstance(layer, Labels) else None
    return (
        isinstance(record, dict)
        and record.get("layer") == _identity(layer)
        and record.get("name") == layer.name
        and all(record.get(key) == value for key, value in _source_of(inp).items())
    )


def reusable_labels_layer(viewer: napari.Viewer, inp: LayerInput) -> Labels | None:
    """The topmost layer of ``viewer`` that a run on ``inp`` may overwrite, if any
    (:func:`holds_last_write`); any other layer, even one named "<image> labels", is left
    alone."""
    return next((lay for lay in reversed(viewer.layers) if holds_last_write(lay, inp)), None)


def show_labels(
    viewer: napari.Viewer,
    inp: LayerInput,
    labels: np.ndarray,
    layer: Labels | None = None,
    *,
    set_transforms: bool = True,
) -> Labels:
    """Put ``labels`` (of ``inp``'s plane, or its stack's) into a Labels layer and return it.

    ``layer`` is the Labels layer of the current run, updated in place while it holds what
    the run last wrote (:func:`holds_last_write`). Without one, the layer of an earlier run
    on the same image and plane (never of a stack: hours of training, perhaps, are not
    overwritten) is reused if nobody renamed or edited it since
    (:func:`reusable_labels_layer`), so that re-running does not pile up layers; otherwise a
    new "<image name> labels" layer is added (napari appends " [1]", " [2]", ... when that
    name is taken), so no one's labels are overwritten. ``set_transforms`` also (re)applies
    the image's transforms.
    """
    from napari.layers import Labels

    data = inp.to_layer_data(labels)
    run_layer = layer
    if layer is None or layer not in viewer.layers or not holds_last_write(layer, inp):
        # first update, or the run's layer was removed, renamed or edited: it is not ours;
        # a stack's labels (perhaps hours of training) are never overwritten by a new run
        layer = None if inp.plan.stack_axes else reusable_labels_layer(viewer, inp)
    if layer is not None:
        layer.data = data
        if layer.features.shape[1]:  # measurements of the labels replaced
            layer.features = {}
        if set_transforms or layer is not run_layer:
            for name, value in inp.transforms.items():
                setattr(layer, name, value)
    else:
        layer = Labels(data, name=inp.labels_name, **inp.transforms)
        viewer.add_layer(layer)
        if layer.name != inp.labels_name:  # napari made the name unique
            from napari.utils.notifications import show_info

            if run_layer is not None:
                kept, why = run_layer.name, "edited during the run"
            elif inp.plan.stack_axes:
                kept, why = inp.labels_name, "a run over all planes never overwrites labels"
            else:
                kept, why = inp.labels_name, "edited, made elsewhere or of another plane"
            show_info(f"{kept!r} is kept ({why}); the new labels are in {layer.name!r}")
    _record_write(layer, inp)
    return layer  # the layer itself, not the proxy napari may hand to plugins


def measurable(inp: LayerInput, *, numbered_across: bool = False) -> bool:
    """Whether the labels of a run on ``inp`` can be measured label by label
    (:func:`measure_labels`): those of one plane or one volume, or, with
    ``numbered_across``, objects numbered across a whole stack (one model's objects). The
    planes of a stack segmented each on its own number their labels from 1 (label 1 of one
    plane is not label 1 of the next), and one model's classes repeat in every plane."""
    plan = inp.plan
    return numbered_across or not plan.stack_axes or (plan.is_volume and inp.n_units == 1)


def measure_labels(inp: LayerInput, labels: np.ndarray) -> dict[str, np.ndarray]:
    """The measurements of ``labels`` (of ``inp``'s plane, or its stack's, in the layer's
    axis order; see :func:`measurable`) as a Labels layer's ``features``: an ``index``
    column (the label values, how napari finds a label's row) and the columns of
    :func:`~..core.measure.measure_objects` but ``label``: sizes and centroids in the units
    of the layer's scale, the mean intensity of the image in each of its channels. In a
    stack of planes (or of volumes), each is measured on its own and the rows gain a column
    per stack axis, named as the layer names it ("t", "z") where it can, saying where."""
    from ..core.measure import measure_objects

    plan = inp.plan
    leading = len(plan.stack_axes) - (1 if plan.is_volume else 0)  # the stack's own axes
    scale = inp.transforms.get("scale")
    if leading:
        spatial: list[int] = [*plan.stack_axes[leading:], *plan.plane_axes]
        labels = in_stack_order(plan, labels)
        image, channel_axis = inp.arranged()
        image = np.asarray(image)
    else:
        spatial = sorted((*plan.stack_axes, *plan.plane_axes))  # the labels' axes, layer order
        image, channel_axis = np.asarray(inp.image), None
        if plan.channel_axis is not None:
            kept = [axis for axis, i in enumerate(plan.index) if i is None]  # the image's axes
            channel_axis = kept.index(plan.channel_axis)
    if channel_axis is None and (inp.rgb or image.ndim > labels.ndim):
        channel_axis = -1  # colour: its samples last
    spacing = None if scale is None else tuple(abs(float(scale[axis])) for axis in spatial)
    options: dict[str, Any] = {}
    if leading:
        options = {
            "spatial_ndim": 3 if plan.is_volume else 2,
            "plane_names": _plane_names(inp, plan.stack_axes[:leading]),
        }
    table = measure_objects(labels, image, channel_axis=channel_axis, spacing=spacing, **options)
    return {"index": table.pop("label"), **table}


def _plane_names(inp: LayerInput, axes: Sequence[int]) -> list[str] | None:
    """The names of the measurements' columns for the stack axes ``axes``: the layer's
    names of them ("t", "z") where each has a name of its own that no measured column has,
    else None (``plane``, ``axis_0``, ...)."""
    from ..core.measure import SHAPE_2D, SHAPE_3D

    names = [inp.axis_names[axis] if axis < len(inp.axis_names) else "" for axis in axes]
    taken = {"label", "index", "area", *SHAPE_2D, *SHAPE_3D}
    if not all(names) or len(set(names)) < len(names):
        return None
    if any(name in taken or name.startswith(("centroid", "intensity")) for name in names):
        return None
    return names


def show_disk_labels(
    viewer: napari.Viewer, inp: LayerInput, disk: DiskLabels, layer: Labels | None = None
) -> Labels:
    """Show labels on disk (``disk``'s zarr array) in a Labels layer and return it: the
    run's ``layer``, redrawn, while it still holds that array; else a new "<image name>
    labels" layer on it (never an earlier run's: its labels are left as they are)."""
    from napari.layers import Labels

    if layer is not None and layer in viewer.layers and layer.data is disk.array:
        layer.refresh(extent=False)
        return layer
    layer = Labels(disk.array, name=inp.labels_name, **inp.transforms)
    viewer.add_layer(layer)
    return layer


def write_plane(
    layer: Labels, inp: LayerInput, number: int, labels: np.ndarray, *, refresh: bool = True
) -> bool:
    """Write the labels of the ``number``-th plane of ``inp``'s stack into ``layer`` in place
    (and redraw it, with ``refresh``), if that plane still holds what the plugin last wrote
    there (:func:`holds_last_write`, plane by plane).

    For live updates of a big stack: one plane is checked and written instead of the whole
    stack (:func:`show_labels`), and what anyone paints in the other planes meanwhile stays
    (a plane painted in before the run reaches it is then refused in turn). Returns False,
    writing nothing, when the layer is no longer the run's for this plane (renamed, its data
    replaced, this plane painted in since): the caller then shows the run's labels in a new
    layer. The layer's data widens to the labels' dtype when needed.
    """
    if not _written_for(layer, inp) or not isinstance(layer.data, np.ndarray):
        return False
    record = layer.metadata[METADATA_KEY]
    dtype, shape, crcs = record["fingerprint"]
    key = _plane_key(inp.plan, number)
    if (layer.data.dtype.str, layer.data.shape) != (dtype, shape) or shape != inp.layer_shape:
        return False
    if _crc(layer.data[key]) != crcs[number]:
        return False
    if np.dtype(labels.dtype).itemsize > layer.data.dtype.itemsize:
        _widen(layer, inp, labels.dtype)
    layer.data[key] = _placed(inp.plan, labels)
    record["fingerprint"][2][number] = _crc(layer.data[key])
    if refresh:
        layer.refresh(extent=False)
    return True


def _widen(layer: Labels, inp: LayerInput, dtype: np.dtype) -> None:
    """Give a stack's labels layer a wider dtype (what anyone painted stays), keeping the
    planes edited since the plugin wrote them marked as edited in its record."""
    record = layer.metadata[METADATA_KEY]
    before = _fingerprint(layer.data, inp)[2]
    layer.data = layer.data.astype(dtype)
    dtype_str, shape, after = _fingerprint(layer.data, inp)
    kept = [
        a if b == c else EDITED
        for a, b, c in zip(after, before, record["fingerprint"][2], strict=True)
    ]
    record["fingerprint"] = (dtype_str, shape, kept)


def _plane_key(plan: PlanePlan, number: int) -> tuple[int | slice, ...]:
    """The index of a stack's ``number``-th plane (all of its channels) in the layer data."""
    return plan.plane_key(np.unravel_index(number, plan.stack_shape))


def _placed(plan: PlanePlan, labels: np.ndarray) -> np.ndarray:
    """A plane's labels with an axis of size 1 where the layer's channel axis lies among the
    plane axes, so that they broadcast over the channels (see :meth:`LayerInput.to_layer_data`)."""
    if plan.channel_axis is None:
        return labels
    return np.expand_dims(
        labels, sorted((plan.channel_axis, *plan.plane_axes)).index(plan.channel_axis)
    )
