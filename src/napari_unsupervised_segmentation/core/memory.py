"""How much memory a run needs, checked before training so that a huge image fails with a
message instead of driving the machine into swap or the out-of-memory killer (which would
take napari, and any unsaved work in it, down)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from .params import SegmentationParams

#: Set to ``0`` to switch the check off (an estimate can be wrong; the run may then swap).
SWITCH = "UNSUPERVISED_SEGMENTATION_MEMORY_CHECK"

#: float32 feature maps kept per channel and pixel for the backward pass: a conv output,
#: its ReLU and BatchNorm outputs for each of the ``n_conv`` blocks, and the classifier's
#: response, BatchNorm output and gradient.
_MAPS_PER_BLOCK, _MAPS_CLASSIFIER = 3, 3
#: The rest per pixel of a three-channel (RGB) image, on the CPU whatever the device: input
#: channels, SLIC, labels and post-processing maps (an upper bound from the measurements
#: below).
_OTHER_BYTES_PER_PIXEL = 256
#: Per pixel and input channel: the float32 normalised channels (and their per-channel
#: pieces before they are stacked), SLIC's features and the network's input. Measured on
#: the ``paper`` preset as the growth of the peak resident memory per added channel: 7.5 to
#: 14.3 bytes at 200 x 200 pixels (3, 300 and 1500 channels), 11.4 at 400 x 400 (3 and 750).
_BYTES_PER_PIXEL_AND_CHANNEL = 16
#: More per pixel and channel when segments are joined across texture boundaries (the
#: ``default`` preset): each channel's bin map, edge map and segment histograms. Measured
#: 29 bytes in all at 64 x 64 pixels between 3 and 1500 channels, with glibc's heap kept
#: from holding freed memory (``MALLOC_MMAP_THRESHOLD_=131072``); with glibc's defaults that
#: run's peak is 4.6 times as high (freed per-channel maps stay in the heap).
_TEXTURE_MERGE_BYTES_PER_PIXEL_AND_CHANNEL = 24
#: The input channels the fitted constants were measured with (RGB photos).
_FITTED_CHANNELS = 3


def estimate_bytes(
    height: int, width: int, settings: SegmentationParams, n_input_channels: int = 3
) -> tuple[int, int]:
    """Peak memory of training on an ``height`` x ``width`` image with ``n_input_channels``
    channels: (network, other) bytes.

    The network part lives on the training device; the other part in the computer's memory.
    Fitted on the 2-core CPU of the project's benchmarks (coffee sample resized to 0.96 and
    2.16 megapixels, growth of the peak resident memory: 1120 and 2514 MiB for the
    ``default`` preset, 3379 and 7563 MiB for ``paper``): 1.22 kB per pixel for ``default``
    (estimate 1.41) and 3.67 kB for ``paper`` (estimate 3.86). Every channel more (or
    fewer) than those photos' three adds (or takes) its per-pixel share: a 200 x 200 image
    with 1500 channels grew by 982 MiB with ``paper`` (estimate 1061 MiB).
    """
    pixels = int(height) * int(width)
    maps = _MAPS_PER_BLOCK * settings.n_conv + _MAPS_CLASSIFIER
    per_channel = _BYTES_PER_PIXEL_AND_CHANNEL
    if settings.merge == "texture":
        per_channel += _TEXTURE_MERGE_BYTES_PER_PIXEL_AND_CHANNEL
    other = _OTHER_BYTES_PER_PIXEL + per_channel * (int(n_input_channels) - _FITTED_CHANNELS)
    return pixels * 4 * settings.max_classes * maps, pixels * other


def available_memory() -> int | None:
    """Bytes of memory the system can give without swapping (psutil), or None if unknown.

    On macOS psutil's "available" leaves out memory the system would free on demand
    (purgeable, compressible), so there the total is used: only what cannot fit at all is
    refused.
    """
    try:
        import psutil
    except ImportError:  # napari installs psutil; a bare engine install may lack it
        return None
    memory = psutil.virtual_memory()
    return int(memory.total if sys.platform == "darwin" else memory.available)


def check_memory(
    height: int,
    width: int,
    settings: SegmentationParams,
    *,
    network_in_memory: bool = True,
    extra_bytes: int = 0,
    planes: int = 1,
    n_input_channels: int = 3,
) -> None:
    """Raise MemoryError when a run would need more memory than is available.

    ``network_in_memory``: the network trains on the CPU or on Apple's MPS (which shares the
    computer's memory). For a CUDA device only the computer's share is checked: CUDA
    reports its own out-of-memory error without harm to the process. ``extra_bytes``: held
    beside one plane's training (the copy and labels of a stack of ``planes`` planes).
    ``n_input_channels``: the image's channels (1 for grayscale; each costs memory, which
    counts for hyperspectral images); 3 when not given, as the estimate was fitted on RGB.
    """
    shortage = _shortage(
        lambda: estimate_bytes(height, width, settings, n_input_channels),
        network_in_memory,
        extra_bytes,
    )
    if shortage is None:
        return
    plane = f"{height} x {width}"
    what = f"stack of {planes} {plane} planes" if planes > 1 else f"{plane} image"
    one_plane = "the plane shown only, " if planes > 1 else ""
    raise _memory_error(what, n_input_channels, *shortage, settings, one_plane, True)


def _shortage(
    estimate: Callable[[], tuple[int, int]], network_in_memory: bool, extra_bytes: int
) -> tuple[int, int] | None:
    """(needed, free) bytes when a run of ``estimate()`` (network, other) bytes, with
    ``extra_bytes`` beside, needs more memory than is available; None when it fits, when
    the available memory is unknown or when the check is switched off."""
    free = available_memory()
    if free is None or os.environ.get(SWITCH, "").strip() == "0":
        return None
    network, other = estimate()
    needed = other + (network if network_in_memory else 0) + extra_bytes
    return None if needed <= free else (needed, free)


def _memory_error(
    what: str,
    n_input_channels: int,
    needed: int,
    free: int,
    settings: SegmentationParams,
    smaller: str,
    fewer_channels: bool,
) -> MemoryError:
    """The error refusing a run on ``what`` (e.g. "64 x 64 image") that needs ``needed``
    bytes where ``free`` are available, and what to do: segment ``smaller`` (e.g. "fewer
    volumes, "), a crop or a downscaled copy (``fewer_channels``: or fewer channels, when
    they are many), use fewer filters, or switch the check off."""
    gib = 2**30
    many_channels = n_input_channels > 4  # more than RGBA: they may be what costs
    if many_channels:
        what += f" with {n_input_channels} channels"
    fewer = " (or fewer of its channels)" if fewer_channels and many_channels else ""
    return MemoryError(
        f"a {what} needs about {needed / gib:.1f} GiB of memory with these "
        f"settings and {free / gib:.1f} GiB is available; segment {smaller}a crop or a "
        f"downscaled copy{fewer}, or use fewer filters "
        f"(max_classes={settings.max_classes}); to run anyway, set the environment variable "
        f"{SWITCH}=0"
    )


def estimate_volume_bytes(
    volume_shape: tuple[int, int, int],
    settings: SegmentationParams,
    n_input_channels: int = 3,
    n_volumes: int = 1,
) -> tuple[int, int]:
    """Peak memory of training on ``n_volumes`` volumes of ``volume_shape`` (z, y, x) at
    once: (network, other) bytes.

    A voxel keeps as many feature maps as a pixel does (the 3x3x3 convolutions change the
    weights, not the maps), and post-processing in 3D (connected components, small
    segments) keeps fewer maps than the 2D merges; so a voxel costs at most what a pixel
    costs with the merges switched off.
    """
    depth, height, width = (int(size) for size in volume_shape)
    plain = settings.replace(merge="off") if settings.merge not in (None, "off") else settings
    return estimate_bytes(depth * height * int(n_volumes), width, plain, n_input_channels)


def check_volume_memory(
    volume_shape: tuple[int, int, int],
    settings: SegmentationParams,
    *,
    n_volumes: int = 1,
    network_in_memory: bool = True,
    n_input_channels: int = 3,
    extra_bytes: int = 0,
) -> None:
    """Raise MemoryError when training on ``n_volumes`` volumes of ``volume_shape`` at once
    (with ``extra_bytes`` held beside) would need more memory than is available (see
    :func:`check_memory`)."""
    shortage = _shortage(
        lambda: estimate_volume_bytes(volume_shape, settings, n_input_channels, n_volumes),
        network_in_memory,
        extra_bytes,
    )
    if shortage is None:
        return
    size = " x ".join(str(int(side)) for side in volume_shape)
    what = f"stack of {n_volumes} {size} volumes" if n_volumes > 1 else f"{size} volume"
    fewer = "fewer volumes, " if n_volumes > 1 else ""
    raise _memory_error(what, n_input_channels, *shortage, settings, fewer, False)
