"""Tests of the public demo's loop (benchmarks/demo_loop.py), the `paper` preset's comparison."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bsds
import demo_loop
from napari_unsupervised_segmentation.core.normalize import prepare_image
from napari_unsupervised_segmentation.core.params import PRESETS
from napari_unsupervised_segmentation.core.refine import compute_superpixels

SETTINGS = PRESETS["paper"].replace(n_channels=8, n_superpixels=16, seed=3)


def colour_blocks() -> np.ndarray:
    """A 24x24 RGB image: red and blue blocks on green, with some noise."""
    rng = np.random.default_rng(0)
    image = np.zeros((24, 24, 3), dtype=np.uint8)
    image[..., 1] = 160
    image[:12, :12] = (220, 30, 30)
    image[12:, 12:] = (30, 30, 220)
    return np.clip(image + rng.integers(0, 20, image.shape), 0, 255).astype(np.uint8)


def one_step(quirks: tuple[str, ...]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The demo model's parameters before and after one SGD step on a random target."""
    model, trained = demo_loop.build_demo_model(3, SETTINGS, quirks, torch.device("cpu"))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(trained, lr=SETTINGS.lr, momentum=SETTINGS.momentum)
    pixels = torch.rand(1, 3, 10, 10)
    target = torch.randint(0, SETTINGS.n_channels, (1, 10, 10))
    F.cross_entropy(model(pixels), target).backward()
    optimizer.step()
    after = {name: p.detach().clone() for name, p in model.named_parameters()}
    return before, after


def test_frozen_quirk_leaves_the_middle_block_at_its_start() -> None:
    before, after = one_step(("frozen",))
    # features: 0 conv, 2 bn (first block, trained), 3 conv, 5 bn (middle block, frozen)
    for name in ("features.3.weight", "features.3.bias", "features.5.weight", "features.5.bias"):
        assert torch.equal(before[name], after[name]), name
    for name in ("features.0.weight", "classifier.weight", "response_norm.weight"):
        assert not torch.equal(before[name], after[name]), name


def test_without_the_frozen_quirk_every_block_learns() -> None:
    before, after = one_step(())
    weights = [name for name in before if name.endswith("weight")]
    assert len(weights) == 6  # 3 convolutions, 3 BatchNorms
    assert all(not torch.equal(before[name], after[name]) for name in weights)


def test_init_quirk_draws_pytorch_default_weights() -> None:
    default, _ = demo_loop.build_demo_model(3, SETTINGS, ("init",), torch.device("cpu"))
    xavier, _ = demo_loop.build_demo_model(3, SETTINGS, (), torch.device("cpu"))
    middle_default = default.features[3].weight
    middle_xavier = xavier.features[3].weight
    fan_in = middle_default[0].numel()  # 8 channels x 3 x 3
    # PyTorch's Kaiming-uniform with a = sqrt(5): bound 1/sqrt(fan_in); Xavier's is wider.
    assert middle_default.abs().max() <= 1 / fan_in**0.5
    assert middle_xavier.abs().max() > 1 / fan_in**0.5
    again, _ = demo_loop.build_demo_model(3, SETTINGS, ("init",), torch.device("cpu"))
    assert torch.equal(again.features[3].weight, middle_default)  # seeded


def test_bgr_quirk_clusters_the_channel_swapped_image() -> None:
    image = colour_blocks()
    prepared = prepare_image(image, channel_axis=-1)
    swapped = compute_superpixels(
        prepare_image(image[..., ::-1], channel_axis=-1), SETTINGS.n_superpixels, 100.0
    )
    assert np.array_equal(demo_loop.demo_superpixels(prepared, SETTINGS, ("bgr",)), swapped)
    plain = compute_superpixels(prepared, SETTINGS.n_superpixels, 100.0)
    assert np.array_equal(demo_loop.demo_superpixels(prepared, SETTINGS, ()), plain)


def test_demo_segment_labels_the_image_consecutively() -> None:
    labels = demo_loop.demo_segment(colour_blocks(), demo_loop.QUIRKS, **_small())
    assert labels.shape == (24, 24)
    assert labels.dtype == np.uint16
    assert np.array_equal(np.unique(labels), np.arange(1, labels.max() + 1))


def test_without_quirks_the_demo_loop_is_the_paper_preset() -> None:
    from napari_unsupervised_segmentation import segment

    image = colour_blocks()
    ours = segment(image, "paper", channel_axis=-1, **_small())
    demo = demo_loop.demo_segment(image, (), **_small())
    pairs = np.unique(np.stack([ours.ravel(), demo.ravel()]), axis=1)
    # the same partition, whatever the label numbers
    assert pairs.shape[1] == len(np.unique(ours)) == len(np.unique(demo))


def test_parse_quirks() -> None:
    assert demo_loop.parse_quirks("all") == demo_loop.QUIRKS
    assert demo_loop.parse_quirks("none") == ()
    assert demo_loop.parse_quirks("extra, frozen") == ("frozen", "extra")
    with pytest.raises(ValueError, match="unknown quirk"):
        demo_loop.parse_quirks("frozen,bgrr")


def test_bsds_runs_the_demo_method_with_engine_overrides() -> None:
    args = bsds.build_parser().parse_args(
        [
            "--method",
            "demo",
            "--quirks",
            "frozen",
            *(f"--param={k}={v}" for k, v in _small().items()),
        ]
    )
    method, settings = bsds.make_method(args)
    assert "quirks=frozen" in settings
    assert method(colour_blocks()).shape == (24, 24)
    other = bsds.build_parser().parse_args(["--method", "demo", "--quirks", "all"])
    assert bsds._tag(args, settings) != bsds._tag(other, bsds.make_method(other)[1])


def _small() -> dict[str, object]:
    return {"n_channels": 8, "n_superpixels": 16, "max_iter": 5, "seed": 3, "device": "cpu"}
