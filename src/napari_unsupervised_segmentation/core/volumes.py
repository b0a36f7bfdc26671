"""Volumes segmented as 3D objects (``spatial_ndim=3``).

The network's convolutions become 3x3x3 (BatchNorm3d), the superpixels 3D SLIC supervoxels
weighed by the voxel ``spacing``, and a label is one class of the network throughout the
volume, so an object keeps one label from plane to plane. Post-processing in 3D splits the
network's classes into face-connected 3D segments and joins those smaller than
``min_segment_size`` voxels to their neighbours; the 2D steps (graph-based cuts, boundary
merges, ``min_segment_width``) measure edges in a plane and are not run on volumes.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

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
    from .fitted import SegmentationModel
    from .model import SegmentationNet
    from .train import Step

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
) -> PreparedImage:
    """The volumes of ``image`` as one :class:`~.normalize.PreparedImage` whose channels are
    float32 ``(..., D, H, W, C)`` in [0, 1], scaled together (one range per channel over
    every voxel, as :func:`~.normalize.prepare_image` scales a plane), or by ``ranges``."""
    array = np.asarray(image)
    array = array[..., np.newaxis] if channel_axis is None else np.moveaxis(array, channel_axis, -1)
    spatial = array.shape[:-1]
    # one tall plane holds every voxel: prepare_image then scales them as one image
    flat = array.reshape(-1, spatial[-1], array.shape[-1])
    prepared = prepare_image(flat, -1, layout.is_rgb, ranges)
    channels = prepared.channels.reshape(*spatial, prepared.channels.shape[-1])
    return PreparedImage(channels=channels, is_rgb=prepared.is_rgb, ranges=prepared.ranges)


def _asks_post_processing(settings: SegmentationParams) -> bool:
    """Whether ``settings`` ask for more than one label per class of the network."""
    return bool(
        settings.connected_components
        or settings.merge_threshold
        or settings.max_segments
        or settings.min_segment_size
        or settings.min_segment_width
        or settings.graph_scale
    )


class VolumeFinisher:
    """Post-processing of a volume's classes (the interface of
    :class:`~.postprocess.LabelFinisher`, with no image-level maps to make).

    Without post-processing, every class of the network is one label. With any
    post-processing setting, labels are the face-connected 3D segments of the classes, and
    segments under ``min_segment_size`` voxels join the nearest large one; the 2D steps
    (``graph_scale``, ``merge_threshold``, ``max_segments``, ``min_segment_width``) are not run.
    """

    maps_ready = True

    def __init__(self, settings: SegmentationParams) -> None:
        self.settings = settings

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
        """Labels 1..n of a volume's classes, smallest unsigned dtype."""
        settings = settings or self.settings
        if not _asks_post_processing(settings):
            return relabel_consecutive(prediction)
        if settings.min_segment_size > 1:
            return merge_small_segments(prediction, settings.min_segment_size)
        return split_connected_components(prediction)


def check_volume_settings(settings: SegmentationParams) -> None:
    """ValueError, before any work, for settings made for 2D images only."""
    if settings.superpixel_graph_scale > 0:
        raise ValueError(
            "graph-based superpixels (superpixel_graph_scale > 0) are made for 2D images "
            "only; a volume is refined by 3D SLIC supervoxels: set superpixel_graph_scale=0"
        )


def iter_volume_steps(
    image: Any,
    settings: SegmentationParams,
    *,
    channel_axis: int | None,
    rgb: bool | None,
    spacing: tuple[float, ...] | None,
    stack: bool,
) -> Iterator[Step]:
    """Self-training on one volume (``stack``: on every volume of a stack at once, one
    batch, so that BatchNorm's statistics are those of all of them); checks the image, the
    settings and the memory before any training. The steps' ``labels`` are those of the
    first volume."""
    from .devices import resolve_device
    from .memory import check_volume_memory

    check_volume_settings(settings)
    spacing = check_spacing(spacing, 3)
    layout = volume_layout(np.shape(image), _dtype_of(image), channel_axis, rgb, stack=stack)
    device = resolve_device(settings.device)
    check_volume_memory(
        layout.volume_shape,
        settings,
        n_volumes=math.prod(layout.stack_shape),
        network_in_memory=device.type in ("cpu", "mps"),
        n_input_channels=layout.n_channels,
    )
    prepared = prepare_volumes(image, channel_axis, layout)
    volumes = prepared.channels.reshape(-1, *prepared.channels.shape[-4:])
    return _train_volumes(volumes, prepared, settings, device, spacing)


def _dtype_of(image: Any) -> np.dtype:
    dtype = getattr(image, "dtype", None)
    try:
        return np.dtype(dtype) if dtype is not None else np.asarray(image).dtype
    except TypeError:  # a dtype numpy does not know (a torch tensor's)
        return np.asarray(image).dtype


def _train_volumes(
    volumes: np.ndarray,
    prepared: PreparedImage,
    settings: SegmentationParams,
    device: torch.device,
    spacing: tuple[float, ...] | None,
) -> Iterator[Step]:
    from .devices import autograd_enabled
    from .optim import MomentumSGD
    from .refine import SuperpixelRefiner, compute_superpixels
    from .train import Step, build_model, training_steps

    finish = VolumeFinisher(settings)
    if prepared.is_constant:
        # Nothing to separate; the network would only draw its zero-padding border.
        blank = torch.zeros(volumes.shape[1:-1], dtype=torch.int64)
        yield Step(1, 1, True, blank, torch.zeros(()), finish)
        return
    # supervoxels of each volume, numbered on from the previous volume's
    supervoxels, offset = [], 0
    for volume in volumes:
        one = PreparedImage(volume, prepared.is_rgb, prepared.ranges)
        labels = compute_superpixels(
            one, settings.n_superpixels, settings.compactness, 0.0, spacing
        )
        supervoxels.append(labels + offset)
        offset += int(labels.max()) + 1
    n_input_channels = volumes.shape[-1]
    with autograd_enabled():  # tensors made under the caller's inference_mode cannot train
        refine = SuperpixelRefiner(np.stack(supervoxels), settings.n_channels, device)
        model = build_model(n_input_channels, settings, device, ndim=3)
        optimizer = MomentumSGD(model.parameters(), lr=settings.lr, momentum=settings.momentum)
        voxels = volume_tensor(volumes, device)
    snapshot = partial(snapshot_volume_model, voxels=voxels, settings=settings, image=prepared)
    yield from training_steps(model, optimizer, voxels, refine, settings, finish, snapshot)


def volume_tensor(volumes: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(N, D, H, W, C)`` volumes as the network's ``(N, C, D, H, W)`` channels-last input."""
    voxels = torch.from_numpy(np.ascontiguousarray(volumes)).permute(0, 4, 1, 2, 3)
    return voxels.to(device).contiguous(memory_format=torch.channels_last_3d)


def snapshot_volume_model(
    network: SegmentationNet,
    voxels: torch.Tensor,
    settings: SegmentationParams,
    image: PreparedImage,
) -> SegmentationModel:
    """A copy of the 3D ``network`` as it is now, with BatchNorm statistics measured over all
    training ``voxels`` (so that it labels them as training did), in eval mode on the CPU."""
    from .fitted import SegmentationModel

    frozen = copy.deepcopy(network)
    for module in frozen.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the batches seen
    frozen.train()
    with torch.no_grad():
        frozen(voxels)
    frozen.eval()
    frozen = frozen.to("cpu", memory_format=torch.contiguous_format)
    return SegmentationModel(
        frozen, settings, image.channels.shape[-1], image.is_rgb, image.ranges, spatial_ndim=3
    )
