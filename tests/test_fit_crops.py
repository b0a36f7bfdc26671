"""One network trained across a stack, a list of images or a large image, on crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_unsupervised_segmentation import (
    CropSampling,
    SegmentationParams,
    fit,
    iter_fit,
    segment,
)
from napari_unsupervised_segmentation.core.crops import crop_training_bytes, training_data
from napari_unsupervised_segmentation.core.labels import relabel_consecutive

#: Small, fast settings: a few seconds on a 2-core CPU.
FAST = SegmentationParams(max_iter=15, min_classes=0, n_superpixels=60, max_classes=8)
#: Labels ``segment`` gave for these images before training learnt to run on crops.
REFERENCE = Path(__file__).parent / "data" / "segment_labels.npz"


def _gray() -> np.ndarray:
    """Two bright squares on a noisy uint16 background."""
    rng = np.random.default_rng(0)
    image = rng.normal(1000, 100, (40, 52))
    image[5:20, 5:20] += 4000
    image[22:36, 30:48] += 2500
    return np.clip(image, 0, 65535).astype(np.uint16)


def _photo() -> np.ndarray:
    """Two coloured rectangles on a blue uint8 background."""
    rng = np.random.default_rng(1)
    image = np.zeros((48, 60, 3), np.float64)
    image[:] = (40, 90, 160)
    image[8:30, 6:34] = (200, 60, 40)
    image[26:44, 30:56] = (60, 180, 70)
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("preset", ["paper", "default"])
@pytest.mark.parametrize(
    ("name", "image", "channel_axis"), [("gray", _gray(), None), ("photo", _photo(), -1)]
)
def test_segment_gives_the_labels_it_always_gave(preset, name, image, channel_axis):
    labels = segment(image, preset, channel_axis=channel_axis, max_iter=40, seed=3, device="cpu")
    with np.load(REFERENCE) as reference:
        np.testing.assert_array_equal(labels, reference[f"{preset}_{name}"])


def test_one_image_that_fits_trains_whole_as_segment_does():
    *_, last = iter_fit(_gray(), FAST)
    assert last.prediction.shape == (1, 40, 52)
    expected = segment(_gray(), FAST)
    np.testing.assert_array_equal(relabel_consecutive(last.prediction[0].numpy()), expected)
    assert (relabel_consecutive(last.model.predict(_gray())) == expected).mean() >= 0.99
    # a list of one image is that image
    *_, alone = iter_fit([_gray()], FAST)
    np.testing.assert_array_equal(alone.prediction, last.prediction)


def _stack() -> tuple[np.ndarray, np.ndarray]:
    """Three uint16 planes of one bright rectangle on a dark background, both of a
    brightness that changes from plane to plane, and where the rectangle is."""
    rng = np.random.default_rng(0)
    truth = np.zeros((40, 52), bool)
    truth[8:30, 10:36] = True
    levels = [(1000, 3000), (1080, 3200), (1160, 2800)]
    planes = [
        np.where(truth, bright, dark) + rng.normal(0, 80, truth.shape) for dark, bright in levels
    ]
    return np.clip(np.stack(planes), 0, 65535).astype(np.uint16), truth


SMALL_CROPS = CropSampling(size=24, pool=12, batch=4)


def test_a_stack_gets_one_label_per_class_in_every_plane():
    stack, truth = _stack()
    model = fit(stack, FAST, crops=SMALL_CROPS)
    labels = model.predict(stack)
    inside = {int(np.bincount(plane[truth]).argmax()) for plane in labels}
    outside = {int(np.bincount(plane[~truth]).argmax()) for plane in labels}
    assert len(inside) == 1 and len(outside) == 1 and inside != outside
    for plane in labels:
        assert (plane[truth] == min(inside)).mean() >= 0.85
        assert (plane[~truth] == min(outside)).mean() >= 0.85


def test_a_stack_trains_on_crops_by_default():
    stack, _ = _stack()
    *_, last = iter_fit(stack, FAST, max_iter=2)
    # the default crops are larger than these planes: every crop is a whole plane
    assert last.prediction.shape == (3, 40, 52)
    assert last.model.n_input_channels == 1


def test_a_list_of_images_of_different_shapes_trains_one_model():
    first = _gray()
    second = np.ascontiguousarray(_gray()[::-1, ::-1].T)  # 52 x 40: the squares elsewhere
    *_, last = iter_fit([first, second], FAST, crops=SMALL_CROPS)
    assert last.prediction.shape == (4, 24, 24)
    model = last.model
    brightest = [
        int(np.bincount(model.predict(first)[5:20, 5:20].ravel()).argmax()),
        int(np.bincount(model.predict(second)[32:47, 20:35].ravel()).argmax()),
    ]
    assert brightest[0] == brightest[1]
    assert model.predict(second).shape == (52, 40)
    # the cheap model keeps the training's running statistics: the same network and ranges
    preview = last.preview_model
    assert preview.ranges == model.ranges and preview.predict(first).shape == (40, 52)


def test_list_items_that_do_not_fit_are_refused_by_name():
    photo = _photo()
    two = np.zeros((30, 30, 2), np.float32)
    with pytest.raises(ValueError, match=r"images\[1\] has 2 channels and images\[0\] colour"):
        fit([photo, two], FAST, channel_axis=-1)
    with pytest.raises(ValueError, match=r"images\[2\]: .*no 2D plane"):
        fit([_gray(), _gray(), np.zeros(5)], FAST)
    with pytest.raises(ValueError, match="empty"):
        fit([], FAST)
    with pytest.raises(ValueError, match="one 2D image only"):
        fit(_stack()[0], FAST, crops=False)
    with pytest.raises(ValueError, match="spatial_ndim must be 2"):
        fit(_stack()[0], FAST, spatial_ndim=4)
    with pytest.raises(ValueError, match="spacing"):
        fit(_gray(), FAST, spacing=(1.0, 0.0))


class LazyArray:
    """An array-like that, as dask and zarr do, states its shape and dtype and reads its
    pixels only when indexed or converted; it records the shape of every read. Its
    pixels are made from their coordinates, so it can be larger than the memory."""

    def __init__(self, shape: tuple[int, ...], dtype=np.uint8) -> None:
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.ndim = len(shape)
        self.reads: list[tuple[int, ...]] = []

    def _pixels(self, key) -> np.ndarray:
        grids = np.ogrid[
            tuple(
                slice(*k.indices(n)) if isinstance(k, slice) else slice(k, k + 1)
                for k, n in zip(key, self.shape, strict=True)
            )
        ]
        rows, cols = grids[-3], grids[-2]
        channel = grids[-1]
        pattern = ((rows // 16 + cols // 16) % 2) * 150 + 50 + channel * 10 + grids[0] * 3
        squeeze = tuple(i for i, k in enumerate(key) if not isinstance(k, slice))
        return np.squeeze(pattern, axis=squeeze).astype(self.dtype)

    def __getitem__(self, key):
        part = self._pixels(key)
        self.reads.append(part.shape)
        return part

    def __array__(self, dtype=None, copy=None):
        raise AssertionError("the whole array was read")


def test_a_lazy_stack_is_read_only_in_crop_regions():
    lazy = LazyArray((3, 400, 500, 3))  # (Z, H, W, RGB)
    sampling = CropSampling(size=32, pool=6, batch=3)
    model = fit(lazy, FAST, channel_axis=-1, max_iter=2, crops=sampling)
    assert lazy.reads == [(32, 32, 3)] * 6
    assert model.is_rgb and model.ranges == ((0.0, 255.0),)


def test_intensity_ranges_are_read_in_bounded_blocks(monkeypatch):
    from napari_unsupervised_segmentation.core import crops

    monkeypatch.setattr(crops, "RANGE_BLOCK_PIXELS", 5000)
    lazy = LazyArray((2, 100, 120, 2), np.uint16)  # (Z, H, W, C) microscopy channels
    sampling = CropSampling(size=20, pool=4, batch=2)
    model = fit(lazy, FAST, channel_axis=-1, max_iter=1, crops=sampling)
    crop_reads = [shape for shape in lazy.reads if shape == (20, 20, 2)]
    block_reads = [shape for shape in lazy.reads if shape != (20, 20, 2)]
    assert len(crop_reads) == 4
    assert all(np.prod(shape) <= 5000 for shape in block_reads)
    # two passes (extremes, then histogram) over every pixel of every plane
    assert sum(np.prod(shape) for shape in block_reads) == 2 * 2 * 100 * 120 * 2
    # the percentiles of all the data, as numpy computes them on the whole array
    whole = lazy._pixels((slice(None),) * 4)
    for channel, (low, high) in enumerate(model.ranges):
        expected = np.percentile(whole[..., channel], [1.0, 99.8])
        np.testing.assert_allclose((low, high), expected)


def test_an_image_too_large_to_train_whole_trains_on_crops_in_bounded_memory():
    huge = LazyArray((60000, 60000, 3))  # 10 GB of RGB: more than training on it allows
    sampling = CropSampling(size=32, pool=4, batch=2)
    *_, last = iter_fit(huge, FAST, channel_axis=-1, max_iter=1, crops=None)
    assert last.prediction.shape[1:] == (128, 128)  # the default crops
    small = training_data(LazyArray((500, 500, 3)), channel_axis=-1)
    large = training_data(huge, channel_axis=-1)
    for settings in (FAST, SegmentationParams()):
        sizes = {
            crop_training_bytes(sampling, data.crop_shape(sampling.size), settings, 3)
            for data in (small, large)
        }
        assert len(sizes) == 1


def test_crops_measure_batchnorm_over_all_of_them():
    # one crop, the whole image: the model gives the last step's classes, as the whole
    # image's model does
    *_, last = iter_fit(_gray(), FAST, crops=CropSampling(size=64, pool=1, batch=1))
    predicted = last.model.predict(_gray()) - 1
    assert (predicted == last.prediction[0].numpy()).mean() >= 0.99
    # three whole planes, one batch: the model gives each plane's classes of the last step
    stack, _ = _stack()
    *_, last = iter_fit(stack, FAST, crops=CropSampling(size=64, pool=3, batch=3))
    predicted = last.model.predict(stack) - 1
    assert (predicted == last.prediction.numpy()).mean() >= 0.99


def test_batchnorm_measured_in_batches_is_measured_over_all_of_them():
    import torch

    from napari_unsupervised_segmentation.core.fitted import measure_batchnorm
    from napari_unsupervised_segmentation.core.train import build_model

    stack, _ = _stack()
    pixels = torch.from_numpy(stack.astype(np.float32) / 4000).unsqueeze(1)  # (3, 1, H, W)
    network = build_model(1, FAST, torch.device("cpu"))
    at_once = build_model(1, FAST, torch.device("cpu"))
    for module in at_once.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    with torch.no_grad():
        at_once.train()(pixels)  # one pass over all planes: what the measure must equal
    measure_batchnorm(network, lambda: (pixels[i : i + 1] for i in range(3)))
    for name, value in at_once.state_dict().items():
        if name.endswith(("running_mean", "running_var")):
            np.testing.assert_allclose(network.state_dict()[name], value, rtol=1e-3, atol=1e-5)
