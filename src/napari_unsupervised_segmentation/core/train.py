"""The self-training loop: one network trained on the one image it segments."""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .devices import autocast_for, autograd_enabled, precision_flags, resolve_device
from .fitted import SegmentationModel, snapshot_model
from .labels import MergeHierarchy
from .memory import check_memory
from .model import SegmentationNet
from .normalize import PreparedImage, plane_shape, prepare_image
from .optim import MomentumSGD, Optimizer
from .params import PRESETS, SegmentationParams
from .postprocess import LabelFinisher
from .refine import SuperpixelRefiner, compute_superpixels


class Step:
    """The state after one training iteration.

    ``n_classes`` counts the network's classes in this iteration's refined prediction: what
    the stopping rule (``min_labels``) watches. The labels a user gets can number more or
    fewer (post-processing splits and joins segments): ``labels.max()`` is their count.
    ``labels`` and ``loss`` stay on the device until read, so that a caller that only
    watches ``n_classes`` costs no copy per iteration. ``preview_labels`` are for a live
    display: they never wait for the image-level maps that post-processing needs.
    """

    def __init__(
        self,
        iteration: int,
        n_classes: int,
        is_last: bool,
        prediction: torch.Tensor,
        loss: torch.Tensor,
        finish: LabelFinisher,
        model_of: Callable[[], SegmentationModel] | None = None,
    ) -> None:
        self.iteration = iteration
        self.n_classes = n_classes
        self.is_last = is_last
        self._prediction = prediction
        self._loss = loss
        self._finish = finish
        self._model_of = model_of
        self._labels: np.ndarray | None = None
        self._hierarchy: MergeHierarchy | None = None

    @property
    def loss(self) -> float:
        """Cross-entropy between the responses and the refined labels in this iteration."""
        return float(self._loss)

    @property
    def labels(self) -> np.ndarray:
        """Label image of the input's spatial shape, 1..n, smallest unsigned dtype."""
        if self._labels is None:
            self._labels = self._finish(self._prediction.cpu().numpy())
        return self._labels

    @property
    def hierarchy(self) -> MergeHierarchy:
        """``labels`` at every level of detail, to cut again without training.

        ``hierarchy.labels(detail)`` re-cuts the boundary merge in milliseconds per megapixel:
        level 0 gives exactly ``labels``, each level up about twice as many (smaller)
        segments, each level down about half as many (see
        :class:`~napari_unsupervised_segmentation.core.labels.MergeHierarchy`). Made on the
        first read, in about the time ``labels`` takes.
        """
        if self._hierarchy is None:
            self._hierarchy = self._finish.hierarchy(self._prediction.cpu().numpy())
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
        return self._finish.preview(self._prediction.cpu().numpy())

    @property
    def model(self) -> SegmentationModel:
        """The network trained so far, to label other images with the same classes
        (:class:`~napari_unsupervised_segmentation.core.fitted.SegmentationModel`). The last
        step's gives ``labels`` (before post-processing) on its training image; read an
        earlier step's while it is the current one."""
        if self._model_of is None:
            raise ValueError("a constant image trains no network: there is no model to apply")
        return self._model_of()

    def __repr__(self) -> str:
        return (
            f"Step(iteration={self.iteration}, n_classes={self.n_classes}, is_last={self.is_last})"
        )


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
    device = resolve_device(settings.device)
    plane = plane_shape(np.shape(image), channel_axis)
    if plane is not None:  # (else prepare_image says what is wrong) before any copy is made
        check_memory(
            *plane,
            settings,
            network_in_memory=device.type in ("cpu", "mps"),
            n_input_channels=1 if channel_axis is None else np.shape(image)[channel_axis],
        )
    prepared = prepare_image(image, channel_axis, rgb)
    return _train(prepared, settings, device)


def segment(
    image: np.ndarray,
    params: SegmentationParams | str | None = None,
    *,
    channel_axis: int | None = None,
    rgb: bool | None = None,
    **overrides: Any,
) -> np.ndarray:
    """Segment ``image`` and return the final labels (see :func:`iter_segment`).

    Returns
    -------
    numpy.ndarray
        Labels of the image's spatial shape, consecutive from 1, in the smallest unsigned
        integer dtype that holds them.
    """
    steps = iter_segment(image, params, channel_axis=channel_axis, rgb=rgb, **overrides)
    last_step = deque(steps, maxlen=1)[0]  # max_iter >= 1 guarantees one step
    return last_step.labels


def build_model(
    in_channels: int, settings: SegmentationParams, device: torch.device
) -> SegmentationNet:
    """The network with seeded Xavier initialisation, identical on every device (float32,
    whatever ``torch.set_default_dtype`` the caller chose); the caller's random state is
    left as it was."""
    # Built on the CPU whatever the default device; not on the meta device, which first
    # imports sympy and more (about 0.3 s before the first iteration). fork_rng: the
    # layers' own initialisation draws from the global generator.
    with torch.device("cpu"), torch.random.fork_rng(devices=[]):
        model = SegmentationNet(in_channels, settings.n_channels, settings.n_conv)
    model = model.float()
    generator = torch.Generator()
    if settings.seed is None:
        generator.seed()
    else:
        generator.manual_seed(settings.seed)
    model.reset_parameters(generator)
    # Channels-last runs the convolutions about 1.4x faster on the CPUs we measured.
    return model.to(device=device, memory_format=torch.channels_last)


def image_tensor(image: PreparedImage, device: torch.device) -> torch.Tensor:
    """The image as a ``(1, C, H, W)`` channels-last tensor on ``device``, the network's input."""
    pixels = torch.from_numpy(image.channels).permute(2, 0, 1).unsqueeze(0)
    return pixels.to(device).contiguous(memory_format=torch.channels_last)


def _train(
    image: PreparedImage, settings: SegmentationParams, device: torch.device
) -> Iterator[Step]:
    if image.is_constant:
        # Nothing to separate; the network would only draw its zero-padding border.
        blank = torch.zeros(image.spatial_shape, dtype=torch.int64)
        yield Step(1, 1, True, blank, torch.zeros(()), LabelFinisher(settings, image))
        return
    superpixels = compute_superpixels(
        image, settings.n_superpixels, settings.compactness, settings.superpixel_graph_scale
    )
    with autograd_enabled():  # tensors made under the caller's inference_mode cannot train
        refine = SuperpixelRefiner(superpixels, settings.n_channels, device)
        model = build_model(image.channels.shape[-1], settings, device)
        optimizer = MomentumSGD(model.parameters(), lr=settings.lr, momentum=settings.momentum)
        pixels = image_tensor(image, device)
    finish = LabelFinisher(settings, image, device)  # shared: image-level maps made once

    def snapshot(network: SegmentationNet) -> SegmentationModel:
        return snapshot_model(network, pixels, settings, image)

    yield from training_steps(model, optimizer, pixels, refine, settings, finish, snapshot)


def training_steps(
    model: SegmentationNet,
    optimizer: Optimizer,
    pixels: torch.Tensor,
    refine: SuperpixelRefiner,
    settings: SegmentationParams,
    finish: LabelFinisher,
    snapshot: Callable[[SegmentationNet], SegmentationModel] | None = None,
) -> Iterator[Step]:
    """The paper's iterations: predict, refine by superpixels, one SGD step on the refined labels.

    ``snapshot`` makes a step's ``model`` from a network: the last step's from the network
    as it made that step's prediction (before the step's update), the others' from the
    network as it is when read.

    Stops after ``settings.max_iter`` steps or once ``settings.min_labels`` classes or fewer are
    left (the public demo's rule); ``benchmarks/demo_loop.py`` runs it with the demo's start.
    """
    device = pixels.device
    # a kept Step holds its argmax: 1-2 bytes per pixel instead of int64's 8
    kept_dtype = _smallest_label_dtype(settings.n_channels)
    model.train()
    for iteration in range(1, settings.max_iter + 1):
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
            stop = iteration == settings.max_iter or n_classes <= settings.min_labels
            # the last step's model is the network that made its prediction
            as_predicted = copy.deepcopy(model) if stop and snapshot is not None else model
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        kept = prediction[0].to(kept_dtype)
        model_of = None if snapshot is None else partial(snapshot, as_predicted)
        yield Step(iteration, n_classes, stop, kept, loss.detach(), finish, model_of)
        if stop:
            return


def _smallest_label_dtype(n_channels: int) -> torch.dtype:
    """The smallest torch integer dtype that holds the argmax values 0..n_channels-1."""
    for dtype in (torch.uint8, torch.int16, torch.int32):
        if n_channels - 1 <= torch.iinfo(dtype).max:
            return dtype
    return torch.int64


def continuity_loss(responses: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between vertically and horizontally adjacent responses.

    The spatial continuity term of Kim, Kanezaki and Tanaka (IEEE TIP 2020), Eq. 4: it
    pulls neighbouring pixels towards the same label without superpixels.
    """
    responses = responses.float()
    vertical = (responses[:, :, 1:, :] - responses[:, :, :-1, :]).abs().mean()
    horizontal = (responses[:, :, :, 1:] - responses[:, :, :, :-1]).abs().mean()
    return vertical + horizontal
