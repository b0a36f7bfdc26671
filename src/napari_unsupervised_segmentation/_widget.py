"""The "Segment image" dock widget of Unsupervised Segmentation.

Training runs in a napari generator thread worker; the worker reads the labels of a step
only when an update is due (throttled, the last step always), so the main thread only
copies finished label images into the "<image name> labels" layer (for all planes of a
stack, the plane being trained, written in place). The image plane and the
settings are snapshotted when Run is pressed, so editing layers or the selection during a
run changes nothing. torch is imported in the worker thread, not when napari starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)
from psygnal import Signal
from qtpy.QtCore import QEvent, QObject, QTimer
from qtpy.QtWidgets import QApplication, QMainWindow, QSizePolicy

from ._console import (
    LayerInput,
    PlaneStack,
    full_resolution,
    layer_input,
    show_labels,
    write_plane,
)
from .core.params import BOUNDARIES, PRECISIONS, PRESETS, SegmentationParams
from .core.wording import counted, labels_per_plane

if TYPE_CHECKING:
    import napari
    from napari.layers import Labels

__all__ = [
    "SegmentationWidget",
    "should_deliver",
    "status_text",
    "train_stack_updates",
    "train_updates",
    "update_interval_after",
]

#: Seconds between two live label updates (at most 2 per second; the last is always shown):
#: drawing takes CPU time from training, all of it where OpenGL renders in software.
UPDATE_INTERVAL = 0.5
#: Live labels may take at most 1/LABELS_TIME_FACTOR of the training thread's time (making
#: them) and of the main thread's (redrawing a stack, in 3D display the whole of it): when
#: either is slow (large, busy images; big stacks in 3D), updates come less often.
LABELS_TIME_FACTOR = 10.0
#: Longest wait (s) for the training thread when the viewer or the widget closes; the thread
#: ends by itself after the current iteration anyway.
SHUTDOWN_WAIT = 2.0

#: The most filters the Channels box offers.
MAX_CHANNELS = 4096

_LABELS = {
    "max_iter": "Max iterations",
    "min_labels": "Min labels",
    "n_superpixels": "Superpixels",
    "seed": "Seed",
    "device": "Device",
    "n_channels": "Channels",
    "n_conv": "Conv blocks",
    "lr": "Learning rate",
    "momentum": "Momentum",
    "compactness": "Compactness",
    "superpixel_graph_scale": "Superpixel graph scale",
    "precision": "Precision",
    "connected_components": "Connected components",
    "continuity_weight": "Continuity weight",
    "graph_scale": "Graph scale",
    "merge_threshold": "Merge threshold",
    "boundary": "Merge by",
    "merge_interior_weight": "Interior weight",
    "merge_region_weight": "Region weight",
    "spectral_weight": "Spectral weight",
    "premerge_threshold": "Premerge threshold",
    "max_segments": "Max segments",
    "min_segment_size": "Min segment size",
    "min_segment_width": "Min segment width",
}
_BASIC = ("max_iter", "min_labels", "n_superpixels", "seed", "device")
#: Settings that only SLIC superpixels use: greyed out while graph-based superpixels are on.
_SLIC_ONLY = ("n_superpixels", "compactness")


# --- pure helpers (no Qt, no viewer) -------------------------------------------------


def should_deliver(now: float, last_sent: float | None, interval: float, final: bool) -> bool:
    """Whether a step's labels go to the viewer: first, final, else one per ``interval`` s."""
    return final or last_sent is None or now - last_sent >= interval


def update_interval_after(interval: float, labels_seconds: float) -> float:
    """The wait before the next live update, given how long the last labels took to make.

    At least ``interval``; longer when making the labels is slow, so that live updates never
    take more than 1/``LABELS_TIME_FACTOR`` of the training thread's time.
    """
    return max(interval, LABELS_TIME_FACTOR * labels_seconds)


@dataclass(frozen=True)
class Update:
    """What the worker sends to the main thread for one step (labels only when due)."""

    iteration: int
    n_classes: int
    loss: float
    labels: np.ndarray | None
    is_last: bool  # the last step of its plane
    plane: int = 0  # which plane of a stack (0 for a single plane)
    n_planes: int = 1


@dataclass(frozen=True)
class Failure:
    """An error raised by the engine, as the message to show."""

    message: str


def train_updates(image: np.ndarray, *args: Any, **kwargs: Any) -> Iterator[Update | Failure]:
    """:func:`train_stack_updates` of one image (the same arguments after it)."""
    yield from train_stack_updates([image], *args, **kwargs)


def train_stack_updates(
    planes: Sequence[np.ndarray],
    channel_axis: int | None,
    params: SegmentationParams,
    stop: threading.Event,
    done: threading.Event,
    interval: float = UPDATE_INTERVAL,
    clock: Callable[[], float] = time.monotonic,
    *,
    rgb: bool | None = None,
    abandon: threading.Event | None = None,
) -> Iterator[Update | Failure]:
    """Run the engine on each of ``planes`` in turn, each trained on its own, and yield
    throttled :class:`Update` s that say which plane (runs in the worker thread).

    Updates come at most every ``interval`` seconds of ``clock``, and less often when the
    labels are slow to make (:func:`update_interval_after`, timed with ``perf_counter``).
    Setting ``stop`` ends training before the next iteration (a step that finishes meanwhile
    is still sent, as the final one, with its labels) and leaves the planes after it
    untrained. Setting ``abandon`` as well (the viewer is closing: nobody will see them)
    ends it without making any more labels, which can take long on a big image. Engine
    errors are yielded as a :class:`Failure` (naming the plane of a stack) instead of
    raised, so nothing reaches the Qt event loop, and end the run. ``done`` is set at the
    end. ``channel_axis`` and ``rgb`` say how each plane holds its channels, as in
    :func:`~napari_unsupervised_segmentation.iter_segment`.
    """
    try:
        for number, plane in enumerate(planes):
            if stop.is_set():
                return
            updates = _updates(plane, channel_axis, params, stop, interval, clock, rgb, abandon)
            for item in updates:
                if isinstance(item, Failure):
                    if len(planes) > 1:  # the planes before it are kept
                        item = Failure(f"plane {number + 1}/{len(planes)}: {item.message}")
                    yield item
                    return
                yield dataclasses.replace(item, plane=number, n_planes=len(planes))
    finally:
        done.set()


def _updates(
    image: np.ndarray,
    channel_axis: int | None,
    params: SegmentationParams,
    stop: threading.Event,
    interval: float,
    clock: Callable[[], float],
    rgb: bool | None,
    abandon: threading.Event | None,
) -> Iterator[Update | Failure]:
    """One plane's updates (see :func:`train_stack_updates`).

    Live updates carry the step's preview labels, which never wait for post-processing's
    image-level maps (the network's classes until those are made, in the background); the
    final one carries its finished labels. Training keeps the thread's priority: a lower
    one let any other busy process on a small CPU starve it, and stall the viewer too
    whenever the starved thread held the GIL.
    """
    try:
        from .core import iter_segment

        steps = iter_segment(image, params, channel_axis=channel_axis, rgb=rgb)
        try:
            last_sent: float | None = None
            wait = interval
            while not stop.is_set():
                try:
                    step = next(steps)
                except StopIteration:
                    return
                now = clock()
                final = bool(step.is_last) or stop.is_set()
                if abandon is not None and abandon.is_set():
                    return
                if should_deliver(now, last_sent, wait, final):
                    last_sent = now
                    started = time.perf_counter()
                    labels = step.labels if final else step.preview_labels
                    wait = update_interval_after(interval, time.perf_counter() - started)
                    yield Update(step.iteration, step.n_classes, step.loss, labels, final)
                if final:
                    return
        finally:
            steps.close()
    except Exception as exc:  # shown as a notification by the widget
        yield Failure(user_message(exc))


def user_message(exc: BaseException) -> str:
    """The text a notification shows for ``exc``: the engine's ValueError and MemoryError
    messages are written for the user; anything else also says what kind of error it is."""
    if isinstance(exc, ValueError | MemoryError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def status_text(update: Update, max_iter: int, note: str = "") -> str:
    """The status line while training: iteration, the network's classes, loss (and the plane).

    It counts classes, what the stopping rule watches: the labels made from them at the end
    can be more (a class in several places) or fewer (weak boundaries joined).
    """
    text = (
        f"Iteration {update.iteration}/{max_iter} · {update.n_classes} classes while training"
        f" · loss {update.loss:.4f}"
    )
    if update.n_planes > 1:
        text = f"Plane {update.plane + 1}/{update.n_planes} · {text}"
    return f"{text}\n{note}" if note else text


def device_choices() -> list[str]:
    """Devices to offer; CUDA/MPS details only when torch is already imported (no slow import)."""
    choices = ["auto", "cpu", "cuda", "mps"]
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            n_cuda = torch.cuda.device_count()
        except Exception:
            n_cuda = 0
        choices += [f"cuda:{i}" for i in range(n_cuda) if n_cuda > 1]
    return choices


@functools.cache
def _warm_up_labels() -> None:
    """Build one throw-away Labels layer, once per process.

    napari imports much of its Labels machinery lazily; doing it when the widget opens
    keeps that cost out of the first live update, in the middle of training.
    """
    from napari.layers import Labels

    Labels(np.zeros((2, 2), dtype=np.uint8))


@functools.cache
def _import_engine_in_background() -> None:
    """Import the engine (and torch, seconds on a small CPU) in a daemon thread once a widget
    opens, so that the first Run does not wait for it; napari itself starts without it."""

    def import_engine() -> None:
        with contextlib.suppress(Exception):  # an error shows when Run imports it again
            importlib.import_module(f"{__package__}.core.train")

    threading.Thread(target=import_engine, name="engine-import", daemon=True).start()


def params_from_values(values: dict[str, Any]) -> SegmentationParams:
    """Settings from the controls' values (seed -1 means a fresh random start: None)."""
    values = dict(values)
    if values.get("seed") is not None and values["seed"] < 0:
        values["seed"] = None
    return SegmentationParams(**values)


# --- run bookkeeping ------------------------------------------------------------------


@dataclass(eq=False)
class _Run:
    """One training run: its snapshot, controls and the progress bar."""

    inp: LayerInput
    params: SegmentationParams
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    abandon: threading.Event = dataclasses.field(default_factory=threading.Event)
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    worker: Any = None
    progress: Any = None
    labels_layer: Any = None
    updates_shown: int = 0
    last: Update | None = None
    failure: str | None = None
    pending: deque[Update | Failure] = dataclasses.field(default_factory=deque)
    worker_finished: bool = False
    draining: bool = False
    stack: PlaneStack | None = None  # all planes of a stack: their labels so far
    next_refresh: float = 0.0  # perf_counter time before which a stack is not redrawn again
    unrefreshed: bool = False  # the stack's layer holds labels not drawn yet
    #: The number of labels in each plane's final labels (what the user gets), by plane.
    final_counts: dict[int, int] = dataclasses.field(default_factory=dict)

    def close_progress(self) -> None:
        """Close the progress bar once (every end path calls this)."""
        pbar, self.progress = self.progress, None
        if pbar is not None:
            with contextlib.suppress(Exception):
                pbar.close()


class _DockProgress:
    """A run's progress in the dock's own bar, over ``total`` iterations.

    Not napari's activity-panel bar: that one animates a "loading" image all the while,
    which keeps the GUI thread busy and, on a small CPU, slows training down.
    """

    STEPS = 1000  # the bar's resolution (a QProgressBar holds 32-bit values only)

    def __init__(self, bar: ProgressBar, total: int) -> None:
        self.bar, self.total, self.n = bar, total, 0
        bar.max = self.STEPS
        bar.value = 0
        bar.visible = True

    def update(self, count: int) -> None:
        """``count`` more iterations done."""
        self.n += count
        self.bar.value = round(self.STEPS * min(self.n, self.total) / max(self.total, 1))

    def close(self) -> None:
        self.bar.visible = False


@dataclass(eq=False)
class _Lifeline:
    """What the close handlers need, without a reference to the widget (so it can be freed)."""

    run: _Run | None = None
    closed: bool = False


def _shutdown(life: _Lifeline, *_: Any) -> None:
    """The viewer or the widget is closing: stop training and wait briefly for the thread."""
    if life.closed:
        return
    life.closed = True
    run, life.run = life.run, None
    if run is not None:
        run.abandon.set()  # no more labels: nobody will see them
        run.stop.set()
        run.close_progress()
        run.done.wait(SHUTDOWN_WAIT)


class _CallbackFilter(QObject):
    """An event filter that calls ``callback`` on the events its subclass picks."""

    def __init__(self, callback: Callable[[], None], parent: QObject) -> None:
        super().__init__(parent)
        self._callback = callback


class _CloseWatcher(_CallbackFilter):
    """Calls ``callback`` when the window it filters closes.

    A programmatic close (``viewer.close()``) is always accepted: act at once. A close by the
    user may still be cancelled in napari's confirmation dialog: check once the event has
    been handled whether the window really went away.
    """

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt name)
        if event.type() == QEvent.Type.Close:
            with contextlib.suppress(Exception):
                if event.spontaneous():
                    check = partial(_call_if_hidden, weakref.ref(obj), self._callback)
                    QTimer.singleShot(0, check)
                else:
                    self._callback()
        return False


def _call_if_hidden(window_ref: Callable[[], Any], callback: Callable[[], None]) -> None:
    """Call ``callback`` unless the window is still shown (its close was cancelled)."""
    window = window_ref()
    try:
        shown = window is not None and window.isVisible()
    except RuntimeError:  # already deleted
        shown = False
    if not shown:
        callback()


def _hide_row_label(widget: Any) -> None:
    """Hide the label that a labelled Container gives ``widget`` (its row's first widget),
    so that a section of controls has no stray caption of its own."""
    row = widget.native.parentWidget()
    layout = row.layout() if row is not None else None
    if layout is not None and layout.count() > 1:
        caption = layout.itemAt(0).widget()
        if caption is not None and caption is not widget.native:
            caption.hide()


class _UndockWatcher(_CallbackFilter):
    """Calls ``callback`` when the watched widget is taken out of its parent (napari's dock
    close button removes the dock and leaves the widget without a parent, undeleted)."""

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt name)
        if event.type() == QEvent.Type.ParentChange:
            with contextlib.suppress(RuntimeError):
                if obj.parent() is None:
                    self._callback()
        return False


def _weak_slot(method: Callable[..., Any], *args: Any) -> Callable[..., None]:
    """A slot calling the bound ``method`` without keeping its object alive."""
    ref = weakref.WeakMethod(method)

    def slot(*more: Any) -> None:
        bound = ref()
        if bound is not None:
            bound(*args, *more)

    return slot


# --- the widget -----------------------------------------------------------------------


class SegmentationWidget(Container):
    """Unsupervised segmentation (Kanezaki 2018) of an image layer, watched live.

    Scripting: choose the layer with ``widget.image.value = layer``, set ``widget.params``
    (or single controls such as ``widget.max_iter.value``), then ``widget.run()``;
    ``widget.stop()`` ends the run keeping the labels; ``widget.finished`` is emitted at the end.
    """

    #: Emitted on the main thread when a run has ended (done, stopped or failed).
    finished = Signal()

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self._life = _Lifeline()
        #: Least seconds between live label updates (longer when labels are slow to make;
        #: the final labels are always shown).
        self.update_interval = UPDATE_INTERVAL
        self._labels_ref: Callable[[], Labels | None] = lambda: None
        self._planes_offered = False  # the Planes control is shown for the chosen layer
        #: How many label updates the latest run showed.
        self.updates_shown = 0

        self.image = ComboBox(name="image", label="Image", choices=self._image_choices)
        self.channel_axis = ComboBox(
            name="channel_axis",
            label="Channel axis",
            choices=self._channel_choices,
            tooltip="For nD grayscale layers: an axis that holds channels (segmented together).",
        )
        self.planes = ComboBox(
            name="planes",
            label="Planes",
            choices=[("shown plane", False), ("all planes", True)],
            value=False,
            tooltip="For nD layers: the plane shown, or every plane parallel to it (each "
            "trained on its own, one after the other, into one labels layer).",
        )
        self.preset = ComboBox(
            name="preset",
            label="Preset",
            choices=list(PRESETS),
            value="default",
            tooltip="Fill every setting from a named preset ('paper': as published).",
        )
        self._controls = _make_controls()
        self.advanced_toggle = CheckBox(
            name="advanced_toggle", text="Advanced settings", value=False
        )
        self.advanced = Container(
            name="advanced",
            widgets=[w for n, w in self._controls.items() if n not in _BASIC],
            visible=False,
        )
        self.run_button = PushButton(name="run_button", text="Run")
        self.progress_bar = ProgressBar(name="progress_bar", label="Progress", visible=False)
        self.status = Label(
            name="status", label="Status", value="Choose an image layer and press Run."
        )
        self.extend(
            [
                self.image,
                self.channel_axis,
                self.planes,
                self.preset,
                *(self._controls[n] for n in _BASIC),
                self.advanced_toggle,
                self.advanced,
                self.run_button,
                self.progress_bar,
                self.status,
            ]
        )
        self.status.native.setWordWrap(True)
        # The status never widens the dock (and so never squeezes the canvas): it wraps.
        self.status.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        _hide_row_label(self.advanced)

        self.image.changed.connect(self._on_image_changed)
        self.channel_axis.changed.connect(self._on_channel_axis_changed)
        self.preset.changed.connect(self._on_preset)
        self.advanced_toggle.changed.connect(self._on_advanced_toggled)
        self.run_button.changed.connect(self._on_button)
        self._controls["superpixel_graph_scale"].changed.connect(self._on_superpixel_kind)
        self._on_superpixel_kind()

        active = viewer.layers.selection.active
        if active is not None and active in self.image.choices:
            self.image.value = active
        self._on_image_changed()
        self._watch_close()
        _warm_up_labels()
        _import_engine_in_background()

    # controls ------------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        """Settings controls by parameter name, e.g. ``widget.max_iter`` or ``widget.lr``."""
        controls = self.__dict__.get("_controls")
        if controls is not None and name in controls:
            return controls[name]
        return super().__getattr__(name)

    @property
    def params(self) -> SegmentationParams:
        """The settings the controls show (raises ValueError when out of range)."""
        return params_from_values({name: w.value for name, w in self._controls.items()})

    @params.setter
    def params(self, params: SegmentationParams) -> None:
        """Show ``params`` in the controls; ValueError, and no control changed, for a value
        outside what a control offers (e.g. ``lr`` below 0.001)."""
        values = {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}
        if values["seed"] is None:
            values["seed"] = -1
        for name, value in values.items():
            box = self._controls[name]
            if isinstance(box, SpinBox | FloatSpinBox) and not box.min <= value <= box.max:
                raise ValueError(f"{name}={value} is outside the widget's {box.min} to {box.max}")
        for name, value in values.items():
            self._controls[name].value = value

    @property
    def labels_layer(self) -> Labels | None:
        """The Labels layer of the latest run (held weakly: the viewer owns its layers)."""
        return self._labels_ref()

    @property
    def is_running(self) -> bool:
        """Whether a training run is going on."""
        return self._life.run is not None

    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Image

        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Image)]

    def _channel_choices(self, _widget: Any = None) -> list[tuple[str, int | None]]:
        choices: list[tuple[str, int | None]] = [("none", None)]
        layer = self.image.value if hasattr(self, "image") else None
        if layer is not None and not layer.rgb and layer.ndim >= 3:
            shape = full_resolution(layer).shape
            for axis, (size, name) in enumerate(zip(shape, _axis_names(layer), strict=True)):
                label = f"{name}, size {size}" if name else f"size {size}"
                choices.append((f"axis {axis} ({label})", axis))
        return choices

    def _on_image_changed(self, *_: Any) -> None:
        # emptied first: magicgui keeps items that did not change in place and appends the
        # new ones, which would list another layer's axes out of order
        self.channel_axis.native.clear()
        self.channel_axis.reset_choices()
        layer = self.image.value
        may_have_channels = bool(layer is not None and not layer.rgb and layer.ndim >= 3)
        self.channel_axis.visible = may_have_channels
        if may_have_channels:  # an axis the layer calls "c" or "channel" is chosen
            named = [i for i, n in enumerate(_axis_names(layer)) if n in _CHANNEL_NAMES]
            if len(named) == 1:
                self.channel_axis.value = named[0]
        self._on_channel_axis_changed()

    def _on_channel_axis_changed(self, *_: Any) -> None:
        """Offer all planes only when the layer has planes besides the one shown."""
        layer = self.image.value
        if layer is None:
            self.planes.visible = self._planes_offered = False
            return
        shape = full_resolution(layer).shape
        channel = self.channel_axis.value
        sizes = [size for axis, size in enumerate(shape[: layer.ndim]) if axis != channel]
        self._planes_offered = sum(size > 1 for size in sizes) >= 3  # planes besides one
        self.planes.visible = self._planes_offered

    def _on_preset(self, name: str) -> None:
        """Fill every setting from the preset but the hardware ones (device, precision)."""
        if name in PRESETS:  # the controls' own values: the other settings may not fit together
            hardware = {key: self._controls[key].value for key in ("device", "precision")}
            self.params = PRESETS[name].replace(**hardware)

    def _on_superpixel_kind(self, *_: Any) -> None:
        slic = not self._controls["superpixel_graph_scale"].value
        for name in _SLIC_ONLY:
            self._controls[name].enabled = slic

    def _on_advanced_toggled(self, shown: bool) -> None:
        self.advanced.visible = bool(shown)

    def _on_button(self, *_: Any) -> None:
        if self.is_running:
            self.stop()
        else:
            self.run()

    def _watch_close(self) -> None:
        """Stop training when this widget is destroyed or napari quits (see also
        :meth:`_watch_window`)."""
        self._shutdown_callback = partial(_shutdown, self._life)
        self._watched_window: Callable[[], Any] = lambda: None  # a weak reference
        self.native.destroyed.connect(self._shutdown_callback)
        undocked = _weak_slot(self._on_undocked)
        self.native.installEventFilter(_UndockWatcher(undocked, self.native))
        app = QApplication.instance()
        if app is not None:  # quitting napari: do not leave a thread that delays the exit
            app.aboutToQuit.connect(self._shutdown_callback)

    def _on_undocked(self) -> None:
        """The widget was closed out of its dock: stop training without making more labels
        and leave the labels layer as last drawn (a widget docked again can run again)."""
        run = self._life.run
        if run is None:
            return
        run.abandon.set()
        run.stop.set()
        run.close_progress()
        self._life.run = None  # the worker's queued updates are no longer shown
        self.run_button.text = "Run"
        self.run_button.enabled = True
        self.status.value = "Stopped: the widget was closed."

    def _watch_window(self) -> None:
        """Stop training when the main window holding this widget gets a Close event.

        The window is found through the Qt parents (a floating dock keeps the main window
        as parent), so no private napari attribute is needed.
        """
        window = self.native.parentWidget()
        while window is not None and not isinstance(window, QMainWindow):
            window = window.parentWidget()
        if window is None or window is self._watched_window():
            return
        window.installEventFilter(_CloseWatcher(self._shutdown_callback, window))
        self._watched_window = weakref.ref(window)

    # running -------------------------------------------------------------------------

    def run(self) -> None:
        """Start training on the chosen image layer (ignored, with a message, while running)."""
        from napari.utils.notifications import show_error, show_info

        if self.is_running:
            show_info("Unsupervised Segmentation is already running; press Stop first.")
            return
        if self._life.closed:
            return
        layer = self.image.value
        if layer is None:
            show_error("Unsupervised Segmentation: add or choose an image layer first.")
            return
        try:
            params = self.params
            inp = layer_input(
                layer,
                self._viewer.dims,
                self.channel_axis.value,
                params,
                all_planes=self.planes.value and self._planes_offered,  # not when hidden
            )
        except Exception as exc:  # e.g. a layer that cannot be segmented: tell, never raise
            message = user_message(exc)
            show_error(message)
            self.status.value = f"Failed: {message}"
            return
        self._start(inp, params)

    def stop(self) -> None:
        """Stop after the current iteration and show its labels."""
        run = self._life.run
        if run is None:
            return
        run.stop.set()
        self.run_button.text = "Stopping…"
        self.run_button.enabled = False

    def _start(self, inp: LayerInput, params: SegmentationParams) -> None:
        from napari.qt.threading import GeneratorWorker

        self._watch_window()
        run = _Run(inp=inp, params=params)
        if inp.plan.stack_axes:
            run.stack = PlaneStack(inp.plan, inp.plane_shape)
        total = params.max_iter * inp.n_planes
        run.progress = _DockProgress(self.progress_bar, total)
        run.worker = GeneratorWorker(
            train_stack_updates,
            [inp.plane_image(index) for index in inp.plan.stack_indices()],
            inp.channel_axis,
            params,
            run.stop,
            run.done,
            self.update_interval,
            rgb=inp.rgb,
            abandon=run.abandon,
        )
        run.worker.yielded.connect(_weak_slot(self._on_yielded, run))
        run.worker.finished.connect(_weak_slot(self._on_finished, run))
        self._life.run = run
        self._labels_ref = lambda: None
        self.updates_shown = 0
        self.run_button.text = "Stop"
        self.run_button.enabled = True
        note = f"\n{inp.note}" if inp.note else ""
        self.status.value = f"Preparing {inp.layer_name} (superpixels, model)…{note}"
        run.worker.start()

    def _on_yielded(self, run: _Run, item: Update | Failure) -> None:
        """Main thread: queue one update from the worker and show what is due."""
        run.pending.append(item)
        self._drain(run)

    def _on_finished(self, run: _Run) -> None:
        """Main thread: the worker ended (done, stopped or failed)."""
        run.worker_finished = True
        self._drain(run)

    def _drain(self, run: _Run) -> None:
        """Show queued updates in order, then end the run once the worker has finished.

        napari may process Qt events while a layer is added or updated, so this can be
        re-entered: a nested call only queues, and the outer loop keeps the order (so an
        older label image never replaces a newer one). It never raises into Qt's loop.
        """
        if run.draining:
            return
        run.draining = True
        try:
            while run.pending:
                item = run.pending.popleft()
                if self._life.closed or run is not self._life.run:
                    continue
                if isinstance(item, Failure):
                    self._show_failure(run, item.message)
                else:
                    # Labels that a queued newer update of their plane replaces are skipped.
                    superseded = any(
                        isinstance(later, Update)
                        and later.labels is not None
                        and later.plane == item.plane
                        for later in run.pending
                    )
                    self._show_update(run, item, labels=not superseded)
            if run.worker_finished:
                self._end(run)
        finally:
            run.draining = False

    def _show_failure(self, run: _Run, message: str) -> None:
        from napari.utils.notifications import show_error

        run.failure = message
        run.stop.set()
        show_error(message)

    def _show_update(self, run: _Run, item: Update, labels: bool = True) -> None:
        """Progress bar, status line and (when carried) the labels of one step."""
        try:
            run.last = item
            if run.progress is not None:
                done = item.plane * run.params.max_iter + item.iteration
                run.progress.update(done - run.progress.n)
            self.status.value = status_text(item, run.params.max_iter, run.inp.note)
            if item.is_last and item.labels is not None:
                run.final_counts[item.plane] = int(item.labels.max(initial=0))
            if labels and item.labels is not None:
                if run.stack is None:
                    self._put_labels(run, item.labels)
                else:
                    self._put_plane(run, item.plane, item.labels)
        except Exception as exc:  # e.g. the viewer is half closed
            self._show_failure(run, _not_shown(exc))

    def _put_labels(self, run: _Run, labels: np.ndarray) -> None:
        """Show ``labels`` (a plane's, or a stack's snapshot) in the run's Labels layer."""
        run.labels_layer = show_labels(
            self._viewer,
            run.inp,
            labels,
            run.labels_layer,
            set_transforms=run.updates_shown == 0,
        )
        run.updates_shown += 1
        self._labels_ref = weakref.ref(run.labels_layer)
        self.updates_shown = run.updates_shown

    def _put_plane(self, run: _Run, number: int, labels: np.ndarray) -> None:
        """Show one plane's labels of a stack: written into the run's layer in place (one
        plane's cost, whatever the stack's size), or, the first time and once that layer is
        no longer the run's, every plane's labels so far in a layer (a new one then)."""
        assert run.stack is not None
        run.stack.put(number, labels)
        layer = run.labels_layer
        if (
            layer is not None
            and layer in self._viewer.layers
            and write_plane(layer, run.inp, number, labels, refresh=False)
        ):
            run.updates_shown += 1
            self.updates_shown = run.updates_shown
            run.unrefreshed = True
            if time.perf_counter() >= run.next_refresh:
                self._refresh(run)
        else:
            if run.unrefreshed:  # draw what the old layer got in place
                self._refresh(run)
            self._put_labels(run, run.stack.snapshot())

    def _refresh(self, run: _Run) -> None:
        """Redraw a stack's labels layer written in place. A redraw slices the layer anew,
        which in 3D display means the whole stack: the next one waits LABELS_TIME_FACTOR
        times as long as this one took, so redrawing takes at most that share of the
        viewer's time."""
        started = time.perf_counter()
        run.unrefreshed = False
        run.labels_layer.refresh(extent=False)
        run.next_refresh = started + LABELS_TIME_FACTOR * (time.perf_counter() - started)

    def _end(self, run: _Run) -> None:
        """Close the progress bar, draw a stack's labels not drawn yet, restore the controls
        (once per run)."""
        run.close_progress()
        if run is not self._life.run:
            return
        if run.unrefreshed and not self._life.closed:
            try:
                self._refresh(run)
            except Exception as exc:  # e.g. the viewer is half closed
                if run.failure is None:
                    self._show_failure(run, _not_shown(exc))
        self._life.run = None
        if self._life.closed:
            return
        try:
            self.run_button.text = "Run"
            self.run_button.enabled = True
            self.status.value = _final_status(run)
        except RuntimeError:  # the Qt widgets are being deleted
            return
        self.finished.emit()


def _not_shown(exc: BaseException) -> str:
    """The message for labels that could not be shown (e.g. the viewer is half closed)."""
    return f"Unsupervised Segmentation could not show the result: {exc}"


def _final_status(run: _Run) -> str:
    """The status line after a run: what the labels layer holds now."""
    last = run.last
    counts = run.final_counts
    if run.failure is not None:
        text = f"Failed: {run.failure}"
    elif last is None:
        text = "Stopped before the first iteration."
    elif last.n_planes > 1:
        done = (
            f"{len(counts)} of {last.n_planes} planes"
            if run.stop.is_set()
            else (f"all {last.n_planes} planes")
        )
        verb = "Stopped" if run.stop.is_set() else "Done"
        per_plane = labels_per_plane(list(counts.values()) or [0], per_plane=True)
        text = f"{verb}: {done} segmented, {per_plane}."
        if run.stop.is_set():
            text += " The planes after them stay 0 (unlabelled)."
    else:
        n_labels = counts.get(0, 0)
        verb = "Stopped at iteration" if run.stop.is_set() else "Done after"
        iterations = "" if run.stop.is_set() else " iterations"
        text = f"{verb} {last.iteration}{iterations}: {counted(n_labels, 'label')}."
    return f"{text}\n{run.inp.note}" if run.inp.note else text


#: Axis labels that say an axis holds channels.
_CHANNEL_NAMES = frozenset({"c", "ch", "channel", "channels"})


def _axis_names(layer: Any) -> list[str]:
    """The layer's axis labels, lower-cased, with napari's default numbers ("-3") as ""."""
    labels = [str(label) for label in getattr(layer, "axis_labels", None) or ()]
    if len(labels) != layer.ndim:
        return [""] * layer.ndim
    return ["" if label.lstrip("-").isdigit() else label.lower() for label in labels]


def _make_controls() -> dict[str, Any]:
    """One control per setting, with the ``default`` preset's value and its help as tooltip.

    Settings added to the engine later get a control from their default's type.
    """
    defaults = PRESETS["default"]
    big = 2**31 - 1
    specs: dict[str, tuple[type, dict[str, Any]]] = {
        "max_iter": (SpinBox, {"min": 1, "max": big}),
        # below the most filters; a rule of n_channels or more is refused when Run is pressed
        "min_labels": (SpinBox, {"min": 0, "max": MAX_CHANNELS - 1}),
        "n_superpixels": (SpinBox, {"min": 1, "max": big, "step": 100}),
        "seed": (SpinBox, {"min": -1, "max": big}),
        "device": (ComboBox, {"choices": lambda _w: device_choices()}),
        "n_channels": (SpinBox, {"min": 2, "max": MAX_CHANNELS}),
        "n_conv": (SpinBox, {"min": 1, "max": 64}),
        # min: the smallest value its three decimals show (a smaller one would read as 0)
        "lr": (FloatSpinBox, {"min": 1e-3, "max": 100.0, "step": 1e-3}),
        "momentum": (FloatSpinBox, {"min": 0.0, "max": 0.999, "step": 1e-3}),
        "compactness": (FloatSpinBox, {"min": 1e-3, "max": 1e6, "step": 1e-3}),
        "superpixel_graph_scale": (FloatSpinBox, {"min": 0.0, "max": 1e6, "step": 50.0}),
        "precision": (ComboBox, {"choices": list(PRECISIONS)}),
        "connected_components": (CheckBox, {}),
        "continuity_weight": (FloatSpinBox, {"min": 0.0, "max": 1e3, "step": 1e-3}),
        "graph_scale": (FloatSpinBox, {"min": 0.0, "max": 1e6, "step": 50.0}),
        # Steps of 0.005 (so three decimals): the default's threshold is 0.435.
        "merge_threshold": (FloatSpinBox, {"min": 0.0, "max": 1e3, "step": 0.005}),
        "boundary": (ComboBox, {"choices": list(BOUNDARIES)}),
        "merge_interior_weight": (FloatSpinBox, {"min": 0.0, "max": 1e3, "step": 0.05}),
        "merge_region_weight": (FloatSpinBox, {"min": 0.0, "max": 1e3, "step": 0.05}),
        "spectral_weight": (FloatSpinBox, {"min": 0.0, "max": 1e3, "step": 0.05}),
        "premerge_threshold": (FloatSpinBox, {"min": 0.0, "max": 1e3, "step": 0.005}),
        "max_segments": (SpinBox, {"min": 0, "max": big}),
        "min_segment_size": (SpinBox, {"min": 0, "max": big}),
        "min_segment_width": (SpinBox, {"min": 0, "max": 1000}),
    }
    controls: dict[str, Any] = {}
    for f in dataclasses.fields(defaults):
        value = getattr(defaults, f.name)
        cls, kwargs = specs.get(f.name) or _spec_for(value)
        tooltip = f.metadata.get("help", "")
        if f.name == "seed":
            value = -1 if value is None else value
            tooltip += " -1: a fresh random start every run."
        text = _LABELS.get(f.name, f.name.replace("_", " ").capitalize())
        label_kw = {"text": text} if cls is CheckBox else {"label": text}
        controls[f.name] = cls(name=f.name, value=value, tooltip=tooltip, **label_kw, **kwargs)
    return controls


def _spec_for(value: Any) -> tuple[type, dict[str, Any]]:
    """A control for a setting without a hand-made one, from its default's type."""
    if isinstance(value, bool):
        return CheckBox, {}
    if isinstance(value, int):
        return SpinBox, {"min": -(2**31), "max": 2**31 - 1}
    if isinstance(value, float):
        return FloatSpinBox, {"min": -1e9, "max": 1e9, "step": 1e-3}
    return LineEdit, {}
