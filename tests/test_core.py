"""The engine on tiny synthetic images with exact expectations."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from napari_unsupervised_segmentation import PRESETS, SegmentationParams, iter_segment, segment
from napari_unsupervised_segmentation.core.devices import resolve_device
from napari_unsupervised_segmentation.core.labels import (
    boundary_contrast,
    merge_small_segments,
    merge_weak_boundaries,
    relabel_consecutive,
    smallest_unsigned_dtype,
    split_connected_components,
)
from napari_unsupervised_segmentation.core.normalize import prepare_image
from napari_unsupervised_segmentation.core.refine import SuperpixelRefiner, compute_superpixels
from napari_unsupervised_segmentation.core.train import continuity_loss

#: The colour merge, whose settings the bad values below go to.
COLOUR = {"label_by": "segment", "merge": "colour"}
TINY = dict(max_classes=16, n_superpixels=30, device="cpu")


def two_colour_image(noise: float = 10.0, seed: int = 0) -> np.ndarray:
    """24x32 RGB: red on the left half, blue on the right, with a little noise."""
    image = np.zeros((24, 32, 3), np.float64)
    image[:, :16] = (200, 30, 30)
    image[:, 16:] = (20, 40, 220)
    image += np.random.default_rng(seed).normal(0, noise, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def majority_share(labels: np.ndarray) -> tuple[int, float]:
    values, counts = np.unique(labels, return_counts=True)
    return int(values[counts.argmax()]), counts.max() / labels.size


@pytest.mark.parametrize(
    ("seed", "superpixels"),
    [(0, "slic"), (1, "slic"), (2, "slic"), (0, "graph"), (1, "graph")],
)
def test_two_colours_give_labels_that_follow_the_edge(seed, superpixels):
    """With SLIC superpixels and with graph-based ones."""
    tiny = TINY if superpixels == "slic" else {**TINY, "n_superpixels": None}
    labels = segment(
        two_colour_image(),
        channel_axis=-1,
        max_iter=40,
        min_classes=2,
        seed=seed,
        superpixels=superpixels,
        **tiny,
    )
    left, left_share = majority_share(labels[:, :16])
    right, right_share = majority_share(labels[:, 16:])
    assert left != right
    assert left_share > 0.95 and right_share > 0.95


def three_band_image() -> np.ndarray:
    """30x36 RGB of three uniform vertical bands, 12 columns each."""
    image = np.zeros((30, 36, 3), np.uint8)
    image[:, :12] = (200, 30, 30)
    image[:, 12:24] = (30, 180, 40)
    image[:, 24:] = (20, 40, 220)
    return image


def test_graph_superpixels_follow_the_images_edges_whatever_the_count_asked():
    prepared = prepare_image(three_band_image(), -1)
    bands = np.repeat(np.arange(3), 12)[np.newaxis].repeat(30, axis=0)
    few = compute_superpixels(prepared, 10, 10.0, superpixel_scale=100.0)
    np.testing.assert_array_equal(
        compute_superpixels(prepared, 500, 10.0, superpixel_scale=100.0), few
    )
    for superpixel in np.unique(few):  # none straddles an edge
        assert len(np.unique(bands[few == superpixel])) == 1
    # Uniform bands stay whole but for the 1-pixel columns the graph's blur leaves at each
    # edge; SLIC cuts them into about as many pieces as asked for.
    assert few.max() + 1 <= 3 + 4
    assert compute_superpixels(prepared, 30, 10.0).max() + 1 > 10


def slow_majority(superpixels: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Obviously correct refinement: loop over superpixels, ties to the smallest label."""
    refined = labels.copy()
    for superpixel in np.unique(superpixels):
        inside = superpixels == superpixel
        values, counts = np.unique(labels[inside], return_counts=True)
        refined[inside] = values[counts == counts.max()].min()
    return refined


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_refinement_equals_slow_reference(seed):
    rng = np.random.default_rng(seed)
    n_classes = 4  # few classes on few pixels: ties happen often
    superpixels = rng.integers(0, 12, size=(9, 11))
    superpixels = np.unique(superpixels, return_inverse=True)[1].reshape(superpixels.shape)
    labels = rng.integers(0, n_classes, size=(9, 11))
    refiner = SuperpixelRefiner(superpixels, n_classes, torch.device("cpu"))
    refined, counts = refiner(torch.from_numpy(labels))
    np.testing.assert_array_equal(refined.numpy(), slow_majority(superpixels, labels))
    np.testing.assert_array_equal(counts.numpy(), np.bincount(labels.ravel(), minlength=n_classes))


def test_refinement_tie_goes_to_smallest_label():
    superpixels = np.zeros((2, 2), np.int64)
    labels = torch.tensor([[3, 1], [3, 1]])
    refined, _ = SuperpixelRefiner(superpixels, 4, torch.device("cpu"))(labels)
    assert refined.tolist() == [[1, 1], [1, 1]]


def test_same_seed_gives_identical_labels_and_other_seed_differs():
    image = np.random.default_rng(3).integers(0, 255, (20, 24, 3), dtype=np.uint8)
    run = dict(channel_axis=-1, max_iter=5, min_classes=0, **TINY)
    first = segment(image, "paper", seed=7, **run)
    np.testing.assert_array_equal(first, segment(image, "paper", seed=7, **run))
    assert not np.array_equal(first, segment(image, "paper", seed=8, **run))


def test_stops_at_max_iter_without_stopping_rule():
    steps = list(
        iter_segment(two_colour_image(), channel_axis=-1, max_iter=4, min_classes=0, **TINY)
    )
    assert [s.iteration for s in steps] == [1, 2, 3, 4]
    assert [s.is_last for s in steps] == [False, False, False, True]


def test_stopping_rule_ends_when_few_labels_remain():
    steps = list(
        iter_segment(two_colour_image(), channel_axis=-1, max_iter=200, min_classes=3, **TINY)
    )
    assert steps[-1].n_classes <= 3 < steps[-2].n_classes
    assert steps[-1].is_last and len(steps) < 200
    assert all(s.n_classes > 3 for s in steps[:-1])


def test_step_reports_label_count_loss_and_labels():
    step = next(iter_segment(two_colour_image(), "paper", channel_axis=-1, **TINY))
    assert step.iteration == 1
    assert step.labels.shape == (24, 32)
    assert len(np.unique(step.labels)) == step.n_classes
    assert np.isfinite(step.loss) and step.loss > 0


def test_output_is_consecutive_from_one_in_smallest_dtype():
    labels = segment(two_colour_image(), channel_axis=-1, max_iter=2, **TINY)
    assert labels.dtype == np.uint8
    assert np.array_equal(np.unique(labels), np.arange(1, labels.max() + 1))


def test_label_by_segment_splits_disconnected_regions():
    image = np.zeros((24, 32), np.uint8)
    image[4:10, 4:10] = 255  # two separate bright squares on a dark ground
    image[14:20, 20:28] = 255
    run = dict(max_iter=60, min_classes=2, **TINY)
    merged = segment(image, "paper", **run)
    split = segment(image, "paper", label_by="segment", **run)
    np.testing.assert_array_equal(split, split_connected_components(merged))
    assert merged[6, 6] == merged[16, 24] and split[6, 6] != split[16, 24]


def test_constant_image_gives_one_label():
    labels = segment(np.full((16, 16), 7, np.uint16), max_iter=3, min_classes=0, **TINY)
    assert labels.shape == (16, 16) and set(np.unique(labels)) == {1}


@pytest.mark.parametrize(
    ("dtype", "high"), [(np.uint16, 60000), (np.int16, 3000), (np.float32, 1.0), (np.float64, 5e6)]
)
def test_other_dtypes_are_segmented(dtype, high):
    image = np.zeros((20, 24), dtype)
    image[:, 12:] = dtype(high)
    labels = segment(image, max_iter=30, min_classes=2, **TINY)
    assert labels.shape == (20, 24)
    assert labels[0, 0] != labels[0, -1]


def test_sixteen_bit_uses_robust_range_despite_hot_pixel():
    image = np.full((50, 50), 1000, np.uint16)
    image[:, 25:] = 1200
    image[0, 0] = 65535  # one hot pixel must not squash the rest to ~0
    channels = prepare_image(image).channels[..., 0]
    assert channels[10, 10] == 0.0 and channels[10, 40] == 1.0


def test_float_values_near_the_largest_double_are_scaled_like_any_other():
    image = np.random.default_rng(0).uniform(-1.0, 1.0, (20, 20))
    expected = prepare_image(image).channels
    huge = prepare_image(image * 1.7e308).channels  # differences would overflow to inf
    assert np.isfinite(huge).all()
    np.testing.assert_allclose(huge, expected, atol=1e-6)


def test_colour_keeps_its_hue_whatever_the_dtype():
    photo = two_colour_image()
    photo[:4] = (40, 60, 80)  # a dark slate band: blue > green > red
    as_uint8 = prepare_image(photo, channel_axis=-1).channels
    # skimage.img_as_float's [0, 1] floats are the uint8 photo / 255, channel for channel
    np.testing.assert_allclose(
        prepare_image(photo / 255.0, channel_axis=-1).channels, as_uint8, atol=1e-6
    )
    overshoot = photo / 255.0  # resampled: a hair outside [0, 1] in places
    overshoot[0, 0] = (-0.004, 1.004, 0.5)
    np.testing.assert_allclose(
        prepare_image(overshoot, channel_axis=-1).channels[1:], as_uint8[1:], atol=1e-6
    )
    # 16-bit colour is scaled by one range for all channels, never per channel
    slate = prepare_image(photo.astype(np.uint16) * 257, channel_axis=-1).channels[0, 0]
    red, green, blue = slate
    assert red < green < blue and blue < 0.5  # still a dark blue-grey, not cyan
    assert abs((green - red) - (blue - green)) < 0.01  # 40, 60, 80: equal steps stay equal


def test_long_double_beyond_float64_is_refused_not_turned_to_nan():
    if np.finfo(np.longdouble).max <= np.finfo(np.float64).max:
        pytest.skip("long double is float64 on this platform")
    image = np.ones((8, 8), np.longdouble)
    image[0, 0] = np.longdouble(10) ** 400
    with pytest.raises(ValueError, match="beyond float64's range"):
        prepare_image(image)


@pytest.mark.parametrize("channel_axis", [2.0, True, "-1"])
def test_channel_axis_must_be_an_integer(channel_axis):
    with pytest.raises(TypeError, match="channel_axis must be an integer"):
        iter_segment(two_colour_image(), channel_axis=channel_axis, **TINY)
    assert prepare_image(two_colour_image(), channel_axis=np.int64(-1)).is_rgb


def test_uint8_is_divided_by_255():
    image = np.array([[0, 51], [255, 102]], np.uint8)
    np.testing.assert_allclose(prepare_image(image).channels[..., 0], image / 255, rtol=1e-6)


def test_rgba_drops_alpha_and_channel_first_is_accepted():
    rgba = np.dstack([two_colour_image(), np.full((24, 32), 255, np.uint8)])
    prepared = prepare_image(rgba, channel_axis=-1)
    assert prepared.channels.shape == (24, 32, 3) and prepared.is_rgb
    channel_first = np.moveaxis(two_colour_image(), -1, 0)
    np.testing.assert_array_equal(
        prepare_image(channel_first, channel_axis=0).channels,
        prepare_image(two_colour_image(), channel_axis=-1).channels,
    )
    assert not prepare_image(channel_first, channel_axis=0).is_rgb  # three stains, not RGB
    assert segment(rgba, channel_axis=-1, max_iter=2, **TINY).shape == (24, 32)


def test_four_uint8_channels_first_are_microscopy_not_rgba():
    image = np.zeros((4, 16, 16), np.uint8)
    image[3, 4:12, 4:12] = 200  # structure only in the fourth channel
    prepared = prepare_image(image, channel_axis=0)
    assert prepared.channels.shape == (16, 16, 4) and not prepared.is_rgb
    assert prepare_image(np.moveaxis(image, 0, -1), channel_axis=-1).channels.shape[-1] == 3


def test_multichannel_microscopy_is_not_rgb():
    image = np.random.default_rng(0).integers(0, 4000, (5, 20, 24), dtype=np.uint16)
    prepared = prepare_image(image, channel_axis=0)
    assert prepared.channels.shape == (20, 24, 5) and not prepared.is_rgb
    assert segment(image, channel_axis=0, max_iter=2, **TINY).shape == (20, 24)


def test_rgb_argument_overrides_the_guess_from_the_layout():
    stains = np.random.default_rng(1).integers(0, 4000, (20, 24, 3), dtype=np.uint16)
    assert prepare_image(stains, channel_axis=-1).is_rgb  # the guess: channels last are RGB
    as_stains = prepare_image(stains, channel_axis=-1, rgb=False)
    assert not as_stains.is_rgb and as_stains.channels.shape == (20, 24, 3)
    # the same labels as the same stains given channels first, where the guess is "stains"
    np.testing.assert_array_equal(
        segment(stains, channel_axis=-1, rgb=False, max_iter=3, **TINY),
        segment(np.moveaxis(stains, -1, 0), channel_axis=0, max_iter=3, **TINY),
    )
    four = np.zeros((24, 32, 4), np.uint8)
    four[..., 3] = 255
    assert prepare_image(four, channel_axis=-1, rgb=False).channels.shape == (24, 32, 4)
    rgba_first = np.moveaxis(np.dstack([two_colour_image(), four[..., 3]]), -1, 0)
    colour = prepare_image(rgba_first.astype(np.uint16), channel_axis=0, rgb=True)
    assert colour.is_rgb and colour.channels.shape == (24, 32, 3)


@pytest.mark.parametrize(
    ("image", "channel_axis"),
    [(np.zeros((8, 8, 2)), -1), (np.zeros((5, 8, 8)), 0), (np.zeros((8, 8)), None)],
)
def test_rgb_true_needs_three_or_four_channels(image, channel_axis):
    with pytest.raises(ValueError, match="rgb=True needs a channel axis of 3"):
        prepare_image(image, channel_axis=channel_axis, rgb=True)


#: Images refused from their shape and dtype alone, with (part of) the message.
BAD_LAYOUTS = [
    (np.zeros((0, 5)), {}, "empty"),
    (np.zeros((1, 5)), {}, "at least 2 pixels"),
    (np.zeros((8, 8), bool), {}, "bool"),
    (np.zeros((8, 8), complex), {}, "complex"),
    (np.zeros((8, 8), object), {}, "numeric"),
    (np.zeros((8, 8, 3)), {}, "channel_axis=-1"),
    (np.zeros((4, 8, 8, 3)), {"channel_axis": -1}, "4 dimensions"),
    (np.zeros((8, 8)), {"channel_axis": -1}, "channel_axis=None"),
    (np.zeros((8, 8, 3)), {"channel_axis": 3}, "out of range"),
    (np.zeros((8, 8, 2)), {"channel_axis": -1, "rgb": True}, "rgb=True needs"),
]


@pytest.mark.parametrize(
    ("image", "kwargs", "message"),
    [
        (np.full((8, 8), np.nan), {}, "NaN"),
        (np.array([[0.0, np.inf], [1, 2]]), {}, "infinite"),
        *BAD_LAYOUTS,
    ],
)
def test_bad_images_raise_clear_errors(image, kwargs, message):
    with pytest.raises(ValueError, match=message):
        iter_segment(image, **kwargs, **TINY)


class CountingArray:
    """An array-like that states its shape and dtype and reads its pixels only on
    conversion or indexing, as dask and zarr arrays do; it counts the pixels read."""

    def __init__(self, data: np.ndarray) -> None:
        self._data = data
        self.pixels_read = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def ndim(self) -> int:
        return self._data.ndim

    def __getitem__(self, key):
        part = self._data[key]
        self.pixels_read += np.size(part)
        return part

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        self.pixels_read += self._data.size
        return np.asarray(self._data, dtype=dtype)


@pytest.mark.parametrize(("image", "kwargs", "message"), BAD_LAYOUTS)
def test_a_lazy_image_that_cannot_be_segmented_is_refused_before_it_is_read(image, kwargs, message):
    lazy = CountingArray(image)
    with pytest.raises(ValueError, match=message):
        segment(lazy, **kwargs, **TINY)
    assert lazy.pixels_read == 0


def test_a_lazy_image_is_read_once_and_segmented_as_the_array_itself():
    image = two_colour_image()
    lazy = CountingArray(image)
    labels = segment(lazy, channel_axis=-1, max_iter=2, **TINY)
    np.testing.assert_array_equal(labels, segment(image, channel_axis=-1, max_iter=2, **TINY))
    assert lazy.pixels_read == image.size


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_iter": 0}, "max_iter"),
        ({"max_classes": 1}, "max_classes"),
        ({"min_classes": -1}, "min_classes"),
        ({"n_superpixels": 0}, "n_superpixels"),
        ({"compactness": 0}, "compactness"),
        ({"superpixels": "graph", "superpixel_scale": -1.0}, "superpixel_scale"),
        ({"n_conv": 0}, "n_conv"),
        ({"lr": -1.0}, "lr"),
        ({"momentum": 1.0}, "momentum"),
        ({"precision": "fp8"}, "precision"),
        ({**COLOUR, "merge_interior_weight": -0.5}, "merge_interior_weight"),
        ({**COLOUR, "merge_interior_weight": float("inf")}, "merge_interior_weight"),
        ({**COLOUR, "max_segments": -1}, "max_segments"),
        ({**COLOUR, "max_segments": 2.5}, "max_segments"),
        ({"seed": 1.5}, "seed"),
        ({"seed": -1}, "seed"),  # the widget's "random"; in scripts: None
        ({"seed": 2**64}, "seed"),
        ({"max_iter": 2.5}, "max_iter"),
        ({"lr": float("inf")}, "lr"),
        ({"compactness": float("nan")}, "compactness"),
        ({"label_by": "segment", "cut_scale": float("inf")}, "cut_scale"),
        ({"lr": 10**400}, "lr"),  # an integer beyond float's range
        ({**COLOUR, "merge_interior_weight": -(10**400)}, "merge_interior_weight"),
        ({"max_classes": 3}, "min_classes must be below max_classes"),  # would stop at once
        ({"max_classes": 4, "min_classes": 5}, "min_classes must be below max_classes"),
    ],
)
def test_bad_parameters_raise_clear_errors(change, message):
    with pytest.raises(ValueError, match=message):
        SegmentationParams(**change)
    with pytest.raises(ValueError, match=message):
        segment(two_colour_image(), channel_axis=-1, **change)


def test_numpy_numbers_are_accepted_as_plain_numbers():
    # values computed with numpy (a sweep over np.arange, an array's size) are fine
    params = SegmentationParams(max_iter=np.int64(3), lr=np.float32(0.5), seed=np.uint8(7))
    assert (params.max_iter, params.lr, params.seed) == (3, 0.5, 7)
    assert type(params.max_iter) is int and type(params.lr) is float
    assert params == SegmentationParams(max_iter=3, lr=0.5, seed=7)


def test_unknown_parameter_and_preset_are_rejected():
    with pytest.raises(TypeError, match="n_chanels"):
        segment(two_colour_image(), channel_axis=-1, n_chanels=4)
    with pytest.raises(ValueError, match="unknown preset"):
        segment(two_colour_image(), "fastest", channel_axis=-1)


def test_paper_preset_holds_the_papers_settings():
    paper = PRESETS["paper"]
    assert (paper.n_conv, paper.max_classes, paper.max_iter, paper.min_classes) == (2, 100, 500, 3)
    assert (paper.lr, paper.momentum, paper.n_superpixels, paper.compactness) == (
        0.1,
        0.9,
        10000,
        100,
    )


def test_devices_resolve_or_fail_clearly():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            resolve_device("cuda:1")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")


def test_bf16_precision_runs_on_cpu():
    labels = segment(two_colour_image(), channel_axis=-1, max_iter=3, precision="bf16", **TINY)
    assert labels.shape == (24, 32)


def test_torch_modes_of_the_caller_neither_break_training_nor_change():
    # inference scripts run under no_grad or inference_mode; some set float64 as default
    image = two_colour_image()
    expected = segment(image, channel_axis=-1, max_iter=3, **TINY)
    with torch.no_grad():
        np.testing.assert_array_equal(segment(image, channel_axis=-1, max_iter=3, **TINY), expected)
        steps = iter_segment(image, channel_axis=-1, max_iter=3, **TINY)
        next(steps)
        assert not torch.is_grad_enabled()  # a paused generator leaves the caller's mode
        steps.close()
    with torch.inference_mode():
        np.testing.assert_array_equal(segment(image, channel_axis=-1, max_iter=3, **TINY), expected)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        labels = segment(image, channel_axis=-1, max_iter=3, **TINY)
    finally:
        torch.set_default_dtype(default)
    np.testing.assert_array_equal(labels, expected)


def test_fp32_means_no_tf32_on_cuda_and_the_callers_flags_come_back():
    from napari_unsupervised_segmentation.core.devices import precision_context

    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    before = (conv.fp32_precision, matmul.fp32_precision, torch.backends.fp32_precision)
    cuda = torch.device("cuda")  # the flags are set without a GPU; nothing runs on it
    try:
        torch.backends.fp32_precision = "tf32"  # PyTorch's newer switch, set by the user
        flags = (conv.fp32_precision, matmul.fp32_precision)
        with precision_context("fp32", cuda):
            assert (conv.fp32_precision, matmul.fp32_precision) == ("ieee", "ieee")
        with precision_context("tf32", cuda):
            assert (conv.fp32_precision, matmul.fp32_precision) == ("tf32", "tf32")
        assert (conv.fp32_precision, matmul.fp32_precision) == flags
        # the default preset's texture gradient once used the legacy switch: an error here
        labels = segment(two_colour_image(), channel_axis=-1, max_iter=2, **TINY)
        assert labels.shape == (24, 32)
    finally:
        torch.backends.fp32_precision = before[2]
        conv.fp32_precision, matmul.fp32_precision = before[:2]


def test_overlapping_runs_leave_the_users_tf32_flags_as_they_were():
    from napari_unsupervised_segmentation.core.devices import precision_flags

    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    before = (conv.fp32_precision, matmul.fp32_precision)
    cuda = torch.device("cuda")  # the flags are set without a GPU; nothing runs on it
    try:
        conv.fp32_precision = matmul.fp32_precision = "tf32"  # the user's choice
        first, second = precision_flags("fp32", cuda), precision_flags("fp32", cuda)
        first.__enter__()  # two widgets' iterations overlap: entered 1, 2, left 1, 2
        second.__enter__()
        first.__exit__(None, None, None)
        assert conv.fp32_precision == "ieee"  # the second still runs in plain float32
        second.__exit__(None, None, None)
        assert (conv.fp32_precision, matmul.fp32_precision) == ("tf32", "tf32")
        with precision_flags("fp32", cuda):  # nested in one thread: the outer's flags return
            with precision_flags("tf32", cuda):
                assert conv.fp32_precision == "tf32"
            assert conv.fp32_precision == "ieee"
        assert (conv.fp32_precision, matmul.fp32_precision) == ("tf32", "tf32")
    finally:
        conv.fp32_precision, matmul.fp32_precision = before


@pytest.mark.parametrize(
    ("max_classes", "dtype"),
    [(2, torch.uint8), (256, torch.uint8), (257, torch.int16), (40000, torch.int32)],
)
def test_kept_steps_hold_their_argmax_in_the_smallest_dtype(max_classes, dtype):
    from napari_unsupervised_segmentation.core.train import _smallest_label_dtype

    assert _smallest_label_dtype(max_classes) == dtype  # a list of 500 steps stays small
    if max_classes <= 257:  # (40000 filters would need 58 GB of weights)
        run = dict(TINY, max_classes=max_classes, min_classes=0)
        step = next(iter_segment(two_colour_image(), "paper", channel_axis=-1, **run))
        assert step.prediction.dtype == dtype
        expected = segment(two_colour_image(), "paper", channel_axis=-1, max_iter=1, **run)
        np.testing.assert_array_equal(step.labels, expected)  # the narrowing loses nothing


def test_label_helpers():
    assert smallest_unsigned_dtype(255) == np.uint8
    assert smallest_unsigned_dtype(256) == np.uint16
    assert smallest_unsigned_dtype(70000) == np.uint32
    np.testing.assert_array_equal(relabel_consecutive(np.array([[5, 9], [5, 2]])), [[2, 3], [2, 1]])
    np.testing.assert_array_equal(
        split_connected_components(np.array([[1, 2, 1], [1, 2, 2]])), [[1, 2, 3], [1, 2, 2]]
    )


def test_importing_the_core_imports_neither_napari_nor_qt_nor_eagerly_torch():
    code = (
        "import sys, napari_unsupervised_segmentation as p;"
        "assert 'torch' not in sys.modules, 'package import pulled torch';"
        "p.segment; import napari_unsupervised_segmentation.core.train;"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('napari', 'magicgui', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'vispy')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_merge_small_segments_gives_specks_to_their_surroundings():
    labels = np.ones((6, 6), int)
    labels[2, 2] = 2  # a speck inside region 1
    labels[:, 4:] = 3
    labels[0, 5] = 4  # a speck inside region 3
    expected = np.ones((6, 6), int)
    expected[:, 4:] = 2
    np.testing.assert_array_equal(merge_small_segments(labels, 3), expected)
    # nothing is small: components are only split and relabelled
    np.testing.assert_array_equal(
        merge_small_segments(labels, 1), split_connected_components(labels)
    )


def test_min_segment_size_leaves_no_smaller_segment():
    image = np.random.default_rng(1).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    labels = segment(image, channel_axis=-1, max_iter=3, min_segment_size=20, **TINY)
    assert np.bincount(labels.ravel())[1:].min() >= 20
    assert np.array_equal(labels, split_connected_components(labels))


def test_continuity_loss_is_mean_absolute_neighbour_difference():
    responses = torch.zeros(1, 2, 3, 3)
    assert continuity_loss(responses) == 0
    responses[0, 0, :, 2] = 6.0  # one column differs: 3 of 6 horizontal pairs per channel
    expected_horizontal = 6.0 * 3 / (2 * 3 * 2)
    assert continuity_loss(responses).item() == pytest.approx(expected_horizontal)


def test_continuity_weight_changes_training():
    run = dict(channel_axis=-1, max_iter=5, min_classes=0, **TINY)
    image = np.random.default_rng(2).integers(0, 255, (20, 24, 3), dtype=np.uint8)
    plain = [s.loss for s in iter_segment(image, **run)]
    smooth = [s.loss for s in iter_segment(image, continuity_weight=1.0, **run)]
    assert smooth[0] > plain[0]  # the same first forward pass plus a positive term


def test_boundary_contrast_sums_feature_steps_across_each_boundary():
    segments = np.array([[0, 2], [1, 2]])
    features = np.array([[0.0, 1.0], [0.5, 5.5]])[..., np.newaxis]
    first, second, length, contrast = boundary_contrast(segments, features)
    np.testing.assert_array_equal(first, [0, 0, 1])
    np.testing.assert_array_equal(second, [1, 2, 2])
    np.testing.assert_array_equal(length, [1, 1, 1])
    np.testing.assert_allclose(contrast, [0.5, 1.0, 5.0])


def test_merge_weak_boundaries_pools_boundaries_of_joined_segments():
    segments = np.array([[1, 3], [2, 3]])
    features = np.array([[0.0, 1.0], [0.5, 5.5]])[..., np.newaxis]
    # 1|2 (0.5) goes first; then 3 meets the joined segment with mean contrast (1 + 5) / 2 = 3,
    # so 3 stays apart at threshold 2 although its boundary with 1 alone is 1.
    merged = merge_weak_boundaries(segments, features, threshold=2.0, smoothing=0)
    np.testing.assert_array_equal(merged, [[1, 2], [1, 2]])
    np.testing.assert_array_equal(
        merge_weak_boundaries(segments, features, threshold=3.5, smoothing=0), np.ones((2, 2))
    )
    np.testing.assert_array_equal(
        merge_weak_boundaries(segments, features, threshold=0.0, smoothing=0),
        relabel_consecutive(segments),
    )


def test_merge_weak_boundaries_joins_a_ramp_but_keeps_a_sharp_object():
    segments = np.repeat(np.array([[1, 1, 2, 2, 3, 3, 4, 4]]), 3, axis=0)
    features = np.repeat(np.array([[0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0]]), 3, axis=0)
    merged = merge_weak_boundaries(segments, features[..., np.newaxis], 1.5, smoothing=0)
    # the ends of the ramp differ by 2 but every step is 1; the last step is 2
    np.testing.assert_array_equal(merged[0], [1, 1, 1, 1, 1, 1, 2, 2])


def test_merge_weak_boundaries_keeps_a_sharp_edge_between_equal_mean_colours():
    segments = np.repeat(np.array([[1, 1, 1, 2, 2, 2]]), 4, axis=0)
    features = np.repeat(np.array([[0.0, 0.0, 0.0, 3.0, -1.5, -1.5]]), 4, axis=0)[..., None]
    # both segments average 0, but the step across their boundary is 3
    merged = merge_weak_boundaries(segments, features, threshold=1.5, smoothing=0)
    np.testing.assert_array_equal(merged, segments)
    # a 1-pixel blur spreads the 3-pixel pattern out (the step becomes about 0.1): joined
    blurred = merge_weak_boundaries(segments, features, threshold=1.5)
    np.testing.assert_array_equal(blurred, np.ones_like(segments))


def test_merge_weak_boundaries_interior_weight_joins_a_split_texture_only():
    # Left: a 0/4 checkerboard split in two by the segments; right: a calm region split the
    # same way, with a step of 2 between its halves.
    segments = np.repeat(np.array([[1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]]), 4, axis=0)
    rows, cols = np.mgrid[:4, :12]
    features = np.where(cols < 6, 4.0 * ((rows + cols) % 2), np.where(cols < 9, 20.0, 22.0))
    features = features[..., np.newaxis]
    # Across 1|2 every step is 4, across 3|4 it is 2: judged alone (threshold 3), 3|4 joins.
    alone = merge_weak_boundaries(segments, features, threshold=3.0, smoothing=0)
    np.testing.assert_array_equal(alone[0], np.repeat([1, 2, 3, 3], 3))
    # Inside the checkerboard every pixel differs by 4 from each neighbour; inside the calm
    # halves the contrast is 0 but next to their boundary. With weight 1, 1|2 counts
    # 4 - 4 = 0 and joins; 3|4 counts 2 - (under 0.2) and stays at threshold 1.5.
    judged = merge_weak_boundaries(
        segments, features, threshold=1.5, smoothing=0, interior_weight=1.0
    )
    np.testing.assert_array_equal(judged[0], np.repeat([1, 1, 2, 3], 3))


def test_boundary_contrast_of_integer_features_does_not_wrap_around():
    segments = np.array([[0, 1]])
    features = np.array([[10, 5]], dtype=np.uint8)[..., None]
    np.testing.assert_allclose(boundary_contrast(segments, features)[3], [5.0])


def test_default_preset_post_processes_into_connected_segments():
    image = np.random.default_rng(4).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    labels = segment(image, channel_axis=-1, device="cpu", max_iter=3)
    assert np.array_equal(labels, split_connected_components(labels))
    assert np.bincount(labels.ravel())[1:].min() >= PRESETS["default"].min_segment_size


def test_napari_facing_modules_import_torch_lazily():
    modules = [f"_napari.{m}" for m in ("widget", "reader", "writer", "sample_data", "console")]
    imports = "".join(f"import napari_unsupervised_segmentation.{m};" for m in modules)
    code = f"import sys;{imports}assert 'torch' not in sys.modules, 'torch imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_image_too_large_for_the_memory_available_is_refused_before_training(monkeypatch):
    from napari_unsupervised_segmentation.core import memory

    image = np.random.default_rng(0).random((64, 96))
    settings = PRESETS["paper"].replace(max_iter=2, n_superpixels=50, device="cpu")
    network, other = memory.estimate_bytes(64, 96, settings, n_input_channels=1)
    assert network == 64 * 96 * 4 * 100 * 9  # 100 filters, 9 float32 maps each (2 blocks)
    monkeypatch.setattr(memory, "available_memory", lambda: network + other - 1)
    with pytest.raises(MemoryError, match=r"a 64 x 96 image needs about .* GiB.*crop"):
        iter_segment(image, settings)  # raised at the call, before any training
    # on a CUDA device only the computer's share counts; fewer filters fit
    memory.check_memory(64, 96, settings, network_in_memory=False)
    assert segment(image, settings, max_classes=50).shape == (64, 96)
    monkeypatch.setattr(memory, "available_memory", lambda: None)  # unknown: no check
    assert segment(image, settings).shape == (64, 96)
    # channels first: the plane is 64 x 96
    monkeypatch.setattr(memory, "available_memory", lambda: network + other - 1)
    with pytest.raises(MemoryError, match=f"a 64 x 96 image.*{memory.SWITCH}=0"):
        iter_segment(np.stack([image] * 5), settings, channel_axis=0)
    monkeypatch.setenv(memory.SWITCH, "0")  # the user's way to run anyway
    assert segment(image, settings).shape == (64, 96)


def test_every_input_channel_counts_in_the_memory_estimate(monkeypatch):
    from napari_unsupervised_segmentation.core import memory

    paper, default = PRESETS["paper"], PRESETS["default"]
    network, rgb = memory.estimate_bytes(64, 96, paper)  # fitted on 3 channels
    assert memory.estimate_bytes(64, 96, paper, n_input_channels=3) == (network, rgb)
    _, hyperspectral = memory.estimate_bytes(64, 96, paper, n_input_channels=1500)
    assert hyperspectral - rgb == 64 * 96 * 1497 * 16  # 16 bytes a pixel and channel
    _, merged = memory.estimate_bytes(64, 96, default, n_input_channels=1500)
    _, merged_rgb = memory.estimate_bytes(64, 96, default)
    assert merged - merged_rgb == 64 * 96 * 1497 * 40  # and 24 more for texture merging
    monkeypatch.setattr(memory, "available_memory", lambda: network + rgb)
    memory.check_memory(64, 96, paper, n_input_channels=3)  # fits, just
    with pytest.raises(
        MemoryError, match=r"a 64 x 96 image with 1500 channels needs .* fewer of its channels"
    ):
        memory.check_memory(64, 96, paper, n_input_channels=1500)
    # segment counts the channels of the image it is given, before reading any pixel
    many = CountingArray(np.zeros((64, 96, 1500), np.float32))
    with pytest.raises(MemoryError, match="1500 channels"):
        segment(many, paper, channel_axis=-1, device="cpu")
    assert many.pixels_read == 0


def test_the_readmes_python_api_example_runs_as_written(capsys):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start: Python API", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "data.coffee()" in code
    # the README's photo at an eighth of its size, so the test takes seconds, not minutes
    namespace: dict = {}
    exec(code.replace("data.coffee()", "data.coffee()[::8, ::8]"), namespace)
    assert namespace["labels"].shape == (50, 75) and namespace["labels"].min() == 1
    printed = capsys.readouterr().out.splitlines()
    assert printed and printed[0].startswith("1 ")  # iteration, labels, loss per step
    assert namespace["step"].n_classes > 8 or namespace["current"].shape == (50, 75)


def test_the_readmes_train_once_example_runs_as_written(tmp_path, monkeypatch):
    from pathlib import Path

    from napari_unsupervised_segmentation import load_model

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start: Python API", 1)[1]
    code = section.split("```python\n")[2].split("```", 1)[0]
    assert "fit(stack, channel_axis=-1)" in code
    # photos at an eighth of their size and a short training, so the test takes seconds
    code = code.replace("data.coffee()", "data.coffee()[::8, ::8]")
    code = code.replace("data.astronaut()", "data.astronaut()[::8, ::8]")
    code = code.replace("fit(stack, channel_axis=-1)", "fit(stack, channel_axis=-1, max_iter=5)")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(code, namespace)
    classes, model = namespace["classes"], namespace["model"]
    assert classes.shape == (3, 50, 75) and classes.min() >= 1
    assert classes.max() <= model.n_classes
    assert namespace["other"].shape == (64, 64)
    np.testing.assert_array_equal(
        load_model(tmp_path / "photos.model").predict(namespace["stack"], channel_axis=-1),
        classes,
    )
