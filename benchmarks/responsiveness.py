"""Longest main-thread stall while the widget trains, measured with a QTimer probe.

Run from the repository root (a real, visible viewer; on a headless machine use Xvfb)::

    xvfb-run -a python benchmarks/responsiveness.py --seconds 20

A timer set to fire every 10 ms records when it actually fires. Any gap much longer than
10 ms is time the Qt event loop (drawing, mouse, keyboard) could not run. The probe first
runs on the idle viewer (baseline), then while the widget trains on a 481x321 crop of the
coffee sample with the paper's settings, and prints the median and largest gaps of both.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Gaps:
    """Timer gaps in milliseconds, with the time (s from start) each one ended."""

    gaps_ms: list[float] = field(default_factory=list)
    ends_s: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """Median, 99th percentile and maximum gap (ms), and the tick count."""
        if not self.gaps_ms:
            return {"ticks": 0, "median_ms": float("nan"), "p99_ms": float("nan"), "max_ms": 0.0}
        return {
            "ticks": len(self.gaps_ms),
            "median_ms": statistics.median(self.gaps_ms),
            "p99_ms": float(np.percentile(self.gaps_ms, 99)),
            "max_ms": max(self.gaps_ms),
        }


def probe_event_loop(seconds: float, interval_ms: int = 10, until: Any = None) -> Gaps:
    """Run the Qt event loop for ``seconds`` (or until ``until()`` is true) with a probe timer."""
    from qtpy.QtCore import QEventLoop, Qt, QTimer

    gaps = Gaps()
    start = last = time.perf_counter()
    loop = QEventLoop()

    def tick() -> None:
        nonlocal last
        now = time.perf_counter()
        gaps.gaps_ms.append(1000 * (now - last))
        gaps.ends_s.append(now - start)
        last = now
        if now - start >= seconds or (until is not None and until()):
            loop.quit()

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(interval_ms)
    timer.timeout.connect(tick)
    timer.start()
    loop.exec()
    timer.stop()
    return gaps


def measure(viewer: Any, widget: Any, seconds: float, interval_ms: int = 10) -> dict[str, Any]:
    """Probe while ``widget`` trains for ``seconds``; then stop it and wait for the thread.

    Besides the overall summary, gaps are split into three groups: within 0.5 s of pressing
    Run (napari creates its progress bar), within 0.5 s of the first labels (napari creates
    the Labels layer), and the rest ("steady": training with live updates).
    """
    from qtpy.QtWidgets import QApplication

    first_update: list[float] = []
    start = time.perf_counter()

    def first_update_seen() -> bool:
        if not first_update and widget.updates_shown > 0:
            first_update.append(time.perf_counter() - start)
        return not widget.is_running

    widget.run()
    gaps = probe_event_loop(seconds, interval_ms, until=first_update_seen)
    run = widget._life.run
    iterations = run.last.iteration if run is not None and run.last is not None else None
    widget.stop()
    while widget.is_running:
        QApplication.processEvents()
        time.sleep(0.01)
    t_first = first_update[0] if first_update else float("inf")
    groups: dict[str, list[float]] = {"run_start": [], "first_update": [], "steady": []}
    for gap, end in zip(gaps.gaps_ms, gaps.ends_s, strict=True):
        begin = end - gap / 1000
        if begin < 0.5:
            groups["run_start"].append(gap)
        elif begin < t_first + 0.5 and end > t_first - 0.5:
            groups["first_update"].append(gap)
        else:
            groups["steady"].append(gap)
    result: dict[str, Any] = gaps.summary()
    result["iterations"] = iterations
    result["updates_shown"] = widget.updates_shown
    result["first_update_s"] = t_first
    for name, values in groups.items():
        result[f"{name}_max_ms"] = max(values) if values else float("nan")
    steady = Gaps(groups["steady"], [0.0] * len(groups["steady"])).summary()
    result["steady_median_ms"] = steady["median_ms"]
    result["steady_p99_ms"] = steady["p99_ms"]
    return result


def main(argv: list[str] | None = None) -> None:
    """Open a viewer with the coffee crop, dock the widget, probe idle then training."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="training time probed")
    parser.add_argument("--baseline", type=float, default=5.0, help="idle time probed first")
    parser.add_argument("--interval-ms", type=int, default=10, help="probe timer interval")
    parser.add_argument("--preset", default="paper", help="settings preset")
    args = parser.parse_args(argv)

    import napari
    import torch  # noqa: F401  (before Qt, as napari recommends on some platforms)

    from napari_unsupervised_segmentation import PRESETS
    from napari_unsupervised_segmentation._sample_data import load_sample

    image, _ = load_sample("coffee")
    image = image[:321, :481]  # BSDS size
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 900)
    viewer.add_image(image, name="coffee", rgb=True)
    _, widget = viewer.window.add_plugin_dock_widget(
        "napari-unsupervised-segmentation", "Segment image"
    )
    widget.params = PRESETS[args.preset]
    probe_event_loop(1.0, args.interval_ms)  # let the window settle

    idle = probe_event_loop(args.baseline, args.interval_ms).summary()
    busy = measure(viewer, widget, args.seconds, args.interval_ms)
    viewer.close()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"image: 321x481 RGB, preset {args.preset!r}, probe every {args.interval_ms} ms")
    print(
        f"idle viewer ({args.baseline:.0f} s): median gap {idle['median_ms']:.1f} ms,"
        f" max {idle['max_ms']:.1f} ms"
    )
    print(
        f"while training ({args.seconds:.0f} s, {busy['iterations']} iterations,"
        f" {busy['updates_shown']} label updates): median gap {busy['median_ms']:.1f} ms,"
        f" max {busy['max_ms']:.1f} ms"
    )
    print(
        f"  at Run (napari progress bar): max {busy['run_start_max_ms']:.1f} ms;"
        f" at the first labels ({busy['first_update_s']:.1f} s, napari creates the layer):"
        f" max {busy['first_update_max_ms']:.1f} ms"
    )
    print(
        f"  steady (training, live updates): median {busy['steady_median_ms']:.1f} ms,"
        f" p99 {busy['steady_p99_ms']:.1f} ms, max {busy['steady_max_ms']:.1f} ms"
    )


if __name__ == "__main__":
    main()
