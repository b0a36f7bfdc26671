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

SETTINGS = PRESETS["paper"].replace(max_classes=8, n_superpixels=16, seed=3)


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
    target = torch.randint(0, SETTINGS.max_classes, (1, 10, 10))
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
    convs = [m for m in default.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3
    for conv in convs:
        # PyTorch's Kaiming-uniform with a = sqrt(5), and its bias: both +-1/sqrt(fan_in);
        # the largest of 216 to 576 uniform draws lies close to the bound.
        bound = 1 / conv.weight[0].numel() ** 0.5
        assert 0.9 * bound < conv.weight.abs().max() <= bound
        assert conv.bias.abs().max() <= bound
    first_bound = 1 / xavier.features[0].weight[0].numel() ** 0.5  # 3 x 3 x 3 inputs
    assert xavier.features[0].weight.abs().max() > first_bound  # Xavier: sqrt(6 / (27 + 72))
    again, _ = demo_loop.build_demo_model(3, SETTINGS, ("init",), torch.device("cpu"))
    assert torch.equal(again.features[3].weight, default.features[3].weight)  # seeded


def test_bgr_quirk_clusters_the_channel_swapped_image() -> None:
    image = np.random.default_rng(0).integers(0, 256, (24, 24, 3)).astype(np.uint8)
    prepared = prepare_image(image, channel_axis=-1)
    swapped = compute_superpixels(
        prepare_image(image[..., ::-1], channel_axis=-1), SETTINGS.n_superpixels, 100.0
    )
    plain = compute_superpixels(prepared, SETTINGS.n_superpixels, 100.0)
    assert not np.array_equal(swapped, plain)  # the swap matters on this image
    assert np.array_equal(demo_loop.demo_superpixels(prepared, SETTINGS, ("bgr",)), swapped)
    assert np.array_equal(demo_loop.demo_superpixels(prepared, SETTINGS, ()), plain)


def test_extra_quirk_labels_with_a_forward_pass_after_the_last_update() -> None:
    image = colour_blocks()
    one_update_then_extra = demo_loop.demo_segment(image, ("extra",), **_small(max_iter=1))
    # without the quirk, iteration 2 predicts with the same once-updated network
    second_prediction = demo_loop.demo_segment(image, (), **_small(max_iter=2))
    first_prediction = demo_loop.demo_segment(image, (), **_small(max_iter=1))
    assert same_partition(one_update_then_extra, second_prediction)
    assert not same_partition(one_update_then_extra, first_prediction)


def test_demo_segment_labels_the_image_consecutively() -> None:
    labels = demo_loop.demo_segment(colour_blocks(), demo_loop.QUIRKS, **_small())
    assert labels.shape == (24, 24)
    assert labels.dtype == np.uint8  # as segment() returns: the smallest unsigned dtype
    assert np.array_equal(np.unique(labels), np.arange(1, labels.max() + 1))


def test_demo_train_counts_the_updates_until_the_stopping_rule() -> None:
    image = colour_blocks()
    labels, iterations = demo_loop.demo_train(image, demo_loop.QUIRKS, **_small(), min_classes=0)
    assert iterations == 5  # the rule off: every one of max_iter updates
    assert same_partition(
        labels, demo_loop.demo_segment(image, demo_loop.QUIRKS, **_small(), min_classes=0)
    )
    # a rule that every prediction meets (at most 576 labels from 24x24 pixels) stops after one
    every = {**_small(), "max_classes": 600, "min_classes": 576}
    assert demo_loop.demo_train(image, demo_loop.QUIRKS, **every)[1] == 1


def test_without_quirks_the_demo_loop_is_the_paper_preset() -> None:
    from napari_unsupervised_segmentation import segment

    image = colour_blocks()
    ours = segment(image, "paper", channel_axis=-1, **_small())
    demo = demo_loop.demo_segment(image, (), **_small())
    assert same_partition(ours, demo)


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
    labels, iterations = method(colour_blocks())
    assert labels.shape == (24, 24) and 1 <= iterations <= 5
    other = bsds.build_parser().parse_args(
        ["--method", "demo", "--quirks", "all", *(f"--param={k}={v}" for k, v in _small().items())]
    )
    assert bsds._tag(args, settings) != bsds._tag(other, bsds.make_method(other)[1])


def test_bsds_refuses_what_the_demo_loop_would_ignore() -> None:
    parse = bsds.build_parser().parse_args
    with pytest.raises(SystemExit, match="merge_threshold"):
        bsds.make_method(parse(["--method", "demo", "--param", "merge_threshold=0.3"]))
    with pytest.raises(SystemExit, match="unknown quirk"):
        bsds.make_method(parse(["--method", "demo", "--quirks", "bgrr"]))
    with pytest.raises(SystemExit, match="--quirks"):
        bsds.make_method(parse(["--method", "paper", "--quirks", "frozen"]))


def _small(max_iter: int = 5) -> dict[str, object]:
    return {"max_classes": 8, "n_superpixels": 16, "max_iter": max_iter, "seed": 3, "device": "cpu"}


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """The same segments, whatever their label numbers."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return pairs.shape[1] == len(np.unique(a)) == len(np.unique(b))
