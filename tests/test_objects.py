"""Objects from classes: one label per object, background 0, in 2D and 3D."""

import numpy as np
import pytest

from napari_unsupervised_segmentation import segment
from napari_unsupervised_segmentation.core.objects import (
    border_classes,
    intensity_classes,
    objects_from_classes,
    objects_in_planes,
)


def _disc(shape: tuple[int, ...], centre: tuple[float, ...], radius: float) -> np.ndarray:
    grid = np.indices(shape)
    offsets = [(g - c) ** 2 for g, c in zip(grid, centre, strict=True)]
    return np.sum(offsets, axis=0) <= radius**2


def test_two_touching_discs_become_two_objects() -> None:
    classes = (_disc((40, 60), (20, 20), 10) | _disc((40, 60), (20, 37), 10)).astype(int)
    labels = objects_from_classes(classes, min_distance=5)
    assert labels.dtype == np.uint8
    assert set(np.unique(labels)) == {0, 1, 2}
    assert labels[20, 20] != labels[20, 37]
    assert (labels[classes == 0] == 0).all() and (labels[classes == 1] > 0).all()
    off = objects_from_classes(classes, split="off")
    assert set(np.unique(off)) == {0, 1}


def test_a_rim_and_its_core_become_one_object() -> None:
    classes = np.zeros((30, 30), dtype=int)
    classes[_disc((30, 30), (15, 15), 9)] = 1  # rim
    classes[_disc((30, 30), (15, 15), 5)] = 2  # core of another class
    labels = objects_from_classes(classes)
    assert set(np.unique(labels)) == {0, 1}
    np.testing.assert_array_equal(labels == 1, classes > 0)


def test_a_hole_is_filled_unless_asked_not_to() -> None:
    classes = np.zeros((30, 30), dtype=int)
    classes[_disc((30, 30), (15, 15), 9)] = 1
    classes[14:17, 14:17] = 0  # a hole of the background class
    labels = objects_from_classes(classes)
    assert labels[15, 15] == 1
    assert (labels[_disc((30, 30), (15, 15), 9)] == 1).all()
    kept = objects_from_classes(classes, fill_holes=False)
    assert kept[15, 15] == 0


def test_specks_under_min_size_are_removed() -> None:
    classes = np.zeros((30, 30), dtype=int)
    classes[5:15, 5:15] = 1  # 100 pixels
    classes[20:23, 20:23] = 1  # 9 pixels
    labels = objects_from_classes(classes, min_size=10, split="off")
    assert labels.max() == 1 and labels[21, 21] == 0 and labels[10, 10] == 1
    both = objects_from_classes(classes, min_size=9, split="off")
    assert both.max() == 2


def test_the_given_background_is_zero() -> None:
    classes = np.zeros((20, 20), dtype=int)
    classes[5:15, 5:15] = 1
    labels = objects_from_classes(classes, background=[1], split="off", fill_holes=False)
    assert (labels[classes == 1] == 0).all() and (labels[classes == 0] == 1).all()


def test_the_classes_enriched_on_the_border_are_background() -> None:
    classes = np.full((20, 20), 2)
    classes[:, :3] = 0  # a strip along the border: more of the border than of the image
    classes[8:12, 8:12] = 1
    assert border_classes(classes) == [0, 2]
    # an object that covers most of the image inside the border is not background
    big = np.zeros((40, 40), dtype=int)
    big[5:35, 5:35] = 1
    assert border_classes(big) == [0]
    # the outermost pixels of a class of their own (the network's padding): the band behind
    # them decides
    rimmed = np.full((40, 40), 2)
    rimmed[[0, -1]] = 0
    rimmed[:, [0, -1]] = 0
    rimmed[10:30, 10:30] = 1
    assert border_classes(rimmed) == [0, 2]
    assert border_classes(rimmed, width=1) == [0]
    # a frame of class 3 around class 1: only the frame is background
    framed = np.full((4, 4), 3)
    framed[1:3, 1:3] = 1
    assert border_classes(framed, width=1) == [3]
    # stripes as common on the border as inside: the class with most border pixels (the
    # lowest of a tie)
    assert border_classes(np.tile([0, 1], (6, 3))) == [0]


def test_two_touching_balls_become_two_objects_in_3d() -> None:
    shape = (24, 24, 40)
    classes = (_disc(shape, (12, 12, 12), 8) | _disc(shape, (12, 12, 26), 8)).astype(int)
    labels = objects_from_classes(classes, min_distance=4)
    assert set(np.unique(labels)) == {0, 1, 2}
    assert labels[12, 12, 12] != labels[12, 12, 26]
    # planes twice as far apart as pixels: the same balls, squashed along the first axis
    squashed = classes[::2]
    labels = objects_from_classes(squashed, min_distance=4, spacing=(2.0, 1.0, 1.0))
    assert set(np.unique(labels)) == {0, 1, 2}


def test_segment_with_the_objects_preset_finds_the_nuclei() -> None:
    rng = np.random.default_rng(0)
    image = np.full((64, 64), 0.1)
    centres = [(16, 16), (16, 46), (46, 20), (46, 34)]  # the last two touch
    for centre in centres:
        image[_disc(image.shape, centre, 8)] = 0.9
    image += rng.normal(0, 0.02, image.shape)
    labels = segment(image, "objects", max_iter=20, device="cpu")
    assert labels[0, 0] == 0 and labels[32, 2] == 0
    assert labels.max() == len(centres)
    assert len({labels[c] for c in centres}) == len(centres)


@pytest.mark.parametrize("changes", [{"split": "watershed"}, {"spacing": (1.0,)}])
def test_bad_arguments_raise(changes: dict) -> None:
    with pytest.raises(ValueError):
        objects_from_classes(np.zeros((5, 5), dtype=int), **changes)


def test_a_volume_finisher_gives_objects_with_its_spacing() -> None:
    from napari_unsupervised_segmentation import PRESETS
    from napari_unsupervised_segmentation.core.volumes import VolumeFinisher

    shape = (24, 24, 40)
    classes = (_disc(shape, (12, 12, 12), 8) | _disc(shape, (12, 12, 26), 8)).astype(np.uint8)
    settings = PRESETS["objects"].replace(object_background="border", object_min_distance=4)
    labels = VolumeFinisher(settings, spacing=(2.0, 1.0, 1.0))(classes[::2])
    assert set(np.unique(labels)) == {0, 1, 2}
    assert labels[0, 0, 0] == 0


def test_objects_have_no_merge_hierarchy() -> None:
    from napari_unsupervised_segmentation import PRESETS
    from napari_unsupervised_segmentation.core.normalize import prepare_image
    from napari_unsupervised_segmentation.core.postprocess import LabelFinisher

    image = prepare_image(np.zeros((8, 8)), None)
    with pytest.raises(ValueError, match="label_by='segment'"):
        LabelFinisher(PRESETS["objects"], image).hierarchy(np.zeros((8, 8), dtype=np.uint8))


def test_an_image_spacing_reaches_the_objects() -> None:
    from napari_unsupervised_segmentation import PRESETS
    from napari_unsupervised_segmentation.core.normalize import prepare_image
    from napari_unsupervised_segmentation.core.postprocess import LabelFinisher

    # two touching discs squashed to half height, their pixels twice as tall as wide
    shape = (40, 60)
    classes = (_disc(shape, (20, 20), 10) | _disc(shape, (20, 37), 10)).astype(np.uint8)
    squashed = classes[::2]
    settings = PRESETS["objects"].replace(object_background="border", object_min_distance=5)
    image = prepare_image(np.zeros(squashed.shape), None)
    labels = LabelFinisher(settings, image, spacing=(2.0, 1.0))(squashed)
    assert set(np.unique(labels)) == {0, 1, 2}


def test_objects_of_a_stack_are_numbered_across_the_planes() -> None:
    plane = (_disc((40, 60), (20, 20), 8) | _disc((40, 60), (20, 45), 8)).astype(int)
    stack = np.stack([plane, np.zeros_like(plane), plane * 2])  # class 2: a third class
    labels = objects_in_planes(stack, min_distance=5)
    assert labels.shape == stack.shape
    assert sorted(np.unique(labels[0])) == [0, 1, 2]
    assert (labels[1] == 0).all()
    assert sorted(np.unique(labels[2])) == [0, 3, 4]
    # the background is chosen once for the stack: class 0 in every plane
    assert (labels[stack == 0] == 0).all()


def test_the_border_of_a_stack_runs_along_each_planes_faces() -> None:
    stack = np.zeros((12, 30, 30), dtype=int)
    stack[:, 10:20, 10:20] = 1
    stack[0] = 1  # plane 0 all class 1: a face of the stack, not of any plane's border
    assert border_classes(stack, spatial_ndim=2) == [0]
    stack[0, 10:20, 10:20] = 0  # and a plane of class 0 inside makes no difference
    assert border_classes(stack, spatial_ndim=2) == [0]


def test_a_stack_of_volumes_keeps_3d_objects() -> None:
    ball = _disc((20, 20, 20), (10, 10, 10), 5).astype(int)
    labels = objects_in_planes(np.stack([ball, ball]), spatial_ndim=3)
    assert sorted(np.unique(labels)) == [0, 1, 2]
    assert (labels[0][ball == 1] == 1).all() and (labels[1][ball == 1] == 2).all()


def test_dim_and_bright_nuclei_are_objects_by_intensity() -> None:
    # classes: 0 background, 1 bright nuclei, 2 dimmer nuclei; wherever Otsu's threshold
    # falls, the dim class is brighter than the line drawn three quarters of the way from
    # the background to it
    shape = (60, 90)
    bright = _disc(shape, (20, 20), 8) | _disc(shape, (40, 70), 8)
    dim = _disc(shape, (40, 30), 8)
    classes = np.where(bright, 1, np.where(dim, 2, 0))
    intensity = np.where(bright, 1.0, np.where(dim, 0.7, 0.0))
    assert intensity_classes(classes, intensity) == [0]
    labels = objects_from_classes(classes, background="intensity", intensity=intensity)
    assert labels.max() == 3 and (labels[classes == 0] == 0).all()
    # dark nuclei on a bright field: the same, inverted
    assert intensity_classes(classes, 1.0 - intensity) == [0]


def test_the_intensity_rule_needs_an_intensity() -> None:
    with pytest.raises(ValueError, match="intensity"):
        objects_from_classes(np.zeros((10, 10), int), background="intensity")
    with pytest.raises(ValueError, match="background must be"):
        objects_from_classes(np.zeros((10, 10), int), background="corners")


def test_the_dim_halo_of_an_object_class_is_trimmed_by_brightness() -> None:
    shape = (60, 60)
    core = _disc(shape, (30, 30), 8)
    halo = _disc(shape, (30, 30), 12) & ~core  # the same class, hardly brighter than the field
    classes = (core | halo).astype(int)
    intensity = np.where(core, 1.0, np.where(halo, 0.1, 0.0))
    labels = objects_from_classes(classes, background="intensity", intensity=intensity)
    inner, outer = _disc(shape, (30, 30), 7), halo & ~_disc(shape, (30, 30), 9)
    assert labels.max() == 1  # (the smoothing blurs the core's outline by a pixel)
    assert (labels[inner] == 1).all() and (labels[outer] == 0).all()
    # the border rule keeps the whole class
    assert (objects_from_classes(classes, background="border")[halo] == 1).all()
    # a stack: the same pixels, numbered across the planes
    stack = objects_in_planes(np.stack([classes, classes]), background="intensity",
                              intensity=np.stack([intensity, intensity]))  # fmt: skip
    assert sorted(np.unique(stack)) == [0, 1, 2] and (stack[:, outer] == 0).all()
