"""Shared test set-up. torch is imported before any Qt binding (needed on Windows)."""

import pytest
import torch  # noqa: F401  (import order matters: torch before Qt)

PLUGIN = "napari-unsupervised-segmentation"
WIDGET = "Segment image"


@pytest.fixture
def dock_widget():
    """A function docking the widget on a viewer through the manifest; no training thread
    of a widget it docked outlives the test."""
    docked = []

    def dock(viewer):
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
        docked.append(widget)
        return widget

    yield dock
    for widget in docked:
        run = widget._life.run
        if run is not None:
            run.stop.set()
            assert run.done.wait(30)


@pytest.fixture
def viewer_widget(make_napari_viewer, qtbot, dock_widget):
    """A viewer with the widget docked through the manifest (updates shown unthrottled)."""
    viewer = make_napari_viewer()
    widget = dock_widget(viewer)
    widget.update_interval = 0.0
    return viewer, widget
