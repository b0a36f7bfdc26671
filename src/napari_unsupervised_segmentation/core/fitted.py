"""A trained network kept to label other images with the same classes: fit once, predict anywhere.

The paper's network is a fully convolutional classifier of pixels. Once trained, with its
BatchNorm layers switched to fixed statistics, the class of a pixel depends only on the
pixels within its receptive field, ``2 * n_conv + 1`` pixels wide, and on the intensity
scaling: so a class means the same in every plane of a stack, in every tile of a large image
and in every file scaled like the training image.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .crops import CropSampling
from .devices import resolve_device
from .labels import smallest_unsigned_dtype
from .model import SegmentationNet
from .normalize import Ranges, image_layout, prepare_image
from .params import SegmentationParams, settings_of_version_1

#: What a model file says it is, and the layout version of its contents.
FILE_FORMAT = "napari-unsupervised-segmentation model"
FILE_VERSION = 2
#: Older layout versions that load: version 1 named the settings otherwise.
READABLE_VERSIONS = (1, 2)


@dataclass(frozen=True)
class SegmentationModel:
    """A trained network with the intensity scaling of the image it was trained on.

    Made by :func:`~napari_unsupervised_segmentation.fit` (or a ``Step.model``) and
    :func:`load_model`; :meth:`predict` labels any image with the same channels.
    """

    network: SegmentationNet  # in eval mode, on the CPU
    settings: SegmentationParams
    n_input_channels: int
    is_rgb: bool
    ranges: Ranges

    @property
    def n_classes(self) -> int:
        """The most classes the network can give (its filters); labels are 1..n_classes."""
        return self.settings.max_classes

    @property
    def halo(self) -> int:
        """Pixels on each side that a pixel's class depends on (the 3x3 convolutions)."""
        return self.settings.n_conv

    def predict(
        self,
        image: Any,
        *,
        channel_axis: int | None = None,
        rgb: bool | None = None,
        tile_shape: tuple[int, int] | None = None,
        normalise: str = "model",
    ) -> np.ndarray:
        """The class of every pixel of ``image``, as labels ``1..n_classes``.

        Parameters
        ----------
        image : array_like
            A 2D image, or a stack of them: with ``channel_axis``, the channels are on that
            axis; of the other axes, the last two are the plane's rows and columns and any
            before them are planes (z, time, ...), each labelled on its own.
        channel_axis : int or None
            The channel axis; None for grayscale. The image must have the model's channels.
        rgb : bool or None
            Whether the channels are colour; None: colour when the model was trained on
            colour and the plane has 3 or 4 channels, else guessed as ``iter_segment`` does.
        tile_shape : (int, int) or None
            Label each plane in tiles of this many rows and columns (each read with the
            network's ``halo`` around it): the same labels as the whole plane at once, with
            the memory of one tile.
        normalise : {"model", "image"}
            ``"model"``: scale intensities as for the training image, so that one intensity
            gives one class in every file; ``"image"``: scale each plane by its own range
            (for files of different exposure).

        Returns
        -------
        numpy.ndarray
            The image's shape without the channel axis; class ``k`` of the network is
            label ``k + 1`` wherever it appears.
        """
        if normalise not in ("model", "image"):
            raise ValueError(f"normalise must be 'model' or 'image', not {normalise!r}")
        array = np.asarray(image)
        if channel_axis is not None:
            array = np.moveaxis(array, channel_axis, -1)  # AxisError when out of range
        n_plane_axes = 2 if channel_axis is None else 3
        if array.ndim < n_plane_axes:
            raise ValueError(f"an image of shape {array.shape} has no 2D plane to label")
        stack_shape = array.shape[: array.ndim - n_plane_axes]
        plane_shape = array.shape[len(stack_shape) :][:2]
        labels = np.zeros(stack_shape + plane_shape, smallest_unsigned_dtype(self.n_classes))
        plane_channel_axis = None if channel_axis is None else -1
        for index in np.ndindex(*stack_shape):
            labels[index] = self._predict_plane(
                array[index], plane_channel_axis, rgb, tile_shape, normalise
            )
        return labels

    def _predict_plane(
        self,
        plane: Any,
        channel_axis: int | None,
        rgb: bool | None,
        tile_shape: tuple[int, int] | None,
        normalise: str,
    ) -> np.ndarray:
        layout = image_layout(plane.shape, plane.dtype, channel_axis, rgb)
        if rgb is None and self.is_rgb and layout.n_channels in (3, 4):  # as trained
            rgb = True
            layout = image_layout(plane.shape, plane.dtype, channel_axis, rgb)
        n_channels = 3 if layout.is_rgb else layout.n_channels
        if n_channels != self.n_input_channels or layout.is_rgb != self.is_rgb:
            raise ValueError(
                f"this model was trained on {_describe(self.n_input_channels, self.is_rgb)}; "
                f"the image has {_describe(n_channels, layout.is_rgb)}"
            )
        ranges = self.ranges if normalise == "model" else None
        pixels = prepare_image(plane, channel_axis, rgb, ranges).channels
        height, width = pixels.shape[:2]
        rows, cols = tile_shape or (height, width)
        if rows < 1 or cols < 1:
            raise ValueError(f"tile_shape must be positive; got {tile_shape}")
        labels = np.empty((height, width), smallest_unsigned_dtype(self.n_classes))
        halo = self.halo
        for top in range(0, height, rows):
            for left in range(0, width, cols):
                y0, x0 = max(top - halo, 0), max(left - halo, 0)
                y1, x1 = min(top + rows + halo, height), min(left + cols + halo, width)
                classes = self._classes(pixels[y0:y1, x0:x1])
                inner = classes[top - y0 : top - y0 + rows, left - x0 : left - x0 + cols]
                labels[top : top + inner.shape[0], left : left + inner.shape[1]] = inner + 1
        return labels

    def _classes(self, pixels: np.ndarray) -> np.ndarray:
        """The argmax class of every pixel of a ``(H, W, C)`` float32 block."""
        device = resolve_device(self.settings.device)
        network = self.network.to(device)
        block = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).unsqueeze(0)
        block = block.to(device).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return network(block).argmax(dim=1)[0].cpu().numpy()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the weights, intensity ranges, settings and package version to ``path``
        (a new file replaces an existing one only once complete)."""
        from .. import __version__

        target = Path(path)
        metadata = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "package_version": __version__,
            "settings": dataclasses.asdict(self.settings),
            "n_input_channels": self.n_input_channels,
            "is_rgb": self.is_rgb,
            "ranges": [list(span) for span in self.ranges],
        }
        contents = {
            "metadata": json.dumps(metadata),
            "weights": {k: v.detach().cpu() for k, v in self.network.state_dict().items()},
        }
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            torch.save(contents, temporary)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        return target


def load_model(path: str | os.PathLike[str]) -> SegmentationModel:
    """Read a model written by :meth:`SegmentationModel.save`.

    Loading runs no code from the file (``torch.load`` with ``weights_only=True``: plain
    tensors and text). A missing file raises FileNotFoundError; a damaged, truncated or
    foreign file, or one that would run code, raises ValueError naming the file.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"no model file at {str(source)!r}")
    try:
        contents = _load_tensors_and_text(source)
        metadata = json.loads(contents["metadata"])
        if metadata.get("format") != FILE_FORMAT:
            raise ValueError("it is not a model file of napari-unsupervised-segmentation")
        if metadata.get("version") not in READABLE_VERSIONS:
            raise ValueError(f"its layout version {metadata.get('version')} is not supported")
        stored = metadata["settings"]
        if metadata["version"] == 1:
            stored = settings_of_version_1(stored)
        settings = SegmentationParams(**stored)
        network = SegmentationNet(
            int(metadata["n_input_channels"]), settings.max_classes, settings.n_conv
        )
        network.load_state_dict(contents["weights"], strict=True)
        ranges = tuple((float(low), float(high)) for low, high in metadata["ranges"])
        is_rgb = bool(metadata["is_rgb"])
    except (KeyError, TypeError, AttributeError, RuntimeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"cannot load a model from {str(source)!r}: it is not a model file of "
            f"napari-unsupervised-segmentation ({type(exc).__name__}: {exc})"
        ) from None
    except ValueError as exc:
        raise ValueError(f"cannot load a model from {str(source)!r}: {exc}") from None
    network.eval()
    return SegmentationModel(network, settings, int(metadata["n_input_channels"]), is_rgb, ranges)


def _load_tensors_and_text(source: Path) -> Any:
    """The file's contents if they are plain tensors and text, read without running code."""
    import pickle

    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(
            "it does not hold plain tensors and text only (anything else could run code "
            "when loaded): it is not a model file of napari-unsupervised-segmentation"
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise ValueError(f"it is damaged or not a model file ({error})") from None


def snapshot_model(
    network: SegmentationNet,
    pixels: torch.Tensor | Callable[[], Iterable[torch.Tensor]],
    settings: SegmentationParams,
    *,
    n_input_channels: int,
    is_rgb: bool,
    ranges: Ranges,
) -> SegmentationModel:
    """A copy of ``network`` as it is now, in eval mode on the CPU, with BatchNorm
    statistics measured over all its training data, so that it labels that data as
    training did.

    ``pixels`` is the training image (one batch: one forward pass in training mode
    measures them) or a callable giving the training data in batches (crops): each
    BatchNorm's statistics are then measured in turn over all batches, the layers before
    it already fixed, as one forward pass over all the data at once would measure them.
    """
    frozen = copy.deepcopy(network)
    if isinstance(pixels, torch.Tensor):
        for module in frozen.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.reset_running_stats()
                module.momentum = None  # a plain average over the batches seen
        frozen.train()
        with torch.no_grad():
            frozen(pixels)
    else:
        measure_batchnorm(frozen, pixels)
    frozen.eval()
    frozen = frozen.to("cpu", memory_format=torch.contiguous_format)
    return SegmentationModel(frozen, settings, n_input_channels, is_rgb, ranges)


def preview_model(
    network: SegmentationNet,
    settings: SegmentationParams,
    *,
    n_input_channels: int,
    is_rgb: bool,
    ranges: Ranges,
) -> SegmentationModel:
    """A copy of ``network`` with the running BatchNorm statistics of training, in eval
    mode on the CPU: no pass over the training data, for a live display (close to, not
    exactly, :func:`snapshot_model`'s labels)."""
    frozen = copy.deepcopy(network).eval().to("cpu", memory_format=torch.contiguous_format)
    return SegmentationModel(frozen, settings, n_input_channels, is_rgb, ranges)


def _measure_input(
    pooled: list[tuple[int, torch.Tensor, torch.Tensor]],
    module: torch.nn.Module,
    inputs: tuple[torch.Tensor, ...],
) -> None:
    """Keep the pixel count, mean and sum of squared deviations of a layer's input per
    channel, then stop the forward pass (the layers after it are not needed yet)."""
    x = inputs[0].float()
    count = x.numel() // x.shape[1]
    mean = x.mean(dim=(0, 2, 3))
    squares = ((x - mean.view(1, -1, 1, 1)) ** 2).sum(dim=(0, 2, 3))
    pooled.append((count, mean.double().cpu(), squares.double().cpu()))
    raise _Measured


class _Measured(Exception):
    """Raised by a hook once the layer it measures has seen its input."""


def measure_batchnorm(
    network: SegmentationNet, batches: Callable[[], Iterable[torch.Tensor]]
) -> None:
    """Set every BatchNorm layer's statistics to the mean and (unbiased) variance of its
    input over all ``batches``, layer by layer, the layers before it in eval mode with
    their statistics already set; each batch's share is pooled exactly (Chan et al.)."""
    network.eval()
    for norm in [m for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d)]:
        pooled: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        handle = norm.register_forward_pre_hook(partial(_measure_input, pooled))
        try:
            with torch.no_grad():
                for batch in batches():
                    with contextlib.suppress(_Measured):
                        network(batch)
        finally:
            handle.remove()
        total, mean, squares = pooled[0]
        for count, batch_mean, batch_squares in pooled[1:]:
            delta = batch_mean - mean
            combined = total + count
            mean = mean + delta * count / combined
            squares = squares + batch_squares + delta**2 * total * count / combined
            total = combined
        variance = squares / max(total - 1, 1)
        norm.running_mean.copy_(mean.to(norm.running_mean))
        norm.running_var.copy_(variance.to(norm.running_var))


def fit(
    images: Any,
    params: SegmentationParams | str | None = None,
    *,
    channel_axis: int | None = None,
    rgb: bool | None = None,
    spatial_ndim: int = 2,
    spacing: Sequence[float] | None = None,
    crops: CropSampling | bool | None = None,
    **overrides: Any,
) -> SegmentationModel:
    """Train the network on ``images`` and return it as a model that labels other images
    with the same classes: the last step of
    :func:`~napari_unsupervised_segmentation.iter_fit` (see it for the arguments).

    One 2D image that fits in memory trains as
    :func:`~napari_unsupervised_segmentation.segment` trains on it; a stack, a list of
    images or an image too large trains on crops sampled across all of it.
    """
    from .train import iter_fit

    steps = iter_fit(
        images,
        params,
        channel_axis=channel_axis,
        rgb=rgb,
        spatial_ndim=spatial_ndim,
        spacing=spacing,
        crops=crops,
        **overrides,
    )
    return deque(steps, maxlen=1)[0].model


def _describe(n_channels: int, is_rgb: bool) -> str:
    if is_rgb:
        return "colour (RGB)"
    return "1 channel" if n_channels == 1 else f"{n_channels} channels"
