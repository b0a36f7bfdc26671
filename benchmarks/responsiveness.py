"""Fast first feedback and a responsive viewer: the widget against the console, in one run.

Run from the repository root (a real, visible viewer; on a headless machine use Xvfb)::

    xvfb-run -a python benchmarks/responsiveness.py            # torch imported before
    xvfb-run -a python benchmarks/responsiveness.py --cold     # the widget imports it
    xvfb-run -a python benchmarks/responsiveness.py --cold --run-at-once  # Run at once

On a 481x321 crop of the coffee sample (BSDS size) with a preset, it measures:

* the time from pressing Run to the first live labels drawn in the viewer;
* the widget's training speed (seconds per iteration, between its first and its last
  update) and its time from Run to the final labels, against the same training run by
  :func:`~napari_unsupervised_segmentation.segment` in this process (the console's and the
  CLI's path): their ratio is what a user feels, whatever the machine's load;
* how long the Qt event loop (drawing, mouse, keyboard) stalls, with a timer set to fire
  every 10 ms: any gap much longer than that is time the viewer could not react. The probe
  runs on the idle viewer first (baseline), then while the widget trains.

Timings vary with the machine's load: compare the ratios, which come from one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
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


def probe_event_loop(
    seconds: float, interval_ms: int = 10, until: Callable[[], bool] | None = None
) -> Gaps:
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


def measure_widget(widget: Any, max_seconds: float, interval_ms: int = 10) -> dict[str, Any]:
    """Run ``widget`` to its end (stopped after ``max_seconds``), probing the event loop.

    Records when each label update was drawn (s from Run) and its iteration. Gaps are split
    into three groups: within 0.5 s of pressing Run (napari creates its progress bar), within
    0.5 s of the first labels (napari creates the Labels layer), and the rest ("steady").
    """
    from qtpy.QtWidgets import QApplication

    shown: list[tuple[float, int]] = []  # (s from Run, iteration) of each label update drawn
    start = time.perf_counter()
    widget.run()
    run = widget._life.run

    def watch() -> bool:
        if run.last is not None and run.updates_shown > len(shown):
            shown.append((time.perf_counter() - start, run.last.iteration))
        return not widget.is_running

    gaps = probe_event_loop(max_seconds, interval_ms, until=watch)
    finished_s = time.perf_counter() - start
    if widget.is_running:
        widget.stop()
        while widget.is_running:
            QApplication.processEvents()
            time.sleep(0.01)
        finished_s = time.perf_counter() - start
    t_first = shown[0][0] if shown else float("inf")
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
    result["updates"] = shown
    result["first_update_s"] = t_first
    result["finished_s"] = finished_s
    for name, values in groups.items():
        result[f"{name}_max_ms"] = max(values) if values else float("nan")
    steady = Gaps(groups["steady"], [0.0] * len(groups["steady"])).summary()
    result["steady_median_ms"] = steady["median_ms"]
    result["steady_p99_ms"] = steady["p99_ms"]
    return result


def seconds_per_iteration(times: list[tuple[float, int]]) -> float:
    """Seconds per iteration between the first and the last ``(seconds, iteration)`` pair."""
    (t0, i0), (t1, i1) = times[0], times[-1]
    return (t1 - t0) / (i1 - i0) if i1 > i0 else float("nan")


def measure_console(image: np.ndarray, params: Any) -> dict[str, Any]:
    """The same training through :func:`iter_segment` in this thread, as ``segment`` runs it."""
    from napari_unsupervised_segmentation.core import iter_segment

    start = time.perf_counter()
    steps: list[tuple[float, int]] = []
    last = None
    for last in iter_segment(image, params, channel_axis=-1):
        steps.append((time.perf_counter() - start, last.iteration))
    assert last is not None
    last.labels  # noqa: B018  (made here, as segment() makes them)
    return {"steps": steps, "finished_s": time.perf_counter() - start}


def load_average() -> str:
    """The 1-minute load average and the CPU count, for the record."""
    try:
        return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    except OSError:
        return f"{os.cpu_count()} CPUs"


def cpu_model() -> str:
    """The CPU's model name (Linux), else what ``platform`` says."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> None:
    """Open a viewer with the coffee crop, dock the widget, probe idle, then train twice."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default", help="settings preset")
    parser.add_argument("--max-iter", type=int, default=None, help="iterations (preset's)")
    parser.add_argument("--seconds", type=float, default=600.0, help="longest widget run")
    parser.add_argument("--baseline", type=float, default=3.0, help="idle time probed first")
    parser.add_argument("--interval-ms", type=int, default=10, help="probe timer interval")
    parser.add_argument(
        "--cold", action="store_true", help="do not import torch before the widget opens"
    )
    parser.add_argument(
        "--run-at-once",
        action="store_true",
        help="press Run as soon as the widget opens (no idle baseline): with --cold, the "
        "engine's import, which the widget starts in the background, is still under way",
    )
    args = parser.parse_args(argv)

    if not args.cold:
        import torch  # noqa: F401  (before Qt, as napari recommends on some platforms)
    import napari

    from napari_unsupervised_segmentation import PRESETS
    from napari_unsupervised_segmentation._napari.sample_data import load_sample

    params = PRESETS[args.preset]
    if args.max_iter is not None:
        params = params.replace(max_iter=args.max_iter)
    image, _ = load_sample("coffee")
    image = np.ascontiguousarray(image[:321, :481])  # BSDS size
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 900)
    viewer.add_image(image, name="coffee", rgb=True)
    _, widget = viewer.window.add_plugin_dock_widget(
        "napari-unsupervised-segmentation", "Segment image"
    )
    widget.params = params
    if not args.run_at_once:
        probe_event_loop(1.0, args.interval_ms)  # let the window settle
    torch_before_run = "torch" in sys.modules

    load_before = load_average()
    idle = probe_event_loop(0.0 if args.run_at_once else args.baseline, args.interval_ms).summary()
    busy = measure_widget(widget, args.seconds, args.interval_ms)
    viewer.close()
    console = measure_console(image, params)
    load_after = load_average()

    widget_spi = seconds_per_iteration(busy["updates"][:-1])  # the last: final labels
    console_spi = seconds_per_iteration(console["steps"])
    iterations = busy["updates"][-1][1] if busy["updates"] else 0
    print(f"machine: {cpu_model()}; {load_before} before, {load_after} after")
    print(
        f"image: 321x481 RGB, preset {args.preset!r}, {params.max_iter} iterations at most;"
        f" torch {'already imported' if torch_before_run else 'still being imported'} at Run"
    )
    print(f"first live labels: {busy['first_update_s']:.2f} s after Run")
    print(
        f"widget:  {iterations} iterations, {len(busy['updates'])} label updates,"
        f" {widget_spi:.3f} s/iteration, final labels {busy['finished_s']:.1f} s after Run"
    )
    print(
        f"console: {console['steps'][-1][1]} iterations, {console_spi:.3f} s/iteration,"
        f" final labels {console['finished_s']:.1f} s after the call"
    )
    print(
        f"widget/console: {widget_spi / console_spi:.2f}x the seconds per iteration,"
        f" {busy['finished_s'] / console['finished_s']:.2f}x the time to the final labels"
    )
    print(
        f"event loop, idle viewer ({args.baseline:.0f} s): median gap {idle['median_ms']:.1f} ms,"
        f" max {idle['max_ms']:.1f} ms"
    )
    print(
        f"event loop while training: median gap {busy['median_ms']:.1f} ms,"
        f" max {busy['max_ms']:.1f} ms; at Run: max {busy['run_start_max_ms']:.1f} ms;"
        f" at the first labels (napari creates the layer): max {busy['first_update_max_ms']:.1f}"
        f" ms; steady: median {busy['steady_median_ms']:.1f} ms,"
        f" p99 {busy['steady_p99_ms']:.1f} ms, max {busy['steady_max_ms']:.1f} ms"
    )


if __name__ == "__main__":
    main()
