"""The paper's loop as the public demo runs it, quirks included, to compare the `paper` preset with.

Kanezaki's public demo (``demo.py`` of kanezaki/pytorch-unsupervised-segmentation) differs
from the paper, and from the engine's ``paper`` preset, in these ways (the quirk names):

``frozen``
    The demo's versions before its pull request #7 (2019-06-19) kept the middle blocks'
    convolutions and BatchNorms in a plain Python list, not an ``nn.ModuleList``, so
    ``model.parameters()`` never yielded them and the optimiser left them at their random
    start: with M = 2 only the first 3x3 block and the 1x1 classifier learned. The current
    demo trains them.
``init``
    PyTorch's default initialisation of the convolutions (Kaiming-uniform with
    a = sqrt(5)), where the paper and the preset use Xavier-uniform.
``bgr``
    OpenCV reads the photo in BGR order and hands it to SLIC, which converts it to Lab as
    if it were RGB: the superpixels follow a colour space with red and blue swapped.
``extra``
    Run with ``--visualize 0``, the demo takes its final labels from one more forward pass
    after the last update; with the default ``--visualize 1``, and in the engine, they are
    the last iteration's prediction.

The demo also defaults to 1000 iterations (``--maxIter``); the preset, the data set's
reference rows and this loop use 500. Everything else (the network, the superpixel
refinement, SGD, the stopping rule) is the engine's, with the ``paper`` preset's settings
and any of the overrides in ``OVERRIDABLE``. This is a benchmark method
(``bsds.py --method demo``), not part of the product.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

QUIRKS = ("frozen", "init", "bgr", "extra")
#: The current demo, run with ``--visualize 0`` (its pull request #7 of 2019 removed ``frozen``).
CURRENT_DEMO = ("init", "bgr", "extra")
#: The settings the demo's loop uses; the rest (post-processing, continuity loss, graph
#: superpixels) are not part of it and must stay at the ``paper`` preset's values.
OVERRIDABLE = frozenset(
    {
        "max_iter",
        "min_classes",
        "n_superpixels",
        "compactness",
        "max_classes",
        "n_conv",
        "lr",
        "momentum",
        "seed",
        "device",
        "precision",
    }
)


def parse_quirks(text: str) -> tuple[str, ...]:
    """Comma-separated quirk names (``all`` for every one, ``none`` or empty for none)."""
    if text.strip().lower() == "all":
        return QUIRKS
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if names in ((), ("none",)):
        return ()
    unknown = sorted(set(names) - set(QUIRKS))
    if unknown:
        raise ValueError(f"unknown quirk(s) {unknown}; choose from {list(QUIRKS)}")
    return tuple(name for name in QUIRKS if name in names)


def check_overrides(overrides: dict[str, Any]) -> None:
    """Raise ValueError for a setting that the demo's loop would silently ignore."""
    unused = sorted(set(overrides) - OVERRIDABLE)
    if unused:
        raise ValueError(f"the demo's loop has no setting {unused}; it takes {sorted(OVERRIDABLE)}")


def build_demo_model(in_channels: int, settings: Any, quirks: Iterable[str], device: Any):
    """The engine's network with the demo's start; returns it and the parameters it trains."""
    import torch
    from torch import nn

    from napari_unsupervised_segmentation.core.train import build_model

    quirks = set(quirks)
    model = build_model(in_channels, settings, device)
    if "init" in quirks:
        generator = torch.Generator()
        if settings.seed is None:
            generator.seed()
        else:
            generator.manual_seed(settings.seed)
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                # PyTorch's own reset, drawn on the CPU from a seeded generator.
                weight = torch.empty(module.weight.shape)
                nn.init.kaiming_uniform_(weight, a=5**0.5, generator=generator)
                bound = 1 / module.weight[0].numel() ** 0.5
                bias = torch.empty(module.bias.shape).uniform_(-bound, bound, generator=generator)
                with torch.no_grad():
                    module.weight.copy_(weight)
                    module.bias.copy_(bias)
    frozen: set[int] = set()
    if "frozen" in quirks:
        blocks = [m for m in model.features if isinstance(m, nn.Conv2d | nn.BatchNorm2d)]
        frozen = {id(p) for module in blocks[2:] for p in module.parameters()}
    trained = [p for p in model.parameters() if id(p) not in frozen]
    return model, trained


def demo_superpixels(prepared: Any, settings: Any, quirks: Iterable[str]) -> np.ndarray:
    """The refinement's SLIC superpixels, of the BGR image under the ``bgr`` quirk."""
    from napari_unsupervised_segmentation.core.normalize import PreparedImage
    from napari_unsupervised_segmentation.core.refine import compute_superpixels

    if "bgr" in quirks and prepared.is_rgb:
        prepared = PreparedImage(np.ascontiguousarray(prepared.channels[..., ::-1]), True)
    return compute_superpixels(prepared, settings.n_superpixels, settings.compactness)


def demo_segment(
    image: np.ndarray, quirks: Iterable[str] = QUIRKS, *, channel_axis: int | None = -1, **overrides
) -> np.ndarray:
    """Segment ``image`` with the demo's loop; labels as :func:`segment` returns them."""
    return demo_train(image, quirks, channel_axis=channel_axis, **overrides)[0]


def demo_train(
    image: np.ndarray, quirks: Iterable[str] = QUIRKS, *, channel_axis: int | None = -1, **overrides
) -> tuple[np.ndarray, int]:
    """:func:`demo_segment`'s labels and the SGD updates made before the loop stopped."""
    from collections import deque

    import torch

    from napari_unsupervised_segmentation.core.devices import precision_context, resolve_device
    from napari_unsupervised_segmentation.core.normalize import prepare_image
    from napari_unsupervised_segmentation.core.params import PRESETS
    from napari_unsupervised_segmentation.core.postprocess import LabelFinisher
    from napari_unsupervised_segmentation.core.refine import SuperpixelRefiner
    from napari_unsupervised_segmentation.core.train import image_tensor, training_steps

    check_overrides(overrides)
    quirks = set(quirks)
    settings = PRESETS["paper"].replace(**overrides)
    device = resolve_device(settings.device)
    prepared = prepare_image(image, channel_axis)
    superpixels = demo_superpixels(prepared, settings, quirks)
    refine = SuperpixelRefiner(superpixels, settings.max_classes, device)
    model, trained = build_demo_model(prepared.channels.shape[-1], settings, quirks, device)
    optimizer = torch.optim.SGD(trained, lr=settings.lr, momentum=settings.momentum)
    pixels = image_tensor(prepared, device)
    finish = LabelFinisher(settings, prepared, device)
    steps = training_steps(model, optimizer, lambda iteration: (pixels, refine), settings)
    last_step = deque(steps, maxlen=1)[0]
    if "extra" not in quirks:
        return np.asarray(finish(last_step.prediction[0].cpu().numpy())), last_step.iteration
    with torch.no_grad(), precision_context(settings.precision, device):
        prediction = model(pixels).argmax(dim=1)
    return np.asarray(finish(prediction[0].cpu().numpy())), last_step.iteration
