"""The npe2 manifest: valid, installed, and its widget docks from the Plugins and Layers menus."""

from __future__ import annotations

import npe2
import pytest

PLUGIN = "napari-unsupervised-segmentation"
DISPLAY_NAME = "Unsupervised Segmentation"
WIDGET = "Segment image"
WIDGET_COMMAND = f"{PLUGIN}.make_widget"


@pytest.fixture(scope="module")
def manifest() -> npe2.PluginManifest:
    return npe2.PluginManifest.from_distribution(PLUGIN)


def test_manifest_is_valid_and_importable(manifest):
    assert manifest.name == PLUGIN
    assert manifest.display_name == DISPLAY_NAME
    # Every python_name (widget, reader, writer, samples) resolves to an object.
    manifest.validate_imports()


def test_widget_and_menu_contributions(manifest):
    widgets = manifest.contributions.widgets
    assert [w.display_name for w in widgets] == [WIDGET]
    assert widgets[0].command == WIDGET_COMMAND
    segment_menu = manifest.contributions.menus["napari/layers/segment"]
    assert [item.command for item in segment_menu] == [WIDGET_COMMAND]


def test_sample_data_contributions(manifest):
    keys = {sample.key for sample in manifest.contributions.sample_data}
    assert {"coffee", "ihc"} <= keys


def test_widget_docks_through_the_installed_manifest(make_napari_viewer):
    from napari_unsupervised_segmentation._napari.widget import SegmentationWidget

    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    assert isinstance(widget, SegmentationWidget)
    assert dock.name.startswith(WIDGET)
    assert widget.run_button.text == "Run"


def test_layers_segment_menu_docks_the_widget(make_napari_viewer):
    from napari._app_model import get_app_model

    from napari_unsupervised_segmentation._napari.widget import SegmentationWidget

    viewer = make_napari_viewer()
    app = get_app_model()
    commands = [
        getattr(item, "command", None) for item in app.menus.get_menu("napari/layers/segment")
    ]
    widget_items = [
        command for command in commands if getattr(command, "id", None) == WIDGET_COMMAND
    ]
    # napari titles the item "<widget> (<plugin>)": what the README tells users to click
    assert [command.title for command in widget_items] == [f"{WIDGET} ({DISPLAY_NAME})"]
    plugins_menu = [getattr(item, "command", None) for item in app.menus.get_menu("napari/plugins")]
    assert f"{WIDGET} ({DISPLAY_NAME})" in [getattr(c, "title", None) for c in plugins_menu]
    app.commands.execute_command(WIDGET_COMMAND).result()
    docked = [w for w in viewer.window.dock_widgets.values() if isinstance(w, SegmentationWidget)]
    assert len(docked) == 1


@pytest.mark.parametrize(
    ("name", "offered"),
    [
        ("cells_labels.tif", True),
        ("coffee labels.tif", True),  # napari's default name when saving layer "coffee labels"
        ("img labels [1].tif", True),  # a second run's layer, saved
        ("img_cp_masks.tif", True),  # Cellpose
        ("stack-mask.TIFF", True),  # npe2 lower-cases the extension only
        ("nuclei.seg.ome.tif", True),
        ("cells_masks [1].tif", True),  # a second "cells_masks" layer, saved
        ("x_seg [2].ome.tiff", True),
        ("cells.tif", False),
        ("cellmask.tif", False),  # no separator before the ending
        ("stack.ome.tiff", False),
        ("labels.png", False),
    ],
)
def test_reader_is_offered_for_label_names_only(name, offered):
    from napari_unsupervised_segmentation.io import has_label_name

    plugins = npe2.PluginManager.instance()
    plugins.discover()
    readers = {reader.plugin_name for reader in plugins.iter_compatible_readers([name])}
    assert (PLUGIN in readers) is offered  # as napari's File > Open decides
    if name.lower().endswith((".tif", ".tiff")):
        assert has_label_name(name) is offered  # the patterns and the reader's rule agree


def test_reader_patterns_are_the_ones_the_name_rule_generates(manifest):
    from napari_unsupervised_segmentation.io._label_tiff import reader_filename_patterns

    [reader] = manifest.contributions.readers
    assert list(reader.filename_patterns) == reader_filename_patterns()
