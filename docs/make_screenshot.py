"""Make ``docs/screenshot.png``: the widget docked next to a Labels layer forming on coffee.

Run from the repository root (a real viewer; on a headless machine use Xvfb)::

    xvfb-run -a python docs/make_screenshot.py

It opens the coffee sample through the plugin's manifest, docks the widget, starts training
with the default settings (fewer superpixels, to be quick) and grabs the whole window while
training is still going on (the status line and the Stop button show it), once the labels
have started to merge into regions.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

PLUGIN = "napari-unsupervised-segmentation"
WIDGET = "Segment image"


def _process_events(seconds: float) -> None:
    """Let Qt run (draw, deliver the worker's updates) for ``seconds``."""
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def main(argv: list[str] | None = None) -> None:
    """Open the viewer, train a little, save the screenshot, stop and close."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("screenshot.png"))
    parser.add_argument("--labels", type=int, default=10, help="shoot once this few labels remain")
    parser.add_argument("--updates", type=int, default=200, help="or after this many updates")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait at most")
    args = parser.parse_args(argv)

    import napari
    import torch  # noqa: F401  (before Qt)

    viewer = napari.Viewer(title="napari: Unsupervised Segmentation")
    viewer.window.resize(1500, 900)
    viewer.open_sample(PLUGIN, "coffee")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    widget.image.value = viewer.layers["coffee"]
    widget.max_iter.value = 200
    widget.n_superpixels.value = 2000
    _process_events(1.0)

    widget.run()
    start = time.perf_counter()
    while widget.is_running and widget.updates_shown < args.updates:
        run = widget._life.run
        if run is not None and run.last is not None and run.last.n_classes <= args.labels:
            break
        if time.perf_counter() - start > args.timeout:
            raise TimeoutError(f"fewer than {args.updates} updates in {args.timeout} s")
        _process_events(0.1)
    _process_events(0.5)  # draw the latest update
    viewer.layers.selection.active = viewer.layers["coffee labels"]
    _process_events(0.5)
    viewer.screenshot(str(args.out), canvas_only=False)
    print(f"saved {args.out} at {widget.status.value!r}")

    widget.stop()
    while widget.is_running:
        _process_events(0.1)
    viewer.close()


if __name__ == "__main__":
    main()
