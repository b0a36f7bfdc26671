"""Volumes segmented as 3D objects (``spatial_ndim=3``).

The network's convolutions become 3x3x3 (BatchNorm3d), the superpixels 3D SLIC supervoxels
weighed by the voxel ``spacing``, and a label is one class of the network throughout the
volume, so an object keeps one label from plane to plane. Post-processing in 3D splits the
network's classes into face-connected 3D segments and joins those smaller than
``min_segment_size`` voxels to their neighbours; the 2D steps (graph-based cuts, boundary
merges, ``min_segment_width``) measure edges in a plane and are not run on volumes.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .crops import PooledCrops
from .labels import merge_small_segments, relabel_consecutive, split_connected_components
from .normalize import (
    PreparedImage,
    Ranges,
    channels_look_like_colour,
    check_channel_axis_type,
    image_layout,
    prepare_image,
)
from .params import SegmentationParams

if TYPE_CHECKING:
    from .train import FitStep, Step

#: The spatial axes an image may have: a 2D image (y, x) or a volume (z, y, x).
SPATIAL_NDIMS = (2, 3)


def check_spatial_ndim(spatial_ndim: object) -> int:
    """``spatial_ndim`` as an int, or ValueError unless it is 2 or 3."""
    if (
        not isinstance(spatial_ndim, numbers.Integral)
        or isinstance(spatial_ndim, bool | np.bool_)
        or int(spatial_ndim) not in SPATIAL_NDIMS
    ):
        raise ValueError(
            f"spatial_ndim must be 2 (images: y, x) or 3 (volumes: z, y, x); got {spatial_ndim!r}"
        )
    return int(spatial_ndim)


def check_spacing(spacing: object, spatial_ndim: int) -> tuple[float, ...] | None:
    """The voxel size along each spatial axis as floats, or None when it is isotropic (or
    not given): an isotropic spacing changes nothing. ValueError unless it is
    ``spatial_ndim`` finite numbers > 0."""
    if spacing is None:
        return None
    axes = "(dz, dy, dx)" if spatial_ndim == 3 else "(dy, dx)"
    try:
        values = tuple(float(value) for value in spacing)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        values = ()
    if (
        len(values) != spatial_ndim
        or any(isinstance(value, bool | np.bool_) for value in spacing)  # type: ignore[attr-defined]
        or not all(math.isfinite(value) and value > 0 for value in values)
    ):
        raise ValueError(
            f"spacing must be {spatial_ndim} sizes {axes} > 0, one per spatial axis; "
            f"got {spacing!r}"
        )
    return None if len(set(values)) == 1 else values


@dataclass(frozen=True)
class VolumeLayout:
    """What a volume stack's shape and dtype say, known before any voxel is read."""

    stack_shape: tuple[int, ...]  # the leading axes: volumes (time points, positions, ...)
    volume_shape: tuple[int, int, int]  # (depth, height, width)
    n_channels: int  # on the channel axis (RGBA's alpha included); 1 for grayscale
    is_rgb: bool


def volume_layout(
    shape: tuple[int, ...],
    dtype: np.dtype,
    channel_axis: int | None = None,
    rgb: bool | None = None,
    *,
    stack: bool = True,
) -> VolumeLayout:
    """Check a volume (``stack``: or a stack of them) of ``shape`` and ``dtype``: the last
    three axes other than ``channel_axis`` are z, y, x; any before them are volumes.

    ``rgb`` None guesses as for images: three channels last are colour, four uint8 ones
    RGBA, channels on any other axis independent. Raises ValueError for too few axes (or,
    without ``stack``, too many), a side under 2 voxels, and what
    :func:`~.normalize.image_layout` refuses (dtype, empty, ``rgb`` without 3 or 4
    channels); TypeError for a ``channel_axis`` that is not an integer.
    """
    shape = tuple(int(size) for size in shape)
    ndim = len(shape)
    n_axes = 3 if channel_axis is None else 4
    if channel_axis is not None:
        check_channel_axis_type(channel_axis)
        if not -ndim <= channel_axis < ndim:
            raise ValueError(
                f"channel_axis={channel_axis} is out of range for an image with {ndim} dimensions"
            )
    if ndim < n_axes or (not stack and ndim != n_axes):
        declared = "grayscale" if channel_axis is None else f"with channels on axis {channel_axis}"
        expected = f"{n_axes} dimensions" + ("" if not stack else " or more")
        raise ValueError(
            f"image has {ndim} dimensions {shape}, but spatial_ndim=3 {declared} needs "
            f"{expected}: (z, y, x){'' if channel_axis is None else ' and the channels'}"
            + ("" if stack else "; segment one volume at a time (fit takes a stack of them)")
        )
    if channel_axis is None:
        spatial, n_channels = shape, 1
        channels_were_last = False
    else:
        axis = channel_axis % ndim
        spatial = shape[:axis] + shape[axis + 1 :]
        n_channels = shape[axis]
        channels_were_last = axis == ndim - 1
    stack_shape, volume_shape = spatial[:-3], spatial[-3:]
    if rgb is None:
        rgb = channels_were_last and channels_look_like_colour(n_channels, dtype)
    if 0 not in shape and min(volume_shape) < 2:
        raise ValueError(
            f"volume is too small: its spatial shape (z, y, x) is {volume_shape}, and every "
            "side must be at least 2 voxels"
        )
    # dtype, emptiness and colour are checked as for an image: one plane of the volume
    plane = (volume_shape[1], volume_shape[2]) + (() if channel_axis is None else (n_channels,))
    image_layout(plane, dtype, None if channel_axis is None else -1, rgb)
    if 0 in shape:
        raise ValueError(f"image is empty (shape {shape})")
    return VolumeLayout(stack_shape, volume_shape, n_channels, bool(rgb))


def prepare_volumes(
    image: Any,
    channel_axis: int | None,
    layout: VolumeLayout,
    ranges: Ranges | None = None,
    stretch: bool = False,
) -> PreparedImage:
    """The volumes of ``image`` as one :class:`~.normalize.PreparedImage` whose channels are
    float32 ``(..., D, H, W, C)`` in [0, 1], scaled together (one range per channel over
    every voxel, as :func:`~.normalize.prepare_image` scales a plane, with ``stretch`` between
    their percentiles whatever the dtype), or by ``ranges``."""
    array = np.asarray(image)
    array = array[..., np.newaxis] if channel_axis is None else np.moveaxis(array, channel_axis, -1)
    spatial = array.shape[:-1]
    # one tall plane holds every voxel: prepare_image then scales them as one image
    flat = array.reshape(-1, spatial[-1], array.shape[-1])
    prepared = prepare_image(flat, -1, layout.is_rgb, ranges, stretch=stretch)
    channels = prepared.channels.reshape(*spatial, prepared.channels.shape[-1])
    return PreparedImage(channels=channels, is_rgb=prepared.is_rgb, ranges=prepared.ranges)


def _asks_post_processing(settings: SegmentationParams) -> bool:
    """Whether ``settings`` ask for more than one label per class of the network."""
    return settings.label_by == "segment"


class VolumeFinisher:
    """Post-processing of a volume's classes (the interface of
    :class:`~.postprocess.LabelFinisher`, with no image-level maps to make).

    With ``label_by='class'`` every class of the network is one label. With
    ``label_by='segment'``, labels are the face-connected 3D segments of the classes, and
    segments under ``min_segment_size`` voxels join the nearest large one; the 2D steps
    (``cut_scale``, ``merge``, ``min_segment_width``) are not run. With
    ``label_by='object'``, one label per 3D object and 0 for background, its distance
    transform measured with ``spacing`` (the voxel size along z, y, x; None: equal) and its
    background found from ``brightness`` (one value per voxel) where the settings say so.
    """

    maps_ready = True

    def __init__(
        self,
        settings: SegmentationParams,
        spacing: tuple[float, ...] | None = None,
        brightness: np.ndarray | None = None,
    ) -> None:
        self.settings = settings
        self.spacing = spacing
        self.brightness = brightness

    def make_maps(self, settings: SegmentationParams | None = None) -> None:
        """Nothing to make: the 3D steps need the labels only."""

    def make_maps_in_background(self) -> None:
        """Nothing to make: the 3D steps need the labels only."""

    def preview(self, prediction: np.ndarray) -> np.ndarray:
        """The finished labels (they need no maps)."""
        return self(prediction)

    def __call__(
        self, prediction: np.ndarray, settings: SegmentationParams | None = None
    ) -> np.ndarray:
        """Labels 1..n of a volume's classes (0: background of objects), smallest unsigned
        dtype."""
        from .postprocess import finish_objects

        settings = settings or self.settings
        if settings.label_by == "object":
            return finish_objects(prediction, settings, self.spacing, intensity=self.brightness)
        if not _asks_post_processing(settings):
            return relabel_consecutive(prediction)
        if (settings.min_segment_size or 0) > 1:
            return merge_small_segments(prediction, settings.min_segment_size)
        return split_connected_components(prediction)


def check_volume_settings(settings: SegmentationParams) -> None:
    """ValueError, before any work, for settings made for 2D images only."""
    if settings.superpixels == "graph":
        raise ValueError(
            "graph-based superpixels (superpixels='graph') are made for 2D images only; a "
            "volume is refined by 3D SLIC supervoxels: set superpixels='slic'"
        )


def iter_volume_steps(
    image: Any,
    settings: SegmentationParams,
    *,
    channel_axis: int | None,
    rgb: bool | None,
    spacing: tuple[float, ...] | None,
) -> Iterator[Step]:
    """:func:`~napari_unsupervised_segmentation.iter_segment` for one volume: self-training
    on the whole volume, each step with the volume's labels; the image, the settings and the
    memory are checked before any training."""
    from .devices import resolve_device
    from .memory import check_volume_memory
    from .train import Step

    check_volume_settings(settings)
    spacing = check_spacing(spacing, 3)
    layout = volume_layout(np.shape(image), _dtype_of(image), channel_axis, rgb, stack=False)
    device = resolve_device(settings.device)
    check_volume_memory(
        layout.volume_shape,
        settings,
        network_in_memory=device.type in ("cpu", "mps"),
        n_input_channels=layout.n_channels,
    )
    prepared = prepare_volumes(image, channel_axis, layout, stretch=settings.stretch_contrast)
    fitting = fit_whole_volumes(prepared.channels[np.newaxis], prepared, settings, device, spacing)
    finish = VolumeFinisher(settings, spacing, prepared.channels.mean(axis=-1))
    return (Step(fitted, finish) for fitted in fitting)


def iter_fit_volumes(
    images: Any,
    settings: SegmentationParams,
    channel_axis: int | None,
    rgb: bool | None,
    spacing: Any,
    crops: Any,
) -> Iterator[FitStep]:
    """:func:`~napari_unsupervised_segmentation.iter_fit` for volumes.

    ``images``: a volume, a stack of volumes (axes before z, y, x) or a list of them with
    the same channels. One volume that fits in memory trains whole, as
    :func:`~napari_unsupervised_segmentation.segment` trains on it; anything else trains on
    3D crops (``crops`` None or True: cubes of ``VOLUME_CROP_SIZE``, ``VOLUME_POOL_SIZE``
    in the pool, ``VOLUME_BATCH_SIZE`` per iteration; a ``CropSampling``: cubes of its
    ``size``, its pool and batch). ``crops=False`` trains on every volume at once, one
    batch (volumes of one shape only; MemoryError when they would not fit).
    """
    from .crops import CropSampling, intensity_ranges
    from .devices import resolve_device

    check_volume_settings(settings)
    spacing = check_spacing(spacing, 3)
    device = resolve_device(settings.device)
    network_in_memory = device.type in ("cpu", "mps")
    data = volume_training_data(images, channel_axis, rgb)
    n_input_channels = 3 if data.is_rgb else data.n_channels
    if crops is False or (crops is None and data.is_single_volume and data.fits(settings)):
        return _fit_all_at_once(images, data, settings, device, spacing)
    sampling = crops if isinstance(crops, CropSampling) else _volume_crops()
    shape = data.crop_shape(sampling.size)
    check_volume_crop_memory(sampling, shape, settings, n_input_channels, network_in_memory)
    ranges, constant = intensity_ranges(data.planes, stretch=settings.stretch_contrast)
    return fit_volume_crops(data, ranges, constant, sampling, shape, settings, device, spacing)


def _fit_all_at_once(
    images: Any,
    data: VolumeData,
    settings: SegmentationParams,
    device: torch.device,
    spacing: tuple[float, ...] | None,
) -> Iterator[FitStep]:
    """Every volume trains at once (one batch): their shapes must agree."""
    from .memory import check_volume_memory

    shapes = {source.layout.volume_shape for source in data.sources}
    if len(shapes) > 1:
        raise ValueError(
            f"crops=False trains on every volume at once, which needs one volume shape; "
            f"these have {sorted(shapes)}: train on crops instead"
        )
    n_volumes = sum(math.prod(source.layout.stack_shape) for source in data.sources)
    check_volume_memory(
        shapes.pop(),
        settings,
        n_volumes=n_volumes,
        network_in_memory=device.type in ("cpu", "mps"),
        n_input_channels=data.n_channels,
    )
    items = images if isinstance(images, list | tuple) else [images]
    if len(items) == 1:
        source = data.sources[0]
        prepared = prepare_volumes(
            items[0], source.channel_axis, source.layout, stretch=settings.stretch_contrast
        )
    else:  # one range over all of them, as for one stack
        prepared = prepare_volumes(
            _stacked(items, data), -1, data.sources[0].layout, stretch=settings.stretch_contrast
        )
    volumes = prepared.channels.reshape(-1, *prepared.channels.shape[-4:])
    return fit_whole_volumes(volumes, prepared, settings, device, spacing)


def _stacked(items: list[Any], data: VolumeData) -> np.ndarray:
    """The volumes of every item, channels last, as one ``(N, D, H, W, C)`` array."""
    volumes = []
    for item, source in zip(items, data.sources, strict=True):
        array = np.asarray(item)
        array = array[..., np.newaxis] if source.channel_axis is None else array
        array = np.moveaxis(array, -1 if source.channel_axis is None else source.channel_axis, -1)
        volumes.append(array.reshape(-1, *array.shape[-4:]))
    return np.concatenate(volumes)


def _dtype_of(image: Any) -> np.dtype:
    dtype = getattr(image, "dtype", None)
    try:
        return np.dtype(dtype) if dtype is not None else np.asarray(image).dtype
    except TypeError:  # a dtype numpy does not know (a torch tensor's)
        return np.asarray(image).dtype


def fit_whole_volumes(
    volumes: np.ndarray,
    prepared: PreparedImage,
    settings: SegmentationParams,
    device: torch.device,
    spacing: tuple[float, ...] | None,
) -> Iterator[FitStep]:
    """Train on ``(N, D, H, W, C)`` prepared volumes, all of them every iteration: their
    supervoxels once, numbered on from volume to volume."""
    from .refine import superpixels_for
    from .train import blank_step, fit_whole

    if prepared.is_constant:
        yield blank_step(volumes.shape[:-1])
        return
    supervoxels, offset = [], 0
    for volume in volumes:
        one = PreparedImage(volume, prepared.is_rgb, prepared.ranges)
        labels = superpixels_for(one, settings, spacing=spacing)
        supervoxels.append(labels + offset)
        offset += int(labels.max()) + 1
    yield from fit_whole(
        np.stack(supervoxels),
        partial(volume_tensor, volumes, device),
        volumes.shape[-1],
        prepared.is_rgb,
        prepared.ranges,
        settings,
        device,
        ndim=3,
    )


def volume_tensor(volumes: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(N, D, H, W, C)`` volumes as the network's ``(N, C, D, H, W)`` channels-last input."""
    voxels = torch.from_numpy(np.ascontiguousarray(volumes)).permute(0, 4, 1, 2, 3)
    return voxels.to(device).contiguous(memory_format=torch.channels_last_3d)


# ----------------------------------------------------------------------------- 3D crops


#: Crops of volumes: cubes of 32 voxels, 48 in the pool, 4 per iteration (a batch of
#: 131 072 voxels, the pixels of a batch of 2D crops).
VOLUME_CROP_SIZE = 32
VOLUME_POOL_SIZE = 48
VOLUME_BATCH_SIZE = 4


def _volume_crops() -> Any:
    from .crops import CropSampling

    return CropSampling(VOLUME_CROP_SIZE, VOLUME_POOL_SIZE, VOLUME_BATCH_SIZE)


class VolumeSource:
    """One input array and where its volumes, z, y, x and channels are."""

    def __init__(self, array: Any, name: str, channel_axis: int | None, layout: VolumeLayout):
        self.array = array
        self.name = name
        self.channel_axis = channel_axis  # non-negative
        self.layout = layout
        ndim = len(np.shape(array))
        others = [axis for axis in range(ndim) if axis != channel_axis]
        self.stack_axes = tuple(others[:-3])
        self.spatial_axes = tuple(others[-3:])

    @property
    def volumes(self) -> Iterator[tuple[int, ...]]:
        """Index of every volume along the stack axes."""
        return np.ndindex(*self.layout.stack_shape)

    def read(self, volume: tuple[int, ...], region: tuple[slice, slice, slice]) -> np.ndarray:
        """The ``region`` (z, y, x slices) of one volume, ``(d, h, w, C)`` (C 1 for
        grayscale): only that region is read from a lazy array."""
        index: list[Any] = [slice(None)] * len(np.shape(self.array))
        for axis, position in zip(self.stack_axes, volume, strict=True):
            index[axis] = position
        for axis, part in zip(self.spatial_axes, region, strict=True):
            index[axis] = part
        block = np.asarray(self.array[tuple(index)])
        if self.channel_axis is None:
            return block[..., np.newaxis]
        kept = [axis for axis in range(len(index)) if axis not in self.stack_axes]
        return np.moveaxis(block, kept.index(self.channel_axis), -1)


@dataclass(frozen=True)
class VolumeData:
    """Every volume of every input, checked from shapes and dtypes alone; ``planes`` is the
    same data seen as 2D planes (z among the plane axes), whose intensity ranges are the
    volumes' (:func:`~.crops.intensity_ranges`)."""

    sources: tuple[VolumeSource, ...]
    planes: Any  # crops.TrainingData
    is_rgb: bool
    n_channels: int

    @property
    def is_single_volume(self) -> bool:
        return len(self.sources) == 1 and not self.sources[0].layout.stack_shape

    def fits(self, settings: SegmentationParams) -> bool:
        """Whether the one volume trains whole in the memory available now (True when
        that is unknown or the check is switched off)."""
        import os

        from .memory import SWITCH, available_memory, estimate_volume_bytes

        free = available_memory()
        if free is None or os.environ.get(SWITCH, "").strip() == "0":
            return True
        layout = self.sources[0].layout
        network, other = estimate_volume_bytes(layout.volume_shape, settings, self.n_channels)
        return network + other <= free

    def crop_shape(self, size: int) -> tuple[int, int, int]:
        """The crops' (z, y, x) sides: ``size``, or the smallest volume's side."""
        sides = [source.layout.volume_shape for source in self.sources]
        return tuple(min(size, *(shape[axis] for shape in sides)) for axis in range(3))  # type: ignore[return-value]


def volume_training_data(
    images: Any, channel_axis: int | None = None, rgb: bool | None = None
) -> VolumeData:
    """Check ``images`` (a volume, a stack of volumes, or a list of them with the same
    channels) without reading voxels; ValueError names the list item that does not fit."""
    from .crops import training_data

    items = list(images) if isinstance(images, list | tuple) else [images]
    named = isinstance(images, list | tuple)
    sources = []
    for position, item in enumerate(items):
        name = f"images[{position}]" if named else "image"
        try:
            layout = volume_layout(np.shape(item), _dtype_of(item), channel_axis, rgb)
        except ValueError as error:
            raise ValueError(f"{name}: {error}" if named else str(error)) from None
        lazy = hasattr(item, "__getitem__") and hasattr(item, "shape")
        array = item if lazy else np.asarray(item)
        axis = None if channel_axis is None else channel_axis % len(np.shape(item))
        sources.append(VolumeSource(array, name, axis, layout))
    planes = training_data([source.array for source in sources], channel_axis, rgb)
    return VolumeData(tuple(sources), planes, planes.is_rgb, planes.n_channels)


@dataclass(frozen=True)
class VolumeCropSpot:
    """Where a 3D crop is: its source, volume and corner (z, y, x)."""

    source: int
    volume: tuple[int, ...]
    corner: tuple[int, int, int]


def sample_volume_crops(
    data: VolumeData, sampling: Any, shape: tuple[int, int, int], rng: np.random.Generator
) -> list[VolumeCropSpot]:
    """Where the pool's 3D crops are: data that ``sampling.pool`` crops or fewer tile is
    tiled; otherwise ``sampling.pool`` crops are drawn, each one's volume in proportion to
    its size, its corner uniformly within the volume. Sorted, so nearby crops are read
    together."""
    from .crops import _tile_starts

    volumes = [
        (index, volume, source.layout.volume_shape)
        for index, source in enumerate(data.sources)
        for volume in source.volumes
    ]
    n_tiles = sum(
        math.prod(math.ceil(side / crop) for side, crop in zip(sides, shape, strict=True))
        for *_, sides in volumes
    )
    if n_tiles <= sampling.pool:
        return [
            VolumeCropSpot(index, volume, corner)
            for index, volume, sides in volumes
            for corner in itertools.product(
                *(_tile_starts(side, crop) for side, crop in zip(sides, shape, strict=True))
            )
        ]
    sizes = np.array([math.prod(sides) for *_, sides in volumes], np.float64)
    chosen = rng.choice(len(volumes), size=sampling.pool, p=sizes / sizes.sum())
    spots = []
    for choice in chosen:
        index, volume, sides = volumes[choice]
        corner = tuple(
            int(rng.integers(0, side - crop + 1)) for side, crop in zip(sides, shape, strict=True)
        )
        spots.append(VolumeCropSpot(index, volume, corner))  # type: ignore[arg-type]
    return sorted(spots, key=lambda spot: (spot.source, spot.volume, spot.corner))


class VolumeCropPool(PooledCrops):
    """The 3D crops' normalised voxels ``(P, C, d, h, w)`` and supervoxels on the training
    device, each crop read once and given its supervoxels once (SLIC's count scaled to the
    crop's share of its volume)."""

    def __init__(
        self,
        data: VolumeData,
        spots: list[VolumeCropSpot],
        shape: tuple[int, int, int],
        ranges: Ranges,
        settings: SegmentationParams,
        device: torch.device,
        spacing: tuple[float, ...] | None,
    ) -> None:
        from .refine import superpixels_for

        n_input_channels = 3 if data.is_rgb else data.n_channels
        voxels = np.empty((len(spots), n_input_channels, *shape), np.float32)
        supervoxels = np.empty((len(spots), *shape), np.int64)
        counts = np.empty(len(spots), np.int64)
        crop_layout = VolumeLayout((), shape, data.n_channels, data.is_rgb)
        for position, spot in enumerate(spots):
            source = data.sources[spot.source]
            region = tuple(
                slice(start, start + side) for start, side in zip(spot.corner, shape, strict=True)
            )
            block = source.read(spot.volume, region)  # type: ignore[arg-type]
            crop = prepare_volumes(block, -1, crop_layout, ranges)
            share = math.prod(shape) / math.prod(source.layout.volume_shape)
            labels = superpixels_for(crop, settings, share=share, spacing=spacing)
            voxels[position] = crop.channels.transpose(3, 0, 1, 2)
            supervoxels[position] = labels
            counts[position] = int(labels.max()) + 1
        super().__init__(voxels, supervoxels, counts, spots, settings, device)


def fit_volume_crops(
    data: VolumeData,
    ranges: Ranges,
    constant: bool,
    sampling: Any,
    shape: tuple[int, int, int],
    settings: SegmentationParams,
    device: torch.device,
    spacing: tuple[float, ...] | None,
) -> Iterator[FitStep]:
    """Train on 3D crops: a pool sampled once across all volumes, a batch of it every
    iteration; BatchNorm's statistics are measured over the whole pool at the end."""
    from .train import fit_pool

    def make_pool(rng: np.random.Generator) -> VolumeCropPool:
        spots = sample_volume_crops(data, sampling, shape, rng)
        return VolumeCropPool(data, spots, shape, ranges, settings, device, spacing)

    n_input_channels = 3 if data.is_rgb else data.n_channels
    return fit_pool(
        make_pool, shape, constant, n_input_channels, data.is_rgb, ranges, sampling, settings,
        device,
    )  # fmt: skip


def check_volume_crop_memory(
    sampling: Any,
    shape: tuple[int, int, int],
    settings: SegmentationParams,
    n_input_channels: int,
    network_in_memory: bool,
) -> None:
    """MemoryError when even training on 3D crops would not fit: a batch of crops trains
    as that many volumes at once, beside the pool's voxels and supervoxels."""
    from .memory import check_volume_memory

    pool = sampling.pool * math.prod(shape) * (4 * n_input_channels + 8)
    check_volume_memory(
        shape,
        settings,
        n_volumes=sampling.batch,
        network_in_memory=network_in_memory,
        n_input_channels=n_input_channels,
        extra_bytes=pool,
    )
