"""The settings' declarations: validation, options, presets, their labels, and the docs page."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from napari_unsupervised_segmentation import PRESETS, SegmentationParams, segment
from napari_unsupervised_segmentation.core.params import (
    GROUPS,
    SETTINGS,
    parameters_markdown,
    settings_of_version_1,
)

ROOT = Path(__file__).resolve().parents[1]
#: Small images and the labels both presets (and a few options) gave them, made by the
#: engine whose settings had flat names (model file layout version 1), with those settings.
REFERENCE = Path(__file__).parent / "data" / "params_reference.npz"

#: Each reference case: preset, image, channel axis, and the same settings by today's names.
CASES = {
    "paper_rgb": ("paper", "image_rgb", -1, {"max_iter": 15}),
    "default_rgb": ("default", "image_rgb", -1, {"max_iter": 15}),
    "default_two_channels": ("default", "image_two_channels", 0, {"max_iter": 15}),
    "paper_graph_superpixels_split": (
        "paper",
        "image_rgb",
        -1,
        {"max_iter": 10, "superpixels": "graph", "superpixel_scale": 50.0, "label_by": "segment"},
    ),
    "default_colour_merge": (
        "default",
        "image_rgb",
        -1,
        {"max_iter": 10, "merge": "colour", "merge_threshold": 2.0, "merge_interior_weight": 0.3},
    ),
    "default_max_segments": (
        "default",
        "image_rgb",
        -1,
        {"max_iter": 10, "merge_threshold": 0.0, "max_segments": 4, "premerge_threshold": 0.0},
    ),
    "paper_min_size": (
        "paper",
        "image_rgb",
        -1,
        {"max_iter": 10, "label_by": "segment", "min_segment_size": 10},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_presets_and_options_give_the_labels_of_the_flat_settings(case):
    preset, image, axis, changes = CASES[case]
    with np.load(REFERENCE) as reference:
        labels = segment(reference[image], preset, channel_axis=axis, device="cpu", **changes)
        np.testing.assert_array_equal(labels, reference[case])


@pytest.mark.parametrize("case", list(CASES))
def test_flat_settings_translate_to_the_same_settings(case):
    preset, _, _, changes = CASES[case]
    with np.load(REFERENCE) as reference:
        old = json.loads(str(reference[f"{case}_settings"]))
    expected = PRESETS[preset].replace(device="cpu", **changes)
    assert SegmentationParams(**settings_of_version_1(old)) == expected


def test_every_setting_is_declared_in_a_group_with_a_help_that_says_which_way():
    assert set(SETTINGS) == {f.name for f in dataclasses.fields(SegmentationParams)}
    for name, declared in SETTINGS.items():
        assert declared.group in GROUPS, name
        assert declared.help.endswith("."), name
        assert "\n" not in declared.help and len(declared.help) < 220, name
        assert declared.label, name
        for requirement in declared.requires:  # an option is declared before its settings
            assert list(SETTINGS).index(requirement.option) < list(SETTINGS).index(name)
    assert [SETTINGS[n].group for n in SETTINGS] == sorted(
        (SETTINGS[n].group for n in SETTINGS), key=list(GROUPS).index
    )


def test_paper_preset_is_the_plain_constructor_and_default_has_its_own_values():
    assert SegmentationParams() == PRESETS["paper"]
    default = PRESETS["default"]
    assert (default.max_iter, default.max_classes, default.n_superpixels) == (160, 32, 3000)
    assert (default.label_by, default.merge, default.merge_threshold) == (
        "segment",
        "texture",
        0.435,
    )
    assert (default.spectral_weight, default.premerge_threshold) == (0.2, 0.4)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"compactness": 5.0, "superpixels": "graph"}, "superpixels='slic'"),
        ({"superpixel_scale": 100.0}, "superpixels='graph'"),
        ({"merge_threshold": 0.3}, "label_by='segment'"),
        ({"label_by": "segment", "merge_threshold": 0.3}, "merge='colour' or merge='texture'"),
        ({"label_by": "segment", "merge": "colour", "merge_region_weight": 0.4}, "merge='texture'"),
        ({"label_by": "segment", "merge": "colour", "spectral_weight": 0.2}, "merge='texture'"),
        (
            {
                "label_by": "segment",
                "merge": "texture",
                "spectral_weight": 0,
                "premerge_threshold": 0.3,
            },
            "spectral_weight > 0",
        ),
        ({"min_segment_size": 16}, "label_by='segment'"),
        ({"cut_scale": 700.0}, "label_by='segment'"),
    ],
)
def test_a_setting_outside_its_option_raises_naming_the_option(settings, named):
    with pytest.raises(ValueError, match="applies only with") as raised:
        SegmentationParams(**settings)
    assert named in str(raised.value)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_iter": 0}, "max_iter must be integer >= 1"),
        ({"max_iter": True}, "max_iter"),
        ({"lr": float("nan")}, "lr must be number > 0"),
        ({"momentum": 1.0}, "momentum must be number >= 0 and < 1"),
        ({"superpixels": "quick"}, "superpixels must be 'slic', 'graph'"),
        ({"min_classes": 100}, "min_classes must be below max_classes"),
        ({"max_classes": 1}, "max_classes must be integer >= 2"),
        ({"seed": -1}, "seed"),
        ({"device": ""}, "device"),
        ({"precision": "fp16"}, "precision"),
        ({"label_by": "segment", "merge": "texture", "merge_threshold": 0}, "joins nothing"),
    ],
)
def test_out_of_range_values_raise_naming_the_setting(settings, message):
    with pytest.raises(ValueError, match=message):
        SegmentationParams(**settings)


def test_numpy_numbers_become_plain_numbers():
    params = SegmentationParams(max_iter=np.int64(7), lr=np.float32(0.5), seed=None)
    assert type(params.max_iter) is int and type(params.lr) is float and params.seed is None


def test_choosing_an_option_gives_its_defaults_and_drops_the_option_left():
    default = PRESETS["default"]
    colour = default.replace(merge="colour")
    assert (colour.merge_threshold, colour.merge_interior_weight) == (2.0, 0.0)
    assert colour.merge_region_weight is colour.spectral_weight is colour.premerge_threshold is None
    assert colour.min_segment_size == 16  # settings of other options stay
    assert colour.replace(merge="texture") == default
    assert default.replace(merge="colour", merge_threshold=3.0).merge_threshold == 3.0
    graph = default.replace(superpixels="graph")
    assert (graph.n_superpixels, graph.compactness, graph.superpixel_scale) == (None, None, 100.0)
    classes = default.replace(label_by="class")
    assert classes.merge is classes.merge_threshold is classes.cut_scale is None
    assert default.replace(spectral_weight=0).premerge_threshold is None
    assert default.replace(spectral_weight=0.3).premerge_threshold == 0.4
    assert default.replace(premerge_threshold=0.3).spectral_weight == 0.2
    with pytest.raises(ValueError, match="applies only with merge='texture'"):
        default.replace(merge="colour", spectral_weight=0.2)
    with pytest.raises(TypeError, match="unknown parameter"):
        default.replace(n_channels=8)


def test_applied_lists_the_settings_in_use():
    assert "compactness" in PRESETS["paper"].applied()
    assert "merge_threshold" not in PRESETS["paper"].applied()
    assert PRESETS["default"].applied()["premerge_threshold"] == 0.4


def test_docs_parameters_page_is_the_generated_one():
    page = (ROOT / "docs" / "parameters.md").read_text(encoding="utf-8")
    assert page == parameters_markdown(), (
        "docs/parameters.md is out of date: run "
        "python -m napari_unsupervised_segmentation.core.params > docs/parameters.md"
    )
    for name in SETTINGS:
        assert f"| `{name}` |" in page


def test_a_model_file_that_names_the_settings_flat_still_loads(tmp_path):
    """Layout version 1 of model files stored the settings by their flat names."""
    import torch

    from napari_unsupervised_segmentation import fit
    from napari_unsupervised_segmentation.core.fitted import FILE_VERSION, load_model

    with np.load(REFERENCE) as reference:
        image = reference["image_rgb"]
        old = json.loads(str(reference["default_rgb_settings"]))
    model = fit(image, "default", channel_axis=-1, device="cpu", max_iter=3, max_classes=32)
    path = model.save(tmp_path / "model.pt")
    contents = torch.load(path, weights_only=True)
    metadata = json.loads(contents["metadata"])
    assert metadata["version"] == FILE_VERSION and metadata["settings"]["max_classes"] == 32
    metadata.update(version=1, settings={**old, "max_iter": 3})
    torch.save({**contents, "metadata": json.dumps(metadata)}, path)
    loaded = load_model(path)
    assert loaded.settings == PRESETS["default"].replace(device="cpu", max_iter=3)
    np.testing.assert_array_equal(
        loaded.predict(image, channel_axis=-1), model.predict(image, channel_axis=-1)
    )
