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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from .crops import CropSampling
from .devices import resolve_device
from .labels import smallest_unsigned_dtype
from .model import SegmentationNet
from .normalize import (
    HIGH_PERCENTILE,
    LOW_PERCENTILE,
    RGB_FLOAT_SLACK,
    Ranges,
    check_channel_axis_type,
    image_layout,
    prepare_image,
)
from .params import SegmentationParams, settings_of_version_1

if TYPE_CHECKING:
    from .normalize import ImageLayout
    from .volumes import VolumeLayout

#: The layout of an image or of volumes to label.
_Layout = TypeVar("_Layout", "ImageLayout", "VolumeLayout")

#: The BatchNorm layers of 2D and of volume networks.
_BATCH_NORMS = (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)

#: What a model file says it is, and the layout version of its contents.
FILE_FORMAT = "napari-unsupervised-segmentation model"
FILE_VERSION = 2
#: Older layout versions that load: version 1 named the settings otherwise.
READABLE_VERSIONS = (1, 2)

#: Bytes of one layer's activations in a tile that :meth:`SegmentationModel.predict` labels
#: at a time unless told otherwise. Small enough that the few activations alive at once stay
#: in the memory the allocator keeps: larger blocks go back to the system after each use and
#: are faulted in again for the next tile, which took a third of the CPU time with tiles of
#: 416 x 416 or more (benchmarks/predict_speed.py).
TILE_ACTIVATION_BYTES = 9 * 2**20


@dataclass(frozen=True)
class SegmentationModel:
    """A trained network with the intensity scaling of the image it was trained on.

    Made by :func:`~napari_unsupervised_segmentation.fit` (or a ``Step.model``) and
    :func:`load_model`; :meth:`predict` labels any image with the same channels. A model
    fitted with ``spatial_ndim=3`` (``spatial_ndim`` 3) labels volumes, in 3D tiles.
    """

    network: SegmentationNet  # in eval mode, on the CPU
    settings: SegmentationParams
    n_input_channels: int
    is_rgb: bool
    ranges: Ranges
    spatial_ndim: int = 2  # 3: a volume model (3x3x3 convolutions), labels volumes

    @property
    def n_classes(self) -> int:
        """The most classes the network can give (its filters); labels are 1..n_classes."""
        return self.settings.max_classes

    @property
    def halo(self) -> int:
        """Pixels on each side that a pixel's class depends on (the 3x3 convolutions)."""
        return self.settings.n_conv

    @property
    def default_tile_shape(self) -> tuple[int, int]:
        """The tiles :meth:`predict` labels at a time unless told: square, a multiple of 32
        pixels, whose activations in each layer (halo included) take at most
        :data:`TILE_ACTIVATION_BYTES`."""
        side = int(np.sqrt(TILE_ACTIVATION_BYTES / (4 * self.n_classes))) - 2 * self.halo
        side = max(32, side // 32 * 32)
        return side, side

    def predict(
        self,
        image: Any,
        *,
        channel_axis: int | None = None,
        rgb: bool | None = None,
        tile_shape: tuple[int, int] | None = None,
        normalise: str = "model",
        out: Any = None,
    ) -> Any:
        """The class of every pixel of ``image``, as labels ``1..n_classes``.

        The image is read tile by tile (each tile with the network's ``halo`` around it),
        so a lazy array (dask, zarr) or a napari multiscale list (its full resolution level
        is labelled) larger than memory is never loaded whole.

        Parameters
        ----------
        image : array_like
            A 2D image, or a stack of them: with ``channel_axis``, the channels are on that
            axis; of the other axes, the last two are the plane's rows and columns and any
            before them are planes (z, time, ...), each labelled on its own. A list of
            arrays that shrink level by level (napari multiscale data) stands for its first.
        channel_axis : int or None
            The channel axis; None for grayscale. The image must have the model's channels.
        rgb : bool or None
            Whether the channels are colour; None: colour when the model was trained on
            colour and the plane has 3 or 4 channels, else guessed as ``iter_segment`` does.
        tile_shape : (int, int) or None
            Label each plane in tiles of this many rows and columns: the same labels as the
            whole plane at once, with the memory of one tile. None:
            :attr:`default_tile_shape`.
        normalise : {"model", "image"}
            ``"model"``: scale intensities as for the training image, so that one intensity
            gives one class in every file; ``"image"``: scale each plane by its own range
            (for files of different exposure; on a plane of several tiles the range is
            measured by reading the tiles before labelling them).
        out : array_like or None
            A writable array (numpy, ``np.memmap``, zarr) of the labels' shape to write
            them into, so that the labels of a very large image can live on disk; its dtype
            must hold ``n_classes``. None: a new numpy array.

        Returns
        -------
        numpy.ndarray or ``out``
            The image's shape without the channel axis; class ``k`` of the network is
            label ``k + 1`` wherever it appears.
        """
        if normalise not in ("model", "image"):
            raise ValueError(f"normalise must be 'model' or 'image', not {normalise!r}")
        if self.spatial_ndim == 3:
            volumes = self._predict_volumes(image, channel_axis, rgb, tile_shape, normalise)
            if out is None:
                return volumes
            out[...] = volumes
            return out
        source = _full_resolution(image)
        if not _states_shape_and_dtype(source):
            source = np.asarray(source)
        shape = tuple(int(size) for size in source.shape)
        if channel_axis is not None:
            check_channel_axis_type(channel_axis)
            channel_axis = normalize_axis_index(int(channel_axis), len(shape))
        spatial = [axis for axis in range(len(shape)) if axis != channel_axis]
        if len(spatial) < 2:
            raise ValueError(f"an image of shape {shape} has no 2D plane to label")
        stack_axes = spatial[:-2]
        labels_shape = tuple(shape[axis] for axis in spatial)
        dtype = smallest_unsigned_dtype(self.n_classes)
        if out is None:
            out = np.zeros(labels_shape, dtype)
        elif tuple(out.shape) != labels_shape:
            raise ValueError(f"out has shape {tuple(out.shape)}; the labels have {labels_shape}")
        elif np.dtype(out.dtype).kind not in "ui" or np.iinfo(out.dtype).max < self.n_classes:
            raise ValueError(
                f"out has dtype {out.dtype}, which cannot hold {self.n_classes} labels"
            )
        for index in np.ndindex(*(shape[axis] for axis in stack_axes)):
            plane = _Plane(source, dict(zip(stack_axes, index, strict=True)), channel_axis)
            self._predict_plane(plane, rgb, tile_shape, normalise, out, index)
        return out

    def _predict_plane(
        self,
        plane: _Plane,
        rgb: bool | None,
        tile_shape: tuple[int, int] | None,
        normalise: str,
        out: Any,
        index: tuple[int, ...],
    ) -> None:
        """Label one plane into ``out[index]``, a tile and its halo read at a time."""
        channel_axis = None if plane.n_channels is None else -1
        layout = self._layout_as_trained(
            partial(image_layout, plane.shape, plane.dtype, channel_axis), rgb
        )
        height, width = layout.height, layout.width
        rows, cols = tile_shape or self.default_tile_shape
        if rows < 1 or cols < 1:
            raise ValueError(f"tile_shape must be positive; got {tile_shape}")
        rows, cols = min(rows, height), min(cols, width)
        halo = self.halo
        ranges: Ranges | None = self.ranges
        stretch = self.settings.stretch_contrast and normalise == "model"
        if (normalise == "image" or stretch) and (rows, cols) != (height, width):
            ranges = _plane_ranges(plane, layout.is_rgb, (rows, cols), stretch)
        elif normalise == "image" or stretch:
            ranges = None  # one tile: measured on it as it is read
        for top in range(0, height, rows):
            for left in range(0, width, cols):
                y0, x0 = max(top - halo, 0), max(left - halo, 0)
                y1, x1 = min(top + rows + halo, height), min(left + cols + halo, width)
                block = plane.read(slice(y0, y1), slice(x0, x1))
                pixels = prepare_image(
                    block, channel_axis, layout.is_rgb, ranges, stretch=stretch
                ).channels
                inner = self._classes(pixels)[
                    top - y0 : top - y0 + rows, left - x0 : left - x0 + cols
                ]
                bottom, right = top + inner.shape[0], left + inner.shape[1]
                out[index + (slice(top, bottom), slice(left, right))] = inner + 1

    def _layout_as_trained(
        self, layout_for: Callable[[bool | None], _Layout], rgb: bool | None
    ) -> _Layout:
        """``layout_for(rgb)``, the layout of an image to label (with ``rgb`` None, 3 or 4
        channels are colour when the model was trained on colour); ValueError unless its
        channels are those the model was trained on."""
        layout = layout_for(rgb)
        if rgb is None and self.is_rgb and layout.n_channels in (3, 4):  # as trained
            layout = layout_for(True)
        n_channels = 3 if layout.is_rgb else layout.n_channels
        if n_channels != self.n_input_channels or layout.is_rgb != self.is_rgb:
            raise ValueError(
                f"this model was trained on {_describe(self.n_input_channels, self.is_rgb)}; "
                f"the image has {_describe(n_channels, layout.is_rgb)}"
            )
        return layout

    def _classes(self, pixels: np.ndarray) -> np.ndarray:
        """The argmax class of every pixel of a ``(H, W, C)`` float32 block (uint8 when the
        classes fit, as the labels do)."""
        device = resolve_device(self.settings.device)
        network = self.network.to(device)
        block = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).unsqueeze(0)
        block = block.to(device).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            responses = network(block)[0].permute(1, 2, 0)  # (H, W, classes)
            dtype = np.uint8 if self.n_classes <= 255 else np.int64
            if device.type == "cpu" and responses.is_contiguous():
                # numpy's argmax over the contiguous classes of each pixel is the faster
                # on a CPU; both give the first of equal maxima
                return np.argmax(responses.numpy(), axis=-1).astype(dtype, copy=False)
            return responses.argmax(dim=-1).cpu().numpy().astype(dtype, copy=False)

    def _predict_volumes(
        self,
        image: Any,
        channel_axis: int | None,
        rgb: bool | None,
        tile_shape: tuple[int, ...] | None,
        normalise: str,
    ) -> np.ndarray:
        """``predict`` for a volume model: the last three axes other than the channel axis
        are z, y, x, any before them volumes, each labelled on its own (in 3D tiles of
        ``tile_shape`` with the ``halo`` around each)."""
        from .volumes import prepare_volumes, volume_layout

        array = np.asarray(image)
        layout = self._layout_as_trained(
            partial(volume_layout, array.shape, array.dtype, channel_axis), rgb
        )
        tiles = tuple(int(side) for side in (tile_shape or layout.volume_shape))
        if len(tiles) != 3 or min(tiles) < 1:
            raise ValueError(
                f"tile_shape of a volume model must be 3 positive sizes (z, y, x); got {tile_shape}"
            )
        if channel_axis is not None:
            array = np.moveaxis(array, channel_axis, -1)
        volume_axis = None if channel_axis is None else -1
        dtype = smallest_unsigned_dtype(self.n_classes)
        labels = np.zeros(layout.stack_shape + layout.volume_shape, dtype)
        one = dataclasses.replace(layout, stack_shape=())
        for index in np.ndindex(*layout.stack_shape):
            stretch = self.settings.stretch_contrast and normalise == "model"
            ranges = self.ranges if normalise == "model" and not stretch else None
            voxels = prepare_volumes(array[index], volume_axis, one, ranges, stretch).channels
            labels[index] = self._predict_volume(voxels, tiles)
        return labels

    def _predict_volume(self, voxels: np.ndarray, tiles: tuple[int, ...]) -> np.ndarray:
        """Labels of a prepared ``(D, H, W, C)`` volume, tile by tile with the halo."""
        import itertools

        shape = voxels.shape[:3]
        labels = np.empty(shape, smallest_unsigned_dtype(self.n_classes))
        halo = self.halo
        starts = [range(0, size, tile) for size, tile in zip(shape, tiles, strict=True)]
        for corner in itertools.product(*starts):
            low = [max(start - halo, 0) for start in corner]
            high = [
                min(start + tile + halo, size)
                for start, tile, size in zip(corner, tiles, shape, strict=True)
            ]
            block = voxels[tuple(slice(a, b) for a, b in zip(low, high, strict=True))]
            classes = self._volume_classes(block)
            inner = classes[
                tuple(
                    slice(start - a, start - a + tile)
                    for start, a, tile in zip(corner, low, tiles, strict=True)
                )
            ]
            target = tuple(
                slice(start, start + side) for start, side in zip(corner, inner.shape, strict=True)
            )
            labels[target] = inner + 1
        return labels

    def _volume_classes(self, voxels: np.ndarray) -> np.ndarray:
        """The argmax class of every voxel of a ``(D, H, W, C)`` float32 block."""
        device = resolve_device(self.settings.device)
        network = self.network.to(device)
        block = torch.from_numpy(np.ascontiguousarray(voxels)).permute(3, 0, 1, 2).unsqueeze(0)
        block = block.to(device).contiguous(memory_format=torch.channels_last_3d)
        with torch.inference_mode():
            return network(block).argmax(dim=1)[0].cpu().numpy()

    def objects(
        self,
        image: Any,
        *,
        channel_axis: int | None = None,
        rgb: bool | None = None,
        spacing: Sequence[float] | None = None,
        settings: SegmentationParams | None = None,
    ) -> np.ndarray:
        """One label per object, background 0, in every plane of ``image``: its classes
        (:meth:`predict`) turned into objects with the ``object_*`` settings of ``settings``
        (None: the model's own; a model trained without objects uses the ``objects``
        preset's), numbered across the planes (:func:`~.objects.objects_in_planes`).

        The classes mean the same in every plane, so the background classes are chosen
        once for the whole image: by the brightness of each class in the image scaled as the
        model scales it, or along every plane's border. ``spacing``: the pixel (voxel) size
        of the last axes, for the split of touching objects. The whole image is read.
        """
        from .objects import object_options, objects_in_planes
        from .params import OBJECT_SETTINGS, PRESETS

        settings = settings or self.settings
        if settings.label_by != "object":
            preset = PRESETS["objects"]
            settings = settings.replace(**{key: getattr(preset, key) for key in OBJECT_SETTINGS})
        classes = np.asarray(self.predict(image, channel_axis=channel_axis, rgb=rgb))
        intensity = None
        if settings.object_background == "intensity":
            intensity = self.brightness(image, channel_axis=channel_axis, rgb=rgb)
        return objects_in_planes(
            classes,
            spatial_ndim=self.spatial_ndim,
            background=settings.object_background or "border",
            intensity=intensity,
            spacing=None if spacing is None else tuple(spacing),
            **object_options(settings),
        )

    def brightness(
        self, image: Any, *, channel_axis: int | None = None, rgb: bool | None = None
    ) -> np.ndarray:
        """The brightness of every pixel of ``image`` (its shape without the channels): the
        mean of its channels scaled as :meth:`predict` scales them, each plane (volume) on
        its own when the model stretches contrast; what ``object_background="intensity"``
        judges classes by."""
        image = np.asarray(image)
        colour = self.is_rgb and rgb is not False and channel_axis is None
        if channel_axis is not None:
            image = np.moveaxis(image, channel_axis, -1)
        elif not colour:
            image = image[..., np.newaxis]
        shape = image.shape[:-1]
        spatial = shape[len(shape) - self.spatial_ndim :]
        units = image.reshape(-1, *spatial, image.shape[-1])
        stretch = self.settings.stretch_contrast
        out = np.empty((len(units), *spatial), np.float32)
        for index, unit in enumerate(units):
            flat = unit.reshape(-1, spatial[-1], unit.shape[-1])  # a volume as one tall plane
            prepared = prepare_image(
                flat, -1, self.is_rgb, None if stretch else self.ranges, stretch=stretch
            )
            out[index] = prepared.channels.mean(axis=-1).reshape(spatial)
        return out.reshape(shape)

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
            "spatial_ndim": self.spatial_ndim,
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
        spatial_ndim = metadata.get("spatial_ndim", 2)
        if spatial_ndim not in (2, 3):
            raise ValueError(f"its spatial_ndim {spatial_ndim!r} is not 2 or 3")
        network = SegmentationNet(
            int(metadata["n_input_channels"]), settings.max_classes, settings.n_conv, spatial_ndim
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
    return SegmentationModel(
        network, settings, int(metadata["n_input_channels"]), is_rgb, ranges, spatial_ndim
    )


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
            if isinstance(module, _BATCH_NORMS):
                module.reset_running_stats()
                module.momentum = None  # a plain average over the batches seen
        frozen.train()
        with torch.no_grad():
            frozen(pixels)
    else:
        measure_batchnorm(frozen, pixels)
    frozen.eval()
    frozen = frozen.to("cpu", memory_format=torch.contiguous_format)
    return SegmentationModel(
        frozen, settings, n_input_channels, is_rgb, ranges, spatial_ndim=network.ndim
    )


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
    return SegmentationModel(
        frozen, settings, n_input_channels, is_rgb, ranges, spatial_ndim=network.ndim
    )


def _measure_input(
    pooled: list[tuple[int, torch.Tensor, torch.Tensor]],
    module: torch.nn.Module,
    inputs: tuple[torch.Tensor, ...],
) -> None:
    """Keep the pixel count, mean and sum of squared deviations of a layer's input per
    channel, then stop the forward pass (the layers after it are not needed yet)."""
    x = inputs[0].float()
    count = x.numel() // x.shape[1]
    axes = (0, *range(2, x.ndim))  # all but the channels (a volume has one axis more)
    mean = x.mean(dim=axes)
    squares = ((x - mean.view(1, -1, *[1] * (x.ndim - 2))) ** 2).sum(dim=axes)
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
    for norm in [m for m in network.modules() if isinstance(m, _BATCH_NORMS)]:
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
    images or an image too large trains on crops sampled across all of it. With
    ``spatial_ndim=3`` the same holds for volumes (3D crops).
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


def _full_resolution(image: Any) -> Any:
    """The first level of napari multiscale data (a sequence of arrays, each no larger than
    the one before, and some smaller), else ``image`` itself."""
    if isinstance(image, np.ndarray) or not isinstance(image, Sequence) or len(image) < 2:
        return image
    levels = list(image)
    if not all(_states_shape_and_dtype(level) for level in levels):
        return image
    shapes = [tuple(level.shape) for level in levels]
    if any(len(shape) != len(shapes[0]) for shape in shapes):
        return image
    shrinking = all(
        all(b <= a for a, b in zip(big, small, strict=True)) and small != big
        for big, small in zip(shapes, shapes[1:], strict=False)
    )
    return levels[0] if shrinking else image


def _states_shape_and_dtype(array: Any) -> bool:
    """Whether ``array`` states a shape and a numpy dtype (numpy, dask, zarr, h5py)."""
    if getattr(array, "shape", None) is None or getattr(array, "dtype", None) is None:
        return False
    try:
        np.dtype(array.dtype)
    except TypeError:  # a torch tensor's dtype
        return False
    return hasattr(array, "__getitem__")


def normalize_axis_index(axis: int, ndim: int) -> int:
    """``axis`` as a non-negative axis of an array of ``ndim`` dimensions (AxisError if out
    of range)."""
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(axis, ndim)
    return axis % ndim


class _Plane:
    """One plane of a (possibly lazy) image, read a region at a time with its channels last.

    ``fixed`` gives the index of every stack axis; ``channel_axis`` is the source's (None for
    grayscale). Only the requested region is read from the source.
    """

    def __init__(self, source: Any, fixed: dict[int, int], channel_axis: int | None) -> None:
        self.source = source
        self.fixed = fixed
        self.channel_axis = channel_axis
        shape = tuple(int(size) for size in source.shape)
        spatial = [a for a in range(len(shape)) if a != channel_axis and a not in fixed]
        self.row_axis, self.col_axis = spatial
        self.n_channels = None if channel_axis is None else shape[channel_axis]
        plane = (shape[self.row_axis], shape[self.col_axis])
        self.shape = plane if self.n_channels is None else (*plane, self.n_channels)
        self.dtype = np.dtype(source.dtype)

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        """The region ``rows`` x ``cols`` as ``(h, w)`` or ``(h, w, C)``."""
        key: list[Any] = []
        for axis in range(len(self.source.shape)):
            if axis in self.fixed:
                key.append(self.fixed[axis])
            else:
                key.append({self.row_axis: rows, self.col_axis: cols}.get(axis, slice(None)))
        block = np.asarray(self.source[tuple(key)])
        if self.channel_axis is not None:
            # the remaining axes keep their order: rows, columns and channels in some order
            kept = [a for a in range(len(self.source.shape)) if a not in self.fixed]
            order = [kept.index(a) for a in (self.row_axis, self.col_axis, self.channel_axis)]
            block = np.transpose(block, order)
        return block

    def tiles(self, tile_shape: tuple[int, int]) -> Iterator[np.ndarray]:
        """Every tile of the plane, read in turn."""
        rows, cols = tile_shape
        for top in range(0, self.shape[0], rows):
            for left in range(0, self.shape[1], cols):
                yield self.read(slice(top, top + rows), slice(left, left + cols))


def _plane_ranges(
    plane: _Plane, is_rgb: bool, tile_shape: tuple[int, int], stretch: bool = False
) -> Ranges:
    """The intensity ranges :func:`.normalize.prepare_image` finds on the whole plane,
    measured by reading it tile by tile (a few passes; the memory of a tile): uint8 is 0 to
    255, float colour within [0, 1] is 0 to 1 (unless ``stretch``), anything else spans its
    1st to 99.8th percentile, exactly as ``np.percentile`` gives it."""
    n_groups = 1 if plane.n_channels is None or is_rgb else plane.n_channels

    def groups(block: np.ndarray) -> list[np.ndarray]:
        if plane.n_channels is None:
            return [block.ravel()]
        if is_rgb:
            return [block[..., :3].ravel()]
        return [block[..., c].ravel() for c in range(n_groups)]

    if plane.dtype == np.uint8 and not stretch:
        return tuple((0.0, 255.0) for _ in range(n_groups))
    low = [np.inf] * n_groups
    high = [-np.inf] * n_groups
    for block in plane.tiles(tile_shape):
        if block.dtype.kind == "f" and not np.all(np.isfinite(block)):
            raise ValueError(
                "image contains NaN or infinite values; replace them (e.g. np.nan_to_num)"
            )
        for g, values in enumerate(groups(block)):
            low[g] = min(low[g], _to_float64(values.min()))
            high[g] = max(high[g], _to_float64(values.max()))
    count = plane.shape[0] * plane.shape[1] * (3 if is_rgb else 1)
    ranges = []
    for g in range(n_groups):
        floats = is_rgb and plane.dtype.kind == "f"
        in_unit = low[g] >= -RGB_FLOAT_SLACK and high[g] <= 1 + RGB_FLOAT_SLACK
        if floats and in_unit and not stretch:
            ranges.append((0.0, 1.0))
            continue
        unit = 2.0**64 if max(high[g], -low[g]) > 1e300 else 1.0

        def values_of(g: int = g, unit: float = unit) -> Iterator[np.ndarray]:
            for block in plane.tiles(tile_shape):
                yield groups(block)[g].astype(np.float64) / unit

        if plane.dtype.kind in "ui" and plane.dtype.itemsize <= 2:  # a histogram is exact
            histogram = np.zeros(int(high[g] - low[g]) + 1, np.int64)
            for block in plane.tiles(tile_shape):
                shifted = groups(block)[g].astype(np.int64) - int(low[g])
                histogram += np.bincount(shifted, minlength=len(histogram))
            span = _percentiles(partial(_ranked, histogram, low[g]), count)
        else:
            ranked = partial(_order_statistics, values_of, low=low[g] / unit, high=high[g] / unit)
            span = _percentiles(ranked, count)
        if span[1] <= span[0]:  # almost constant: the full range, as prepare_image
            span = (low[g] / unit, high[g] / unit)
        ranges.append((float(span[0]) * unit, float(span[1]) * unit))
    return tuple(ranges)


def _to_float64(value: Any) -> float:
    with np.errstate(over="ignore"):
        result = float(np.float64(value))
    if not np.isfinite(result):
        raise ValueError(
            "image has values beyond float64's range (about 1.8e308): rescale it first"
        )
    return result


def _percentiles(
    order_statistics: Callable[[list[int]], list[float]], count: int
) -> tuple[float, float]:
    """``np.percentile`` of ``count`` values at :mod:`.normalize`'s robust percentiles, with
    numpy's arithmetic (linear interpolation between two order statistics), from
    ``order_statistics(ranks)``, the values of the given 0-based ranks."""
    quantiles = np.true_divide(np.asanyarray([LOW_PERCENTILE, HIGH_PERCENTILE]), 100)
    virtual = (count - 1) * quantiles
    previous = np.floor(virtual)
    above = virtual >= count - 1
    previous[above] = count - 1
    following = np.minimum(previous + 1, count - 1)
    ranks = sorted({int(r) for r in np.concatenate([previous, following])})
    found = dict(zip(ranks, order_statistics(ranks), strict=True))
    gamma = np.asanyarray(virtual - np.floor(virtual))
    result = []
    for q, p, f in zip(range(len(quantiles)), previous, following, strict=True):
        a, b, t = np.float64(found[int(p)]), np.float64(found[int(f)]), gamma[q]
        if above[q]:
            result.append(float(np.float64(found[count - 1])))
            continue
        difference = b - a
        value = b - difference * (1 - t) if t >= 0.5 else a + difference * t
        result.append(float(value))
    return result[0], result[1]


def _ranked(histogram: np.ndarray, low: float, ranks: list[int]) -> list[float]:
    """The values of 0-based ``ranks`` among integers counted in ``histogram`` (bin i holds
    the value ``low + i``)."""
    ends = np.cumsum(histogram)
    return [float(low + np.searchsorted(ends, rank, side="right")) for rank in ranks]


def _order_statistics(
    values: Callable[[], Iterator[np.ndarray]],
    ranks: list[int],
    low: float,
    high: float,
    n_bins: int = 4096,
    gather_limit: int = 1 << 20,
) -> list[float]:
    """The ``ranks``-th smallest of all values (0-based), found by narrowing a histogram
    around each in passes over the values, then sorting the few left in its bin."""
    # for each rank: the interval [lo, hi] that holds it and its rank among the values there
    state = {rank: (low, high, rank, None) for rank in ranks}  # (lo, hi, rank in, count)
    found: dict[int, float] = {}
    while len(found) < len(ranks):
        pending = [r for r in ranks if r not in found]
        gather = [r for r in pending if state[r][3] is not None and state[r][3] <= gather_limit]
        narrow = [r for r in pending if r not in gather]
        edges = {r: _bin_edges(*state[r][:2], n_bins) for r in narrow}
        counts = {r: np.zeros(len(edges[r]) - 1, np.int64) for r in narrow}
        kept: dict[int, list[np.ndarray]] = {r: [] for r in gather}
        for chunk in values():
            for r in narrow:
                lo, hi = state[r][:2]
                inside = chunk[(chunk >= lo) & (chunk <= hi)]
                bins = np.searchsorted(edges[r][1:-1], inside, side="right")
                counts[r] += np.bincount(bins, minlength=len(counts[r]))
            for r in gather:
                lo, hi = state[r][:2]
                kept[r].append(chunk[(chunk >= lo) & (chunk <= hi)])
        for r in gather:
            within = np.concatenate(kept[r])
            k = state[r][2]
            found[r] = float(np.partition(within, k)[k])
        for r in narrow:
            cumulative = np.cumsum(counts[r])
            k = state[r][2]
            b = int(np.searchsorted(cumulative, k, side="right"))
            before = int(cumulative[b - 1]) if b else 0
            lo = float(edges[r][b])
            last = b == len(counts[r]) - 1
            hi = state[r][1] if last else float(np.nextafter(edges[r][b + 1], -np.inf))
            if lo >= hi:  # one value left
                found[r] = lo
            else:
                state[r] = (lo, hi, k - before, int(counts[r][b]))
    return [found[r] for r in ranks]


def _bin_edges(low: float, high: float, n_bins: int) -> np.ndarray:
    """Increasing edges from ``low`` to ``high`` (fewer bins where few values lie between)."""
    edges = np.unique(np.linspace(low, high, n_bins + 1))
    edges[0], edges[-1] = low, high
    return edges
