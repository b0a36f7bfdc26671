"""How much memory a run needs, checked before training so that a huge image fails with a
message instead of driving the machine into swap or the out-of-memory killer (which would
take napari, and any unsaved work in it, down)."""

from __future__ import annotations

import os
import sys

from .params import SegmentationParams

#: Set to ``0`` to switch the check off (an estimate can be wrong; the run may then swap).
SWITCH = "UNSUPERVISED_SEGMENTATION_MEMORY_CHECK"

#: float32 feature maps kept per channel and pixel for the backward pass: a conv output,
#: its ReLU and BatchNorm outputs for each of the ``n_conv`` blocks, and the classifier's
#: response, BatchNorm output and gradient.
_MAPS_PER_BLOCK, _MAPS_CLASSIFIER = 3, 3
#: The rest per pixel, on the CPU whatever the device: input channels, SLIC, labels and
#: post-processing maps (an upper bound from the measurements below).
_OTHER_BYTES_PER_PIXEL = 256


def estimate_bytes(height: int, width: int, settings: SegmentationParams) -> tuple[int, int]:
    """Peak memory of training on an ``height`` x ``width`` image: (network, other) bytes.

    The network part lives on the training device; the other part in the computer's memory.
    Fitted on the 2-core CPU of the project's benchmarks (coffee sample resized to 0.96 and
    2.16 megapixels, growth of the peak resident memory: 1120 and 2514 MiB for the
    ``default`` preset, 3379 and 7563 MiB for ``paper``): 1.22 kB per pixel for ``default``
    (estimate 1.41) and 3.67 kB for ``paper`` (estimate 3.86).
    """
    pixels = int(height) * int(width)
    maps = _MAPS_PER_BLOCK * settings.n_conv + _MAPS_CLASSIFIER
    return pixels * 4 * settings.n_channels * maps, pixels * _OTHER_BYTES_PER_PIXEL


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
) -> None:
    """Raise MemoryError when a run would need more memory than is available.

    ``network_in_memory``: the network trains on the CPU or on Apple's MPS (which shares the
    computer's memory). For a CUDA device only the computer's share is checked: CUDA
    reports its own out-of-memory error without harm to the process. ``extra_bytes``: held
    beside one plane's training (the copy and labels of a stack of ``planes`` planes).
    """
    free = available_memory()
    if free is None or os.environ.get(SWITCH, "").strip() == "0":
        return
    network, other = estimate_bytes(height, width, settings)
    needed = other + (network if network_in_memory else 0) + extra_bytes
    if needed <= free:
        return
    gib = 2**30
    plane = f"{height} x {width}"
    what = f"stack of {planes} {plane} planes" if planes > 1 else f"{plane} image"
    one_plane = "the plane shown only, " if planes > 1 else ""
    raise MemoryError(
        f"a {what} needs about {needed / gib:.1f} GiB of memory with these "
        f"settings and {free / gib:.1f} GiB is available; segment {one_plane}a crop or a "
        f"downscaled copy, or use fewer filters (n_channels={settings.n_channels}); to run "
        f"anyway, set the environment variable {SWITCH}=0"
    )
