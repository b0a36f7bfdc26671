"""Checking an input image and bringing it to float channels in [0, 1] (numpy only)."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

#: Robust range used for every dtype but uint8 (percentiles of each channel; of the three
#: channels together for colour).
LOW_PERCENTILE = 1.0
HIGH_PERCENTILE = 99.8
#: How far outside [0, 1] float RGB may stray (resampling overshoot) and still count as [0, 1].
RGB_FLOAT_SLACK = 0.01


#: The intensity that became 0 and the one that became 1, for each channel of an image
#: (one pair for the three channels of colour, which are scaled together).
Ranges = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class PreparedImage:
    """A validated image as float32 ``(H, W, C)`` in [0, 1] (a volume: ``(D, H, W, C)``),
    whether it is RGB, and the intensity ranges that were mapped to [0, 1] (so that another
    image can be scaled alike)."""

    channels: np.ndarray
    is_rgb: bool
    ranges: Ranges = ()

    @property
    def is_constant(self) -> bool:
        """Every pixel has the same value in every channel."""
        first = self.channels.reshape(-1, self.channels.shape[-1])[:1]
        return bool((self.channels == first).all())

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return self.channels.shape[:-1]


def prepare_image(
    image: np.ndarray,
    channel_axis: int | None = None,
    rgb: bool | None = None,
    ranges: Ranges | None = None,
    stretch: bool = False,
) -> PreparedImage:
    """Validate ``image`` and normalise each channel to [0, 1].

    Parameters
    ----------
    image : array_like
        A 2D grayscale image ``(H, W)`` when ``channel_axis`` is None, else a 2D image with
        one channel axis, e.g. ``(H, W, 3)`` RGB or ``(C, H, W)`` multichannel. A lazy
        array (dask, zarr) is checked from its shape and dtype before it is read.
    channel_axis : int or None
        Axis of ``image`` holding the channels.
    rgb : bool or None
        Whether the channels are colour: True for RGB (3 channels) or RGBA (4, the alpha is
        dropped), False for independent channels such as microscopy stains (no colour
        conversion, no channel dropped). None guesses from the layout, as photos come:
        three channels on the last axis are RGB and four uint8 channels there RGBA; channels
        on any other axis (``(C, H, W)``) are independent.
    ranges : sequence of (low, high) or None
        Scale with these ranges (another image's ``PreparedImage.ranges``: the same
        intensity then gives the same value) instead of this image's own.
    stretch : bool
        Without ``ranges``: scale every image between its own 1st and 99.8th percentile,
        uint8 and float colour too, so that a dim image and a bright one look alike.

    Returns
    -------
    PreparedImage
        uint8 channels are divided by 255; every other dtype is scaled between its 1st and
        99.8th percentile per channel and clipped, so 16-bit microscopy with a few hot
        pixels still uses the full range. A constant channel becomes 0. Colour keeps its
        hue: float RGB already in [0, 1] is taken as it is (clipped, up to 0.01 outside),
        and any other RGB that is not uint8 is scaled by one range for its three channels
        together.

    Raises
    ------
    TypeError
        For a ``channel_axis`` that is not an integer.
    ValueError
        For NaN or inf (or values beyond float64's range), an empty image or a side
        shorter than 2 pixels, bool, complex or non-numeric data, a dimension count or
        ``channel_axis`` that does not fit, and ``rgb=True`` without 3 or 4 channels.
    """
    shape, dtype = _shape_and_dtype(image)
    layout = image_layout(shape, dtype, channel_axis, rgb)
    # only now are the pixels read: a lazy array (dask, zarr) that cannot be segmented is
    # refused above without loading it
    array = np.asarray(image)
    if (array.shape, array.dtype) != (shape, dtype):  # an array-like that misstated them
        layout = image_layout(array.shape, array.dtype, channel_axis, rgb)
    array = array[..., np.newaxis] if channel_axis is None else np.moveaxis(array, channel_axis, -1)
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ValueError("image contains NaN or infinite values; replace them (e.g. np.nan_to_num)")
    # RGBA: the alpha says nothing about where objects are
    groups = [array[..., :3]] if layout.is_rgb else [array[..., c] for c in range(array.shape[2])]
    if ranges is not None and len(ranges) != len(groups):
        raise ValueError(
            f"{len(ranges)} intensity ranges given for an image of {len(groups)} "
            f"{'colour' if layout.is_rgb else 'channels'}"
        )
    if ranges is None and stretch:
        ranges = tuple(_percentile_range(group) for group in groups)
    elif ranges is None:
        find = _colour_range if layout.is_rgb else _channel_range
        ranges = tuple(find(group) for group in groups)
    scaled = [_scale(group, *span) for group, span in zip(groups, ranges, strict=True)]
    channels = scaled[0] if layout.is_rgb else np.stack(scaled, -1)
    # Colour gets Lab superpixels and averaged edges; stains the edges of the strongest stain.
    ranges = tuple((float(low), float(high)) for low, high in ranges)
    return PreparedImage(channels=channels, is_rgb=layout.is_rgb, ranges=ranges)


def channels_look_like_colour(n_channels: int, dtype: np.dtype) -> bool:
    """Whether channels on the last axis are taken for colour when nobody says: three (RGB),
    or four uint8 (RGBA, as photos come); four of another dtype are far more often four
    microscopy stains than colour and alpha."""
    return n_channels == 3 or (n_channels == 4 and np.dtype(dtype) == np.uint8)


def plane_shape(shape: tuple[int, ...], channel_axis: int | None) -> tuple[int, int] | None:
    """``(H, W)`` of an image of ``shape`` with ``channel_axis``, from the shape alone (no
    copy); None when they do not fit together (:func:`prepare_image` then says why).
    TypeError for a ``channel_axis`` that is not an integer."""
    if channel_axis is None:
        return (shape[0], shape[1]) if len(shape) == 2 else None
    check_channel_axis_type(channel_axis)
    if len(shape) != 3 or not -3 <= channel_axis <= 2:
        return None
    height, width = (size for axis, size in enumerate(shape) if axis != channel_axis % 3)
    return height, width


def check_channel_axis_type(channel_axis: object) -> None:
    """TypeError unless ``channel_axis`` is an integer (numpy's too; not a bool or float)."""
    if not isinstance(channel_axis, numbers.Integral) or isinstance(channel_axis, bool | np.bool_):
        raise TypeError(f"channel_axis must be an integer or None, not {channel_axis!r}")


@dataclass(frozen=True)
class ImageLayout:
    """What an image's shape and dtype say about it, known before any pixel is read."""

    height: int
    width: int
    n_channels: int  # on the channel axis (RGBA's alpha included); 1 for grayscale
    is_rgb: bool


def image_layout(
    shape: tuple[int, ...],
    dtype: np.dtype,
    channel_axis: int | None = None,
    rgb: bool | None = None,
) -> ImageLayout:
    """Check an image of ``shape`` and ``dtype`` as :func:`prepare_image` does, from these
    alone, so that a lazy array (dask, zarr) or a layer too big to copy is refused before it
    is read. Raises TypeError and ValueError as :func:`prepare_image` does, except for
    NaN, inf and values beyond float64's range, which only the pixels tell."""
    shape = tuple(int(size) for size in shape)
    dtype = np.dtype(dtype)
    _check_dtype(dtype, shape)
    height, width, n_channels = _channels_last_shape(shape, channel_axis)
    channels_were_last = channel_axis is not None and channel_axis in (-1, len(shape) - 1)
    if rgb is None:
        # Photos come (H, W, 3) or (H, W, 4) uint8; a (C, H, W) stack is microscopy channels.
        rgb = channels_were_last and channels_look_like_colour(n_channels, dtype)
    elif rgb and n_channels not in (3, 4):
        raise ValueError(
            "rgb=True needs a channel axis of 3 (RGB) or 4 (RGBA) channels; "
            + (
                "channel_axis=None declares a grayscale image: give the colour axis"
                if channel_axis is None
                else f"this image has {n_channels}: pass rgb=False (or leave it out) "
                "for independent channels"
            )
        )
    if height < 2 or width < 2:
        raise ValueError(
            f"image is too small: its spatial shape is {(height, width)}, and both sides "
            "must be at least 2 pixels"
        )
    return ImageLayout(height, width, n_channels, bool(rgb))


def _shape_and_dtype(image: object) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype of an array or array-like without reading its pixels when it
    states them (numpy, dask, zarr, xarray); anything else (a list) is converted."""
    shape, dtype = getattr(image, "shape", None), getattr(image, "dtype", None)
    if shape is not None and dtype is not None:
        try:
            return tuple(int(size) for size in shape), np.dtype(dtype)
        except TypeError:  # a dtype numpy does not know (a torch tensor's)
            pass
    array = np.asarray(image)
    return array.shape, array.dtype


def _check_dtype(dtype: np.dtype, shape: tuple[int, ...]) -> None:
    if dtype.kind == "b":
        raise ValueError("image has dtype bool: convert it to an integer or float image first")
    if dtype.kind == "c":
        raise ValueError(
            "image has a complex dtype: pass a real image, e.g. np.abs(image) or image.real"
        )
    if dtype.kind not in "uif":
        raise ValueError(f"image has dtype {dtype}: pass a numeric (integer or float) image")
    if 0 in shape:
        raise ValueError(f"image is empty (shape {shape})")


def _channels_last_shape(shape: tuple[int, ...], channel_axis: int | None) -> tuple[int, int, int]:
    """``(H, W, C)`` of an image of ``shape`` with ``channel_axis`` (C is 1 for None)."""
    ndim = len(shape)
    if channel_axis is None:
        if ndim != 2:
            raise ValueError(
                f"image has {ndim} dimensions {shape}, but channel_axis=None declares "
                "a 2D grayscale image; pass channel_axis=-1 for RGB or multichannel (H, W, C) "
                "data, or select a 2D plane of an nD stack"
            )
        return shape[0], shape[1], 1
    check_channel_axis_type(channel_axis)
    if ndim != 3:
        raise ValueError(
            f"image has {ndim} dimensions {shape}, but channel_axis={channel_axis} "
            "declares a 2D image with channels (3 dimensions); pass channel_axis=None for a "
            "grayscale image or select a 2D plane of an nD stack"
        )
    if not -3 <= channel_axis <= 2:
        raise ValueError(
            f"channel_axis={channel_axis} is out of range for an image with 3 dimensions; "
            "use -1 for (H, W, C) or 0 for (C, H, W)"
        )
    height, width = (size for axis, size in enumerate(shape) if axis != channel_axis % 3)
    return height, width, shape[channel_axis]


def _colour_range(rgb: np.ndarray) -> tuple[float, float]:
    """Colour keeps its hue: floats already in [0, 1] (as ``skimage.img_as_float`` gives;
    up to ``RGB_FLOAT_SLACK`` outside, as resampling overshoots, clipped) are taken as they
    are, any other range is one range for all three channels (scaling each channel on its
    own would turn a dark slate background cyan)."""
    if rgb.dtype.kind == "f" and rgb.min() >= -RGB_FLOAT_SLACK and rgb.max() <= 1 + RGB_FLOAT_SLACK:
        return 0.0, 1.0
    return _channel_range(rgb)


def _channel_range(channel: np.ndarray) -> tuple[float, float]:
    """The range of one channel (or several jointly) that becomes [0, 1]: uint8's 0 to 255,
    anything else between its robust percentiles (its extremes when almost constant)."""
    if channel.dtype == np.uint8:
        return 0.0, 255.0
    return _percentile_range(channel)


def _percentile_range(channel: np.ndarray) -> tuple[float, float]:
    """The 1st to 99.8th percentile of one channel (or several jointly), whatever its dtype;
    its extremes when almost constant."""
    values, unit = _as_float64(channel)
    low, high = np.percentile(values, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if high <= low:  # almost constant: fall back to the full range
        low, high = values.min(), values.max()
    return float(low) * unit, float(high) * unit


def _scale(channel: np.ndarray, low: float, high: float) -> np.ndarray:
    """``channel`` mapped from [low, high] to [0, 1] (clipped) as float32; an empty range
    gives 0."""
    if channel.dtype == np.uint8 and (low, high) == (0.0, 255.0):
        return channel.astype(np.float32) / np.float32(255)
    if channel.dtype.kind == "f" and (low, high) == (0.0, 1.0):
        return np.clip(channel, 0.0, 1.0).astype(np.float32)
    values, unit = _as_float64(channel)
    low, high = low / unit, high / unit
    if high <= low:
        return np.zeros(channel.shape, np.float32)
    return np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32)


def _as_float64(channel: np.ndarray) -> tuple[np.ndarray, float]:
    """The values as float64 in units of the returned power of two: 1, or for values beyond
    1e300, whose differences would overflow, 2**64 (an exact rescaling). Long double beyond
    float64's range is refused."""
    with np.errstate(over="ignore"):  # long double beyond float64's range: refused below
        values = channel.astype(np.float64)
    if channel.dtype.itemsize > 8 and not np.isfinite(values).all():
        raise ValueError(
            "image has values beyond float64's range (about 1.8e308): rescale it first"
        )
    if max(values.max(), -values.min()) > 1e300:
        return values / 2.0**64, 2.0**64
    return values, 1.0
