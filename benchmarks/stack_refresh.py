"""What one live update of an all-planes run costs the viewer, by the size of the stack.

Run from the repository root (a real, visible viewer; on a headless machine use Xvfb)::

    xvfb-run -a python benchmarks/stack_refresh.py --planes 50 200 [--ndisplay 3]

For a stack of N planes of 1024 x 1024 labels (N MB as uint8), it times on the main thread,
until Qt has processed the events, (a) one plane written into the labels layer in place
(``write_plane``, what the widget does on each update; it redraws at most a quarter of
the time when redrawing is slow, as in 3D display) and (b) every plane's labels shown
again as a whole (``show_labels`` with a snapshot of the stack, what the widget does when
the run moves to a new layer), and prints the medians and
their ratio. No training: the labels are random.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

SIDE = 1024
REPEATS = 7


def _timed(action: Callable[[int], None], first: int, process_events: Callable[[], None]) -> float:
    """The median seconds of ``action(k)`` for ``REPEATS`` planes from ``first``, each
    followed by Qt's pending events (the drawing)."""
    seconds = []
    for k in range(first, first + REPEATS):
        started = time.perf_counter()
        action(k)
        process_events()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def measure(n_planes: int, ndisplay: int = 2) -> tuple[float, float]:
    """Median seconds per update: (one plane in place, the whole stack) for ``n_planes``,
    the viewer in ``ndisplay`` (2 or 3) display."""
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_unsupervised_segmentation import SegmentationParams
    from napari_unsupervised_segmentation._napari.layers import (
        PlaneStack,
        layer_input,
        show_labels,
        write_plane,
    )

    viewer = napari.Viewer(show=True)
    viewer.dims.ndisplay = ndisplay
    try:
        image = viewer.add_image(np.zeros((n_planes, SIDE, SIDE), np.uint8), name="stack")
        inp = layer_input(image, viewer.dims, None, SegmentationParams(), all_planes=True)
        stack = PlaneStack(inp.plan, inp.plane_shape)
        rng = np.random.default_rng(0)
        planes = [rng.integers(1, 60, (SIDE, SIDE)).astype(np.uint8) for _ in range(4)]
        stack.put(0, planes[0])
        layer = show_labels(viewer, inp, stack.snapshot())
        QApplication.processEvents()

        def one_plane(k: int) -> None:
            number = k % n_planes
            stack.put(number, planes[k % 4])
            assert write_plane(layer, inp, number, planes[k % 4])

        def whole_stack(k: int) -> None:
            stack.put(k % n_planes, planes[k % 4])
            show_labels(viewer, inp, stack.snapshot(), layer, set_transforms=False)

        whole = _timed(whole_stack, 1, QApplication.processEvents)
        # the whole-stack writes left the layer's record current: in-place writes go on
        one = _timed(one_plane, 1 + REPEATS, QApplication.processEvents)
        return one, whole
    finally:
        viewer.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--planes", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--ndisplay", type=int, choices=(2, 3), default=2)
    args = parser.parse_args(argv)
    print(f"{platform.machine()}; {SIDE} x {SIDE} uint8 planes; {args.ndisplay}D display")
    print("| planes (MB) | one plane in place (s) | whole stack (s) | whole / one |")
    print("|---|---|---|---|")
    for n_planes in args.planes:
        one, whole = measure(n_planes, args.ndisplay)
        print(f"| {n_planes} | {one:.3f} | {whole:.3f} | {whole / one:.1f} |")


if __name__ == "__main__":
    main()
