"""Training data drawn as crops from a stack, a large image or a list of images.

One network for many planes or files is trained on crops: a pool of crops is sampled once
(seeded, each plane chosen in proportion to its area), read from the input region by region
(a lazy dask or zarr array is never loaded whole), normalised with intensity ranges measured
over all the data, and given its superpixels once; each iteration trains on a batch of crops
from the pool. Memory then follows the crop size, pool and batch, not the size of the input.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .memory import check_memory, estimate_bytes
from .normalize import (
    HIGH_PERCENTILE,
    LOW_PERCENTILE,
    RGB_FLOAT_SLACK,
    ImageLayout,
    Ranges,
    _shape_and_dtype,
    check_channel_axis_type,
    image_layout,
    prepare_image,
)
from .params import SegmentationParams
from .refine import SuperpixelRefiner, superpixels_for

#: Side of a square crop, in pixels (smaller where a plane is smaller). A crop holds
#: hundreds of the default preset's superpixels; see ``CropSampling`` for how it was chosen.
CROP_SIZE = 128
#: Crops sampled once, before training.
POOL_SIZE = 256
#: Crops per training iteration: with ``CROP_SIZE`` 128, about one BSDS500 photo's pixels.
BATCH_SIZE = 8
#: Pixels (times channels) read at once while the intensity ranges are measured.
RANGE_BLOCK_PIXELS = 2**22
#: Bins of the histogram from which the percentiles of non-integer data are read.
RANGE_BINS = 2**16


@dataclass(frozen=True)
class CropSampling:
    """How many crops of which size train the network.

    The defaults (``CROP_SIZE``, ``POOL_SIZE``, ``BATCH_SIZE``): a batch of 8 crops of
    128 x 128 pixels costs one iteration about what a whole 481 x 321 photo costs. Chosen by
    paired runs of ``benchmarks/crop_sampling.py`` (``default`` preset, 40 iterations, BSDS500
    train photos): on 4 photos, crops of 128 (batches of 8) scored higher in mIoU, SC and
    PRI than crops of 64 (batches of 32) or 192 (batches of 4) at about the same pixels per
    batch; on 10 photos, with crops of 128, a pool of 256 (which tiles them all) scored
    better in all four scores than pools of 96 and 32.
    """

    size: int = CROP_SIZE
    pool: int = POOL_SIZE
    batch: int = BATCH_SIZE

    def __post_init__(self) -> None:
        for name in ("size", "pool", "batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"crop {name} must be a positive integer, not {value!r}")
        if self.size < 2:
            raise ValueError("crop size must be at least 2 pixels")


@dataclass(frozen=True)
class Source:
    """One input array and where its planes, rows, columns and channels are."""

    array: Any
    name: str  # how an error names it: "image" or "images[i]"
    shape: tuple[int, ...]
    dtype: np.dtype
    channel_axis: int | None  # non-negative
    plane_axes: tuple[int, ...]  # the leading axes (z, time, ...)
    layout: ImageLayout

    @property
    def planes(self) -> Iterator[tuple[int, ...]]:
        """Index of every plane along ``plane_axes``."""
        return np.ndindex(*(self.shape[axis] for axis in self.plane_axes))

    def read(self, plane: tuple[int, ...], rows: slice, cols: slice) -> np.ndarray:
        """The region ``rows`` x ``cols`` of one plane, ``(h, w, C)`` or ``(h, w)``: only
        that region is read from a lazy array."""
        index: list[Any] = []
        spatial = iter((rows, cols))
        planes = iter(plane)
        for axis in range(len(self.shape)):
            if axis == self.channel_axis:
                index.append(slice(None))
            elif axis in self.plane_axes:
                index.append(next(planes))
            else:
                index.append(next(spatial))
        region = np.asarray(self.array[tuple(index)])
        if self.channel_axis is None:
            return region
        # the channel axis among the three axes left
        kept = [axis for axis in range(len(self.shape)) if axis not in self.plane_axes]
        return np.moveaxis(region, kept.index(self.channel_axis), -1)


@dataclass(frozen=True)
class TrainingData:
    """Every plane of every input, checked from shapes and dtypes alone."""

    sources: tuple[Source, ...]
    is_rgb: bool
    n_channels: int  # on the channel axis (RGBA's alpha included); 1 for grayscale

    @property
    def n_input_channels(self) -> int:
        """The network's input channels: 3 for colour, else every channel."""
        return 3 if self.is_rgb else self.n_channels

    @property
    def is_single_plane(self) -> bool:
        """One 2D image (with or without channels): whole-image training applies."""
        return len(self.sources) == 1 and not self.sources[0].plane_axes

    def planes(self) -> Iterator[tuple[Source, tuple[int, ...]]]:
        for source in self.sources:
            for plane in source.planes:
                yield source, plane

    def crop_shape(self, size: int) -> tuple[int, int]:
        """The crops' rows and columns: ``size``, or the smallest plane's side."""
        rows = min(source.layout.height for source in self.sources)
        cols = min(source.layout.width for source in self.sources)
        return min(size, rows), min(size, cols)


def training_data(
    images: Any, channel_axis: int | None = None, rgb: bool | None = None
) -> TrainingData:
    """Check ``images`` (one array, a stack, or a list of them) without reading pixels.

    Of an array's axes other than ``channel_axis``, the last two are a plane's rows and
    columns and any before them are planes. Every item of a list must have the same
    channels (and colour or not); their planes may differ in size. ValueError names the
    item that does not fit.
    """
    if channel_axis is not None:
        check_channel_axis_type(channel_axis)
    items = list(images) if isinstance(images, list | tuple) else [images]
    if not items:
        raise ValueError("no image to train on: the list is empty")
    named = len(items) > 1 or isinstance(images, list | tuple)
    sources = []
    for position, item in enumerate(items):
        name = f"images[{position}]" if named else "image"
        try:
            sources.append(_source(item, name, channel_axis, rgb))
        except ValueError as error:
            if not named:
                raise
            raise ValueError(f"{name}: {error}") from None
    first = sources[0]
    for source in sources[1:]:
        if (source.layout.n_channels, source.layout.is_rgb) != (
            first.layout.n_channels,
            first.layout.is_rgb,
        ):
            raise ValueError(
                f"{source.name} has {_describe(source.layout)} and {first.name} "
                f"{_describe(first.layout)}: every image must have the same channels"
            )
    return TrainingData(tuple(sources), first.layout.is_rgb, first.layout.n_channels)


def _source(item: Any, name: str, channel_axis: int | None, rgb: bool | None) -> Source:
    shape, dtype = _shape_and_dtype(item)
    array = item if hasattr(item, "__getitem__") and hasattr(item, "shape") else np.asarray(item)
    ndim = len(shape)
    n_plane_axes = 2 if channel_axis is None else 3
    if ndim < n_plane_axes:
        raise ValueError(
            f"an array of shape {shape} has no 2D plane"
            + ("" if channel_axis is None else f" with channels on axis {channel_axis}")
        )
    axis = None
    if channel_axis is not None:
        if not -ndim <= channel_axis < ndim:
            raise ValueError(f"channel_axis={channel_axis} is out of range for shape {shape}")
        axis = channel_axis % ndim
    others = [a for a in range(ndim) if a != axis]
    plane_axes = tuple(others[:-2])
    plane_shape = tuple(size for a, size in enumerate(shape) if a not in plane_axes)
    kept = [a for a in range(ndim) if a not in plane_axes]
    plane_channel_axis = None if axis is None else kept.index(axis)
    layout = image_layout(plane_shape, dtype, plane_channel_axis, rgb)
    return Source(array, name, shape, dtype, axis, plane_axes, layout)


def _describe(layout: ImageLayout) -> str:
    if layout.is_rgb:
        return f"colour ({layout.n_channels} channels)"
    return "1 channel" if layout.n_channels == 1 else f"{layout.n_channels} channels"


# ----------------------------------------------------------------------- intensity ranges


def intensity_ranges(data: TrainingData, stretch: bool = False) -> tuple[Ranges, bool]:
    """The intensity range of every channel (of the three together for colour) over all
    planes of all images, and whether all the data is constant.

    The ranges follow :func:`~.normalize.prepare_image`'s rules for one image, applied to
    all the data at once: uint8 is 0..255 (nothing is read); float colour within [0, 1] is
    taken as it is; anything else spans the 1st to the 99.8th percentile of all values.
    The data is read plane by plane in blocks of ``RANGE_BLOCK_PIXELS``: once for the
    extremes, once more for a histogram (exact for integers spanning up to ``RANGE_BINS``
    values) from which the percentiles are read. So one intensity gives one class in every
    plane and file. With ``stretch``, uint8 and float colour too span their percentiles
    (``prepare_image(..., stretch=True)``'s rule over all the data).
    """
    n_groups = 1 if data.is_rgb else data.n_channels
    if not stretch and all(source.dtype == np.uint8 for source in data.sources):
        return ((0.0, 255.0),) * n_groups, False
    low = np.full(n_groups, np.inf)
    high = np.full(n_groups, -np.inf)
    for block in _blocks(data):
        values = _groups(block, data.is_rgb)
        low = np.minimum(low, [group.min() for group in values])
        high = np.maximum(high, [group.max() for group in values])
    constant = bool(np.all(low == high))
    floats = all(s.dtype.kind == "f" for s in data.sources)
    in_unit = low[0] >= -RGB_FLOAT_SLACK and high[0] <= 1 + RGB_FLOAT_SLACK
    if not stretch and data.is_rgb and floats and in_unit:
        return ((0.0, 1.0),), constant
    integers = all(s.dtype.kind in "iu" for s in data.sources)
    bins = [_bins(lo, hi, integers) for lo, hi in zip(low, high, strict=True)]
    counts = [np.zeros(n, np.int64) for n, _ in bins]
    for block in _blocks(data):
        for group, (n, width), count, lo in zip(
            _groups(block, data.is_rgb), bins, counts, low, strict=True
        ):
            index = np.floor((group.astype(np.float64) - lo) / width).astype(np.int64)
            count += np.bincount(np.clip(index, 0, n - 1).ravel(), minlength=n)
    ranges = []
    for count, (_, width), lo, hi in zip(counts, bins, low, high, strict=True):
        start = _percentile(count, lo, width, integers, LOW_PERCENTILE)
        stop = _percentile(count, lo, width, integers, HIGH_PERCENTILE)
        ranges.append((start, stop) if stop > start else (float(lo), float(hi)))
    return tuple(ranges), constant


#: Most pixels of a plane read to measure its own percentiles (:func:`plane_ranges`); a
#: larger plane is read with a stride.
PLANE_RANGE_PIXELS = 2**22


def plane_ranges(source: Source, plane: tuple[int, ...], is_rgb: bool) -> Ranges:
    """One plane's own intensity ranges, as :func:`~.normalize.prepare_image` measures them
    with ``stretch=True``: its 1st to 99.8th percentile per channel (colour: all three
    together). A plane of more than ``PLANE_RANGE_PIXELS`` pixels is measured on every k-th
    row and column, so that memory stays bounded for a large scan."""
    height, width = source.layout.height, source.layout.width
    step = max(1, math.ceil(math.sqrt(height * width / PLANE_RANGE_PIXELS)))
    region = source.read(plane, slice(None, None, step), slice(None, None, step))
    channel_axis = None if source.channel_axis is None else -1
    return prepare_image(region, channel_axis, is_rgb, stretch=True).ranges


def _blocks(data: TrainingData) -> Iterator[np.ndarray]:
    """Every plane, as ``(h, w, C)`` blocks of whole rows, read in bounded pieces."""
    for source, plane in data.planes():
        layout = source.layout
        rows = max(1, RANGE_BLOCK_PIXELS // (layout.width * layout.n_channels))
        for top in range(0, layout.height, rows):
            block = source.read(plane, slice(top, top + rows), slice(None))
            block = block[..., np.newaxis] if block.ndim == 2 else block
            if block.dtype.kind == "f" and not np.all(np.isfinite(block)):
                raise ValueError(
                    f"{source.name} contains NaN or infinite values; replace them "
                    "(e.g. np.nan_to_num)"
                )
            yield block


def _groups(block: np.ndarray, is_rgb: bool) -> list[np.ndarray]:
    if is_rgb:
        return [block[..., :3]]
    return [block[..., channel] for channel in range(block.shape[-1])]


def _bins(low: float, high: float, integers: bool) -> tuple[int, float]:
    """Number and width of histogram bins between ``low`` and ``high``: one per integer
    value where that needs at most ``RANGE_BINS`` of them."""
    span = float(high) - float(low)
    if integers and span < RANGE_BINS:
        return int(span) + 1, 1.0
    return RANGE_BINS, (span / RANGE_BINS) or 1.0


def _percentile(counts: np.ndarray, low: float, width: float, integers: bool, q: float) -> float:
    """The ``q``-th percentile of the values counted in ``counts`` (numpy's linear rule:
    exact when every bin holds one integer value, else within a bin's width)."""
    cumulative = np.cumsum(counts)
    total = int(cumulative[-1])
    position = q / 100 * (total - 1)
    below = math.floor(position)

    def value(rank: int) -> float:
        index = int(np.searchsorted(cumulative, rank, side="right"))
        if integers and width == 1.0:
            return low + index
        before = cumulative[index - 1] if index else 0
        return low + (index + (rank - before + 0.5) / counts[index]) * width

    first = value(below)
    if position == below:
        return float(first)
    return float(first + (position - below) * (value(min(below + 1, total - 1)) - first))


# -------------------------------------------------------------------------------- the pool


@dataclass(frozen=True)
class CropSpot:
    """Where a crop is: its source, plane and top-left corner."""

    source: int
    plane: tuple[int, ...]
    top: int
    left: int


def sample_crops(
    data: TrainingData, sampling: CropSampling, rng: np.random.Generator
) -> list[CropSpot]:
    """Where the pool's crops are. Data that crops of the pool's size tile in
    ``sampling.pool`` crops or fewer is tiled (every pixel in a crop, none twice where the
    sides allow); otherwise ``sampling.pool`` crops are drawn, each crop's plane in
    proportion to its area, its corner uniformly within the plane. Sorted, so that nearby
    crops are read together."""
    rows, cols = data.crop_shape(sampling.size)
    planes = [
        (index, plane, source.layout)
        for index, source in enumerate(data.sources)
        for plane in source.planes
    ]
    n_tiles = sum(
        math.ceil(layout.height / rows) * math.ceil(layout.width / cols) for *_, layout in planes
    )
    if n_tiles <= sampling.pool:
        return [
            CropSpot(index, plane, top, left)
            for index, plane, layout in planes
            for top in _tile_starts(layout.height, rows)
            for left in _tile_starts(layout.width, cols)
        ]
    areas = np.array([layout.height * layout.width for *_, layout in planes], np.float64)
    chosen = rng.choice(len(planes), size=sampling.pool, p=areas / areas.sum())
    spots = []
    for choice in chosen:
        index, plane, layout = planes[choice]
        top = int(rng.integers(0, layout.height - rows + 1))
        left = int(rng.integers(0, layout.width - cols + 1))
        spots.append(CropSpot(index, plane, top, left))
    return sorted(spots, key=lambda spot: (spot.source, spot.plane, spot.top, spot.left))


def _tile_starts(length: int, size: int) -> list[int]:
    """Starts of crops of ``size`` that cover ``length``, the last one flush with the end."""
    starts = list(range(0, length - size + 1, size))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


class PooledCrops:
    """Crops' normalised pixels (or voxels) ``(P, C, *shape)`` and superpixels (numbered
    from 0 in each crop; ``n_superpixels`` per crop) on the training device, given to
    training in batches."""

    def __init__(
        self,
        pixels: np.ndarray,
        superpixels: np.ndarray,
        n_superpixels: np.ndarray,
        spots: Sequence[Any],
        settings: SegmentationParams,
        device: torch.device,
    ) -> None:
        self.pixels = torch.from_numpy(pixels).to(device)
        self.superpixels = torch.from_numpy(superpixels).to(device)
        self.n_superpixels = n_superpixels
        self.n_classes = settings.max_classes
        self.spots = list(spots)
        spatial = superpixels.ndim - 1
        self.memory_format = torch.channels_last if spatial == 2 else torch.channels_last_3d

    def __len__(self) -> int:
        return len(self.spots)

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, SuperpixelRefiner]:
        """The network's input (channels-last) and the refinement for the crops ``indices``."""
        chosen = torch.as_tensor(np.asarray(indices), device=self.pixels.device)
        pixels = self.pixels[chosen].contiguous(memory_format=self.memory_format)
        starts = np.concatenate([[0], np.cumsum(self.n_superpixels[list(indices)])[:-1]])
        shape = (-1,) + (1,) * (self.superpixels.ndim - 1)
        offsets = torch.as_tensor(starts, device=self.pixels.device).view(shape)
        superpixels = self.superpixels[chosen] + offsets
        return pixels, SuperpixelRefiner(superpixels, self.n_classes, pixels.device)

    def in_batches(self, size: int) -> Iterator[torch.Tensor]:
        """The whole pool as network inputs of ``size`` crops (the last may be smaller)."""
        for start in range(0, len(self), size):
            batch = self.pixels[start : start + size]
            yield batch.contiguous(memory_format=self.memory_format)


class CropPool(PooledCrops):
    """The crops' normalised pixels ``(P, C, h, w)`` and superpixels on the training device.

    Each crop is read once and gets its superpixels once: SLIC's count scaled to the crop's
    share of its plane, so that superpixels are as large as when the whole plane trains.
    With ``settings.stretch_contrast``, each crop is scaled by its own plane's percentiles
    (:func:`plane_ranges`) rather than by ``ranges``.
    """

    def __init__(
        self,
        data: TrainingData,
        spots: Sequence[CropSpot],
        shape: tuple[int, int],
        ranges: Ranges,
        settings: SegmentationParams,
        device: torch.device,
        spacing: tuple[float, float] | None = None,
    ) -> None:
        rows, cols = shape
        pixels = np.empty((len(spots), data.n_input_channels, rows, cols), np.float32)
        superpixels = np.empty((len(spots), rows, cols), np.int64)
        counts = np.empty(len(spots), np.int64)
        channel_axis = None if data.sources[0].channel_axis is None else -1
        own: dict[tuple[int, tuple[int, ...]], Ranges] = {}
        for position, spot in enumerate(spots):
            source = data.sources[spot.source]
            region = source.read(
                spot.plane,
                slice(spot.top, spot.top + rows),
                slice(spot.left, spot.left + cols),
            )
            crop_ranges = ranges
            if settings.stretch_contrast:
                key = (spot.source, spot.plane)
                if key not in own:
                    own[key] = plane_ranges(source, spot.plane, data.is_rgb)
                crop_ranges = own[key]
            crop = prepare_image(region, channel_axis, data.is_rgb, crop_ranges)
            share = rows * cols / (source.layout.height * source.layout.width)
            crop_superpixels = superpixels_for(crop, settings, share=share, spacing=spacing)
            pixels[position] = crop.channels.transpose(2, 0, 1)
            superpixels[position] = crop_superpixels
            counts[position] = int(crop_superpixels.max()) + 1
        super().__init__(pixels, superpixels, counts, spots, settings, device)


# ------------------------------------------------------------------------------ memory


def crop_training_bytes(
    sampling: CropSampling,
    shape: tuple[int, int],
    settings: SegmentationParams,
    n_input_channels: int,
) -> tuple[int, int]:
    """Peak memory of training on crops: (network, other) bytes, from the batch's pixels
    (one iteration is a whole-image iteration on ``batch`` crops) and the pool's pixels
    and superpixels; it depends on the crops, not on the size of the input."""
    rows, cols = shape
    network, other = estimate_bytes(rows, cols * sampling.batch, settings, n_input_channels)
    pool = sampling.pool * rows * cols * (4 * n_input_channels + 8)
    return network, other + pool


def check_crop_memory(
    sampling: CropSampling,
    shape: tuple[int, int],
    settings: SegmentationParams,
    n_input_channels: int,
    network_in_memory: bool,
) -> None:
    """MemoryError when even training on crops would not fit (see ``check_memory``)."""
    rows, cols = shape
    _, other = crop_training_bytes(sampling, shape, settings, n_input_channels)
    batch_other = estimate_bytes(rows, cols * sampling.batch, settings, n_input_channels)[1]
    check_memory(
        rows,
        cols * sampling.batch,
        settings,
        network_in_memory=network_in_memory,
        extra_bytes=other - batch_other,
        n_input_channels=n_input_channels,
    )


def fits_in_memory(
    layout: ImageLayout, settings: SegmentationParams, network_in_memory: bool
) -> bool:
    """Whether training on the whole image fits in the memory available now (the policy
    of :func:`~.plan.whole_image_fits`, which the widget and the console share); also True
    when that is unknown or the check is switched off."""
    from .plan import whole_image_fits

    n_input_channels = 3 if layout.is_rgb else layout.n_channels
    return whole_image_fits(
        layout.height,
        layout.width,
        settings,
        n_input_channels,
        network_in_memory=network_in_memory,
    )
