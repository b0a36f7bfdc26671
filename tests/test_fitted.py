"""A trained model labels other images, planes and tiles with the same classes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from napari_unsupervised_segmentation import (
    SegmentationParams,
    fit,
    iter_segment,
    load_model,
    segment,
)

#: Small, fast settings: a few seconds on a 2-core CPU.
FAST = SegmentationParams(max_iter=15, min_classes=0, n_superpixels=60, max_classes=8)


def _image(seed: int = 0, shape=(40, 52)) -> np.ndarray:
    """Two bright squares on a noisy uint16 background."""
    rng = np.random.default_rng(seed)
    image = rng.normal(1000, 100, shape)
    image[5:20, 5:20] += 4000
    image[22:36, 30:48] += 2500
    return np.clip(image, 0, 65535).astype(np.uint16)


@pytest.fixture(scope="module")
def trained():
    """The steps' last one and its model, trained once for the module."""
    *_, last = iter_segment(_image(), FAST)
    return last, last.model


def test_predict_on_the_training_image_gives_the_training_labels(trained):
    last, model = trained
    labels = model.predict(_image())
    # class k is label k + 1: after relabelling 1..n, the labels of the last training step
    from napari_unsupervised_segmentation.core.labels import relabel_consecutive

    agree = relabel_consecutive(labels) == last.labels
    assert agree.mean() >= 0.99
    np.testing.assert_array_equal(last.labels, segment(_image(), FAST))


def test_tiles_give_exactly_the_whole_image_labels(trained):
    _, model = trained
    whole = model.predict(_image(1))
    for tile_shape in ((7, 9), (13, 52), (40, 5), (1, 1)):
        np.testing.assert_array_equal(model.predict(_image(1), tile_shape=tile_shape), whole)


def test_a_class_keeps_its_label_in_every_plane_crop_and_file(trained):
    _, model = trained
    image = _image(2)
    whole = model.predict(image)
    stack = np.stack([image, _image(3), image[::-1]])
    planes = model.predict(stack)
    assert planes.shape == (3, 40, 52)
    np.testing.assert_array_equal(planes[0], whole)
    np.testing.assert_array_equal(planes[1], model.predict(_image(3)))
    np.testing.assert_array_equal(planes[2], model.predict(image[::-1]))
    # a crop (another file with the same scaling) labels its inside exactly as the whole
    halo = model.halo
    crop = model.predict(image[10:35, 12:50])
    np.testing.assert_array_equal(
        crop[halo:-halo, halo:-halo], whole[10 + halo : 35 - halo, 12 + halo : 50 - halo]
    )
    assert whole.min() >= 1 and whole.max() <= model.n_classes


def test_the_training_scaling_holds_unless_each_image_is_normalised(trained):
    _, model = trained
    image = _image(4)
    dimmer = (image // 2).astype(np.uint16)
    own = model.predict(dimmer, normalise="image")
    same = model.predict(dimmer)
    # scaled by its own range, a dimmer copy looks like the original; by the model's, not
    assert (own == model.predict(image)).mean() > 0.95
    assert (same == model.predict(image)).mean() < 0.9
    with pytest.raises(ValueError, match="normalise"):
        model.predict(image, normalise="per-file")


def test_channels_and_channel_axis_of_a_stack(tmp_path):
    rng = np.random.default_rng(5)
    two = rng.random((2, 30, 34)).astype(np.float32)  # (C, H, W)
    two[0, 5:20, 5:20] += 2
    model = fit(two, FAST, channel_axis=0)
    assert model.n_input_channels == 2
    stack = np.stack([two, two])  # (Z, C, H, W)
    planes = model.predict(stack, channel_axis=1)
    np.testing.assert_array_equal(planes[0], model.predict(two, channel_axis=0))
    np.testing.assert_array_equal(planes[0], planes[1])
    with pytest.raises(ValueError, match="trained on 2 channels; the image has 1 channel"):
        model.predict(two[0])


def test_save_and_load_give_the_same_labels(trained, tmp_path):
    _, model = trained
    path = model.save(tmp_path / "nuclei.model")
    loaded = load_model(path)
    assert loaded.settings == model.settings and loaded.ranges == model.ranges
    np.testing.assert_array_equal(loaded.predict(_image(6)), model.predict(_image(6)))
    assert [p.name for p in tmp_path.iterdir()] == ["nuclei.model"]  # no temporary left


def test_a_colour_model_refuses_a_grayscale_image(tmp_path):
    rng = np.random.default_rng(7)
    photo = rng.integers(0, 255, (24, 30, 3), dtype=np.uint8)
    model = load_model(fit(photo, FAST, channel_axis=-1).save(tmp_path / "photo.model"))
    assert model.is_rgb
    with pytest.raises(ValueError, match=r"trained on colour \(RGB\); the image has 1 channel"):
        model.predict(photo[..., 0])


class _Exploit:
    """Unpickling this would create a file: what a malicious model file could do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_damaged_foreign_and_malicious_files_are_refused_by_name(trained, tmp_path):
    import torch

    _, model = trained
    good = model.save(tmp_path / "good.model").read_bytes()
    truncated = tmp_path / "truncated.model"
    truncated.write_bytes(good[: len(good) // 2])
    text = tmp_path / "notes.model"
    text.write_text("not a model")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.ones(3)}, foreign)
    marker = tmp_path / "exploited"
    malicious = tmp_path / "malicious.model"
    malicious.write_bytes(pickle.dumps({"metadata": _Exploit(str(marker))}))
    for path in (truncated, text, foreign, malicious):
        with pytest.raises(ValueError, match=f"cannot load a model from .*{path.name}"):
            load_model(path)
    assert not marker.exists(), "loading a model file ran code from it"
    with pytest.raises(FileNotFoundError, match="missing.model"):
        load_model(tmp_path / "missing.model")


def test_a_constant_image_has_no_model():
    with pytest.raises(ValueError, match="no model"):
        fit(np.full((10, 12), 3, np.uint8), FAST)
