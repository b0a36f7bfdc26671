"""The self-training loop: one network trained on an image (which it then segments), or
on crops across a stack, a large image or a list of images."""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .crops import (
    CropPool,
    CropSampling,
    TrainingData,
    check_crop_memory,
    fits_in_memory,
    intensity_ranges,
    sample_crops,
    training_data,
)
from .devices import autocast_for, autograd_enabled, precision_flags, resolve_device
from .fitted import SegmentationModel, preview_model, snapshot_model
from .labels import MergeHierarchy
from .memory import check_memory
from .model import SegmentationNet
from .normalize import PreparedImage, Ranges, plane_shape, prepare_image
from .optim import MomentumSGD, Optimizer
from .params import PRESETS, SegmentationParams
from .postprocess import LabelFinisher
from .refine import SuperpixelRefiner, superpixels_for
from .volumes import check_spacing, check_spatial_ndim


class FitStep:
    """The state of a network's training after one iteration.

    ``n_classes`` counts the network's classes in this iteration's refined prediction: what
    the stopping rule (``min_classes``) watches. ``prediction`` is the network's class of
    every pixel it trained on in this iteration, ``(B, H, W)`` on the training device: the
    whole image (``B`` = 1) or a batch of crops. ``model`` is the network as a
    :class:`~napari_unsupervised_segmentation.core.fitted.SegmentationModel` with its
    BatchNorm statistics measured over all the training data (a pass over that data);
    ``preview_model`` the same network with the statistics kept while training (no pass:
    for a live display).
    """

    def __init__(
        self,
        iteration: int,
        n_classes: int,
        is_last: bool,
        prediction: torch.Tensor,
        loss: torch.Tensor,
        model_of: Callable[[], SegmentationModel] | None = None,
        preview_of: Callable[[], SegmentationModel] | None = None,
    ) -> None:
        self.iteration = iteration
        self.n_classes = n_classes
        self.is_last = is_last
        self.prediction = prediction
        self._loss = loss
        self._model_of = model_of
        self._preview_of = preview_of

    @property
    def loss(self) -> float:
        """Cross-entropy between the responses and the refined labels in this iteration."""
        return float(self._loss)

    @property
    def model(self) -> SegmentationModel:
        """The network trained so far, to label other images with the same classes
        (:class:`~napari_unsupervised_segmentation.core.fitted.SegmentationModel`). The last
        step's gives ``prediction`` on its training data; read an earlier step's while it
        is the current one."""
        if self._model_of is None:
            raise ValueError("a constant image trains no network: there is no model to apply")
        return self._model_of()

    @property
    def preview_model(self) -> SegmentationModel:
        """The network trained so far with the BatchNorm statistics kept while training:
        cheap to make, for showing the classes on other planes while training goes on."""
        if self._preview_of is None:
            raise ValueError("a constant image trains no network: there is no model to apply")
        return self._preview_of()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(iteration={self.iteration}, n_classes={self.n_classes}, "
            f"is_last={self.is_last})"
        )


class Step(FitStep):
    """A step of :func:`iter_segment`: the training's state, and the labels of the image.

    The labels a user gets can number more or fewer than ``n_classes`` (post-processing
    splits and joins segments): ``labels.max()`` is their count. ``labels`` and ``loss``
    stay on the device until read, so that a caller that only watches ``n_classes`` costs
    no copy per iteration. ``preview_labels`` are for a live display: they never wait for
    the image-level maps that post-processing needs.
    """

    def __init__(self, fitted: FitStep, finish: LabelFinisher) -> None:
        super().__init__(
            fitted.iteration,
            fitted.n_classes,
            fitted.is_last,
            fitted.prediction,
            fitted._loss,
            fitted._model_of,
            fitted._preview_of,
        )
        self._finish = finish
        self._labels: np.ndarray | None = None
        self._hierarchy: MergeHierarchy | None = None

    @property
    def labels(self) -> np.ndarray:
        """Label image of the input's spatial shape, 1..n, smallest unsigned dtype."""
        if self._labels is None:
            self._labels = self._finish(self.prediction[0].cpu().numpy())
        return self._labels

    @property
    def brightness(self) -> np.ndarray:
        """The brightness per pixel of the image as the network saw it (the mean of its
        scaled channels), which ``object_background="intensity"`` judges classes by."""
        return self._finish.brightness

    @property
    def hierarchy(self) -> MergeHierarchy:
        """``labels`` at every level of detail, to cut again without training.

        ``hierarchy.labels(detail)`` re-cuts the boundary merge in milliseconds per megapixel:
        level 0 gives exactly ``labels``, each level up about twice as many (smaller)
        segments, each level down about half as many (see
        :class:`~napari_unsupervised_segmentation.core.labels.MergeHierarchy`). Made on the
        first read, in a little more time than ``labels`` (the merge runs on to the end).
        """
        if self._hierarchy is None:
            self._hierarchy = self._finish.hierarchy(self.prediction[0].cpu().numpy())
        return self._hierarchy

    @property
    def preview_labels(self) -> np.ndarray:
        """Labels to show while training goes on, at once: ``labels`` when the image-level
        maps of post-processing are ready, else the network's classes relabelled 1..n
        (smallest unsigned dtype), while those maps are made in a background thread."""
        if self._labels is not None:
            return self._labels
        if self._finish.maps_ready:
            return self.labels
        return self._finish.preview(self.prediction[0].cpu().numpy())


def resolve_params(
    params: SegmentationParams | str | None = None, **overrides: Any
) -> SegmentationParams:
    """Parameters from a preset name (None: ``'default'``) or an instance, with overrides."""
    if params is None:
        params = "default"
    if isinstance(params, str):
        if params not in PRESETS:
            raise ValueError(f"unknown preset {params!r}; choose one of {sorted(PRESETS)}")
        params = PRESETS[params]
    if not isinstance(params, SegmentationParams):
        raise TypeError(f"params must be a SegmentationParams or a preset name, not {params!r}")
    return params.replace(**overrides) if overrides else params


def iter_segment(
    image: np.ndarray,
    params: SegmentationParams | str | None = None,
    *,
    channel_axis: int | None = None,
    rgb: bool | None = None,
    spatial_ndim: int = 2,
    spacing: tuple[float, ...] | None = None,
    **overrides: Any,
) -> Iterator[Step]:
    """Segment ``image`` by self-training, yielding a :class:`Step` after every iteration.

    Parameters
    ----------
    image : array_like
        2D grayscale ``(H, W)``, or 2D with channels (RGB, RGBA, multichannel) along
        ``channel_axis``; any real dtype.
    params : SegmentationParams or str, optional
        A parameter set or a preset name (``'default'``, ``'paper'``).
    channel_axis : int or None
        The channel axis; None for grayscale.
    rgb : bool or None
        Whether the channels are colour (RGB, or RGBA whose alpha is dropped): superpixels
        and edges then work in Lab. False keeps every channel as an independent one
        (microscopy stains); None guesses: three channels last are RGB, four uint8 ones
        RGBA, channels on any other axis independent.
    spatial_ndim : {2, 3}
        3: ``image`` is a volume ``(z, y, x)`` (with channels on ``channel_axis``),
        segmented as one 3D object with 3x3x3 convolutions and 3D SLIC supervoxels (see
        :mod:`~napari_unsupervised_segmentation.core.volumes`).
    spacing : sequence of float or None
        The size of a pixel ``(dy, dx)`` or voxel ``(dz, dy, dx)`` in any unit, for
        anisotropic data: it weighs SLIC's distances. None: isotropic.
    **overrides
        Any field of :class:`SegmentationParams`, e.g. ``max_iter=100, seed=1``.

    Yields
    ------
    Step
        Iteration number, class count, loss and (read lazily) the labels. The last step has
        ``is_last=True``. Closing the generator stops training at once.

    Raises
    ------
    ValueError
        For a bad image or bad parameters, before any training starts.
    TypeError
        For an unknown setting name, a ``params`` that is neither a preset name nor a
        :class:`SegmentationParams`, or a ``channel_axis`` that is not an integer.
    MemoryError
        When the image needs more memory than the computer has available (see
        :func:`~napari_unsupervised_segmentation.core.memory.check_memory`), before any
        training starts.
    """
    settings = resolve_params(params, **overrides)
    if check_spatial_ndim(spatial_ndim) == 3:
        from .volumes import iter_volume_steps

        return iter_volume_steps(
            image, settings, channel_axis=channel_axis, rgb=rgb, spacing=spacing
        )
    pixel_spacing = check_spacing(spacing, 2)
    device = resolve_device(settings.device)
    _check_whole_image_memory(image, channel_axis, settings, device)
    prepared = prepare_image(image, channel_axis, rgb, stretch=settings.stretch_contrast)
    fitting = fit_image(prepared, settings, device, pixel_spacing)  # one network, this image
    # its image-level maps made once
    finish = LabelFinisher(settings, prepared, device, pixel_spacing)
    # each step's labels: its prediction on the image, finished when they are read
    return (Step(fitted, finish) for fitted in fitting)


def _check_whole_image_memory(
    image: Any, channel_axis: int | None, settings: SegmentationParams, device: torch.device
) -> None:
    """MemoryError before any copy is made when training on the whole image would not fit."""
    plane = plane_shape(np.shape(image), channel_axis)
    if plane is not None:  # (else prepare_image says what is wrong)
        check_memory(
            *plane,
            settings,
            network_in_memory=device.type in ("cpu", "mps"),
            n_input_channels=1 if channel_axis is None else np.shape(image)[channel_axis],
        )


def segment(
    image: np.ndarray,
    params: SegmentationParams | str | None = None,
    *,
    channel_axis: int | None = None,
    rgb: bool | None = None,
    spatial_ndim: int = 2,
    spacing: tuple[float, ...] | None = None,
    **overrides: Any,
) -> np.ndarray:
    """Segment ``image`` and return the final labels (see :func:`iter_segment`).

    Returns
    -------
    numpy.ndarray
        Labels of the image's spatial shape (a volume's with ``spatial_ndim=3``),
        consecutive from 1, in the smallest unsigned integer dtype that holds them.
    """
    steps = iter_segment(
        image,
        params,
        channel_axis=channel_axis,
        rgb=rgb,
        spatial_ndim=spatial_ndim,
        spacing=spacing,
        **overrides,
    )
    last_step = deque(steps, maxlen=1)[0]  # max_iter >= 1 guarantees one step
    return last_step.labels


def build_model(
    in_channels: int, settings: SegmentationParams, device: torch.device, ndim: int = 2
) -> SegmentationNet:
    """The network with seeded Xavier initialisation, identical on every device (float32,
    whatever ``torch.set_default_dtype`` the caller chose); the caller's random state is
    left as it was. ``ndim``: 2 for images, 3 for volumes (3x3x3 convolutions)."""
    # Built on the CPU whatever the default device; not on the meta device, which first
    # imports sympy and more (about 0.3 s before the first iteration). fork_rng: the
    # layers' own initialisation draws from the global generator.
    with torch.device("cpu"), torch.random.fork_rng(devices=[]):
        model = SegmentationNet(in_channels, settings.max_classes, settings.n_conv, ndim)
    model = model.float()
    generator = torch.Generator()
    if settings.seed is None:
        generator.seed()
    else:
        generator.manual_seed(settings.seed)
    model.reset_parameters(generator)
    # Channels-last runs the convolutions about 1.4x faster on the CPUs we measured.
    return model.to(device=device, memory_format=model.memory_format)


def image_tensor(image: PreparedImage, device: torch.device) -> torch.Tensor:
    """The image as a ``(1, C, H, W)`` channels-last tensor on ``device``, the network's input."""
    pixels = torch.from_numpy(image.channels).permute(2, 0, 1).unsqueeze(0)
    return pixels.to(device).contiguous(memory_format=torch.channels_last)


def iter_fit(
    images: Any,
    params: SegmentationParams | str | None = None,
    *,
    channel_axis: int | None = None,
    rgb: bool | None = None,
    spatial_ndim: int = 2,
    spacing: Sequence[float] | None = None,
    crops: CropSampling | bool | None = None,
    **overrides: Any,
) -> Iterator[FitStep]:
    """Train one network on ``images``, yielding a :class:`FitStep` after every iteration;
    the last step's ``model`` labels any image with the same channels.

    Parameters
    ----------
    images : array_like or list of array_like
        One 2D image (as for :func:`iter_segment`); a stack, whose axes before a plane's
        rows and columns (and other than ``channel_axis``) are planes (z, time, ...); or a
        list of images or stacks with the same channels, whose planes may differ in size.
        Lazy arrays (dask, zarr) are read region by region, never whole.
    params : SegmentationParams or str, optional
        A parameter set or a preset name (``'default'``, ``'paper'``).
    channel_axis : int or None
        The channel axis of every array; None for grayscale.
    rgb : bool or None
        Whether the channels are colour (see :func:`iter_segment`).
    spatial_ndim : {2, 3}
        2: planes. 3: volumes, the last three axes other than ``channel_axis`` (z, y, x);
        any before them are volumes (see
        :func:`~napari_unsupervised_segmentation.core.volumes.iter_fit_volumes`).
    spacing : sequence of float or None
        Pixel ``(dy, dx)`` or voxel ``(dz, dy, dx)`` size; it weighs SLIC's distances.
        None: equal sizes.
    crops : CropSampling, bool or None
        None: one 2D image that fits in memory (by
        :func:`~napari_unsupervised_segmentation.core.memory.estimate_bytes`) trains whole,
        as :func:`segment` trains on it, and anything else on crops with the default
        :class:`~napari_unsupervised_segmentation.core.crops.CropSampling`. True: crops
        always; a ``CropSampling``: crops of that size, pool and batch; False: the whole
        image always (a single 2D image only; MemoryError when it would not fit).
    **overrides
        Any field of :class:`SegmentationParams`.

    Yields
    ------
    FitStep
        Iteration, class count, loss, ``model`` and ``preview_model``; the last has
        ``is_last=True``. Closing the generator stops training at once.

    Raises
    ------
    ValueError
        For bad images or parameters (naming the list item), before any training.
    MemoryError
        When even the crops would not fit in memory, or with ``crops=False``, the image.
    """
    settings = resolve_params(params, **overrides)
    if check_spatial_ndim(spatial_ndim) == 3:
        from .volumes import iter_fit_volumes

        return iter_fit_volumes(images, settings, channel_axis, rgb, spacing, crops)
    pixel_spacing = check_spacing(spacing, 2)
    device = resolve_device(settings.device)
    data = training_data(images, channel_axis, rgb)
    network_in_memory = device.type in ("cpu", "mps")
    if crops is False and not data.is_single_plane:
        raise ValueError("crops=False trains on one 2D image only; a stack or list trains on crops")
    if crops is False or (
        crops is None
        and data.is_single_plane
        and fits_in_memory(data.sources[0].layout, settings, network_in_memory)
    ):
        image = data.sources[0].array  # (a list of one image: the image)
        _check_whole_image_memory(image, channel_axis, settings, device)
        prepared = prepare_image(image, channel_axis, rgb, stretch=settings.stretch_contrast)
        return fit_image(prepared, settings, device, pixel_spacing)
    sampling = crops if isinstance(crops, CropSampling) else CropSampling()
    shape = data.crop_shape(sampling.size)
    check_crop_memory(sampling, shape, settings, data.n_input_channels, network_in_memory)
    ranges, constant = intensity_ranges(data)
    return fit_crops(data, ranges, constant, sampling, settings, device, pixel_spacing)


def fit_image(
    image: PreparedImage,
    settings: SegmentationParams,
    device: torch.device,
    spacing: tuple[float, float] | None = None,
) -> Iterator[FitStep]:
    """Train on one whole image: its superpixels once, the whole image every iteration.
    ``spacing``: the pixel size (dy, dx) for SLIC, None when equal."""
    if image.is_constant:
        yield blank_step((1, *image.spatial_shape))
        return
    superpixels = superpixels_for(image, settings, spacing=spacing)
    yield from fit_whole(
        superpixels,
        partial(image_tensor, image, device),
        image.channels.shape[-1],
        image.is_rgb,
        image.ranges,
        settings,
        device,
    )


def fit_whole(
    superpixels: np.ndarray,
    make_input: Callable[[], torch.Tensor],
    n_input_channels: int,
    is_rgb: bool,
    ranges: Ranges,
    settings: SegmentationParams,
    device: torch.device,
    ndim: int = 2,
) -> Iterator[FitStep]:
    """Train on the whole input, ``make_input()`` (an image, or volumes, as one tensor on
    ``device``), every iteration, refined by its ``superpixels`` (numbered across it)."""
    with autograd_enabled():  # tensors made under the caller's inference_mode cannot train
        refine = SuperpixelRefiner(superpixels, settings.max_classes, device)
        model = build_model(n_input_channels, settings, device, ndim=ndim)
        optimizer = MomentumSGD(model.parameters(), lr=settings.lr, momentum=settings.momentum)
        pixels = make_input()
    yield from model_steps(
        model,
        optimizer,
        lambda iteration: (pixels, refine),
        settings,
        pixels,
        n_input_channels,
        is_rgb,
        ranges,
    )


def fit_crops(
    data: TrainingData,
    ranges: Ranges,
    constant: bool,
    sampling: CropSampling,
    settings: SegmentationParams,
    device: torch.device,
    spacing: tuple[float, float] | None = None,
) -> Iterator[FitStep]:
    """Train on crops: a pool sampled once across all planes, a batch of it every iteration.
    ``spacing``: the pixel size (dy, dx) for SLIC, None when equal."""
    shape = data.crop_shape(sampling.size)

    def make_pool(rng: np.random.Generator) -> CropPool:
        spots = sample_crops(data, sampling, rng)
        return CropPool(data, spots, shape, ranges, settings, device, spacing)

    return fit_pool(
        make_pool, shape, constant, data.n_input_channels, data.is_rgb, ranges, sampling,
        settings, device,
    )  # fmt: skip


def fit_pool(
    make_pool: Callable[[np.random.Generator], Any],
    crop_shape: tuple[int, ...],
    constant: bool,
    n_input_channels: int,
    is_rgb: bool,
    ranges: Ranges,
    sampling: CropSampling,
    settings: SegmentationParams,
    device: torch.device,
) -> Iterator[FitStep]:
    """Train on a pool of 2D or 3D crops of ``crop_shape``, ``make_pool(rng)``, a batch of
    it every iteration; a step's ``model`` has BatchNorm statistics over the whole pool.

    ``rng`` (seeded by ``settings.seed``) picks the pool's crops, then each iteration's
    batch. The pool has ``__len__``, ``batch(indices)`` (the network's input and its
    refinement) and ``in_batches(size)`` (the whole pool, as network inputs).
    """
    if constant:
        yield blank_step((1, *crop_shape))
        return
    rng = np.random.default_rng(settings.seed)
    with autograd_enabled():
        pool = make_pool(rng)
        model = build_model(n_input_channels, settings, device, ndim=len(crop_shape))
        optimizer = MomentumSGD(model.parameters(), lr=settings.lr, momentum=settings.momentum)
    batch_size = min(sampling.batch, len(pool))

    def batch(iteration: int) -> tuple[torch.Tensor, SuperpixelRefiner]:
        return pool.batch(np.sort(rng.choice(len(pool), batch_size, replace=False)))

    yield from model_steps(
        model, optimizer, batch, settings, lambda: pool.in_batches(batch_size),
        n_input_channels, is_rgb, ranges,
    )  # fmt: skip


def blank_step(shape: tuple[int, ...]) -> FitStep:
    """The one step of training on a constant image: nothing to separate (the network
    would only draw its zero-padding border), one class of ``shape`` everywhere."""
    return FitStep(1, 1, True, torch.zeros(shape, dtype=torch.int64), torch.zeros(()))


def model_steps(
    model: SegmentationNet,
    optimizer: Optimizer,
    batch: Callable[[int], tuple[torch.Tensor, SuperpixelRefiner]],
    settings: SegmentationParams,
    measure: torch.Tensor | Callable[[], Iterable[torch.Tensor]],
    n_input_channels: int,
    is_rgb: bool,
    ranges: Ranges,
) -> Iterator[FitStep]:
    """:func:`training_steps`, each step with its model: BatchNorm statistics measured on
    ``measure`` (the training input, or a function giving it in batches; see
    :func:`~.fitted.snapshot_model`), and its preview."""
    about = {"n_input_channels": n_input_channels, "is_rgb": is_rgb, "ranges": ranges}
    return training_steps(
        model,
        optimizer,
        batch,
        settings,
        snapshot=lambda network: snapshot_model(network, measure, settings, **about),
        preview=lambda network: preview_model(network, settings, **about),
    )


def training_steps(
    model: SegmentationNet,
    optimizer: Optimizer,
    batch: Callable[[int], tuple[torch.Tensor, SuperpixelRefiner]],
    settings: SegmentationParams,
    snapshot: Callable[[SegmentationNet], SegmentationModel] | None = None,
    preview: Callable[[SegmentationNet], SegmentationModel] | None = None,
) -> Iterator[FitStep]:
    """The paper's iterations: predict, refine by superpixels, one SGD step on the refined labels.

    ``batch(iteration)`` gives that iteration's input (the whole image each time, or a
    batch of crops) and its refinement. ``snapshot`` makes a step's ``model`` from a
    network, ``preview`` its ``preview_model``: the last step's from the network as it
    made that step's prediction (before the step's update), the others' from the network
    as it is when read.

    Stops after ``settings.max_iter`` steps or once ``settings.min_classes`` classes or fewer are
    left (the public demo's rule); ``benchmarks/demo_loop.py`` runs it with the demo's start.
    """
    # a kept step holds its argmax: 1-2 bytes per pixel instead of int64's 8
    kept_dtype = _smallest_label_dtype(settings.max_classes)
    model.train()
    for iteration in range(1, settings.max_iter + 1):
        pixels, refine = batch(iteration)
        device = pixels.device
        # the precision's flags hold for the backward pass too; autocast only for the forward
        with autograd_enabled(), precision_flags(settings.precision, device):
            with autocast_for(settings.precision, device):
                responses = model(pixels)
                prediction = responses.detach().argmax(dim=1)
                target, label_counts = refine(prediction)
                loss = F.cross_entropy(responses.float(), target)
                if settings.continuity_weight:
                    loss = loss + settings.continuity_weight * continuity_loss(responses)
            n_classes = int((label_counts > 0).sum())
            stop = iteration == settings.max_iter or n_classes <= settings.min_classes
            # the last step's model is the network that made its prediction
            keep = stop and (snapshot is not None or preview is not None)
            as_predicted = copy.deepcopy(model) if keep else model
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model_of = None if snapshot is None else partial(snapshot, as_predicted)
        preview_of = None if preview is None else partial(preview, as_predicted)
        kept = prediction.to(kept_dtype)
        yield FitStep(iteration, n_classes, stop, kept, loss.detach(), model_of, preview_of)
        if stop:
            return


def _smallest_label_dtype(max_classes: int) -> torch.dtype:
    """The smallest torch integer dtype that holds the argmax values 0..max_classes-1."""
    for dtype in (torch.uint8, torch.int16, torch.int32):
        if max_classes - 1 <= torch.iinfo(dtype).max:
            return dtype
    return torch.int64


def continuity_loss(responses: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between adjacent responses, summed over the spatial axes
    (vertical and horizontal; in a volume also between planes).

    The spatial continuity term of Kim, Kanezaki and Tanaka (IEEE TIP 2020), Eq. 4: it
    pulls neighbouring pixels towards the same label without superpixels.
    """
    responses = responses.float()
    axes = range(2, responses.ndim)
    differences = [torch.diff(responses, dim=axis).abs().mean() for axis in axes]
    total = differences[0]
    for difference in differences[1:]:
        total = total + difference
    return total
