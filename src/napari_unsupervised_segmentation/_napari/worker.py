"""The training thread behind the dock widget, and what stops it.

:func:`train_stack_updates` runs in a napari generator thread worker; it reads the labels of
a step only when an update is due (throttled, the last step always) and sends them as
:class:`Update` s, engine errors as a :class:`Failure`. :class:`_Run` holds one run's
snapshot and progress; the watchers stop the thread when the window or the widget closes.
torch is imported in the worker thread (or in the background once a widget opens), not
when napari starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from magicgui.widgets import ProgressBar
from qtpy.QtCore import QEvent, QObject, QTimer

from ..core.params import SegmentationParams
from .layers import DiskLabels, LayerInput, PlaneStack
from .objects import ClassObjects

__all__ = [
    "Failure",
    "Objects",
    "Trained",
    "Update",
    "apply_updates",
    "fit_stack_updates",
    "should_deliver",
    "status_text",
    "train_stack_updates",
    "train_updates",
    "update_interval_after",
    "user_message",
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


def should_deliver(now: float, last_sent: float | None, interval: float, final: bool) -> bool:
    """Whether a step's labels go to the viewer: first, final, else one per ``interval`` s."""
    return final or last_sent is None or now - last_sent >= interval


def update_interval_after(interval: float, labels_seconds: float) -> float:
    """The wait before the next live update, given how long the last labels took to make.

    At least ``interval``; longer when making the labels is slow, so that live updates never
    take more than 1/``LABELS_TIME_FACTOR`` of the training thread's time.
    """
    return max(interval, LABELS_TIME_FACTOR * labels_seconds)


class _Throttle:
    """When a live update is due (:func:`should_deliver`), and the wait after it, longer
    when its labels were slow to make (:func:`update_interval_after`)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.wait = interval
        self.last_sent: float | None = None
        self.started = 0.0

    def due(self, now: float, final: bool) -> bool:
        """Whether an update goes out at ``now`` (counted as sent if so: make its labels,
        then call :meth:`made`)."""
        if not should_deliver(now, self.last_sent, self.wait, final):
            return False
        self.last_sent, self.started = now, time.perf_counter()
        return True

    def made(self) -> None:
        """The labels of the update found due are made: set the wait before the next."""
        self.wait = update_interval_after(self.interval, time.perf_counter() - self.started)


def _until(stop: threading.Event, steps: Iterator[Any]) -> Iterator[Any]:
    """``steps`` until they end or ``stop`` is set (checked before each step is made)."""
    while not stop.is_set():
        try:
            step = next(steps)
        except StopIteration:
            return
        yield step


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
    #: With the final labels, when asked for: every level of detail to cut them again at
    #: (a :class:`~..core.labels.MergeHierarchy`; its level 0 are ``labels``).
    hierarchy: Any = None
    #: Work done so far, in the run's progress units (None: from plane and iteration).
    progress: int | None = None
    #: What ``plane`` and ``n_planes`` count: "plane", or "volume" (labels are 3D then).
    unit: str = "plane"
    #: The labels written into the run's labels on disk (:class:`~.layers.DiskLabels`),
    #: which ``labels`` does not carry then (None: no labels on disk).
    classes: frozenset[int] | None = None
    #: With the final labels of a plane trained on its own into objects, when asked for:
    #: the classes they are made of (:class:`~.objects.ClassObjects`), to make them again.
    objects: ClassObjects | None = None


@dataclass(frozen=True)
class Objects:
    """The objects of every plane (or volume) one model labelled, numbered across them all,
    sent once every plane is labelled (``label_by="object"``)."""

    #: Objects 1..n, background 0; the stack's axes first, as ``source.classes``.
    labels: np.ndarray
    #: The classes they are made of, to make them again with other background classes.
    source: ClassObjects


@dataclass(frozen=True)
class Trained:
    """The model a run trained, sent once training ends: what Apply model and Save model...
    use."""

    model: Any


@dataclass(frozen=True)
class Failure:
    """An error raised by the engine, as the message to show (and the error itself, for
    the console to raise)."""

    message: str
    error: BaseException | None = None


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
    hierarchy: bool = False,
    keep_model: bool = False,
    objects: bool = False,
) -> Iterator[Update | Failure | Trained]:
    """Run the engine on each of ``planes`` in turn, each trained on its own, and yield
    throttled :class:`Update` s that say which plane (runs in the worker thread); with
    ``keep_model`` and one plane, its model after the final update (:class:`Trained`).

    Updates come at most every ``interval`` seconds of ``clock``, and less often when the
    labels are slow to make (:func:`update_interval_after`, timed with ``perf_counter``).
    Setting ``stop`` ends training before the next iteration (a step that finishes meanwhile
    is still sent, as the final one, with its labels) and leaves the planes after it
    untrained. Setting ``abandon`` as well (the viewer is closing: nobody will see them)
    ends it without making any more labels, which can take long on a big image. Engine
    errors are yielded as a :class:`Failure` (naming the plane of a stack) instead of
    raised, so nothing reaches the Qt event loop, and end the run. ``done`` is set at the
    end. ``channel_axis`` and ``rgb`` say how each plane holds its channels, as in
    :func:`~napari_unsupervised_segmentation.iter_segment`. With ``hierarchy``, each
    plane's final update carries its labels' merge hierarchy, from which they are made; with
    ``objects`` (and ``label_by="object"``), the classes its objects are made of.
    """
    try:
        for number, plane in enumerate(planes):
            if stop.is_set():
                return
            updates = _updates(
                plane,
                channel_axis,
                params,
                stop,
                interval,
                clock,
                rgb,
                abandon,
                hierarchy,
                keep_model and len(planes) == 1,
                objects and params.label_by == "object",
            )
            for item in updates:
                if isinstance(item, Failure):
                    if len(planes) > 1:  # the planes before it are kept
                        item = Failure(f"plane {number + 1}/{len(planes)}: {item.message}")
                    yield item
                    return
                if isinstance(item, Trained):
                    yield item
                    continue
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
    hierarchy: bool = False,
    keep_model: bool = False,
    objects: bool = False,
) -> Iterator[Update | Failure | Trained]:
    """One plane's updates (see :func:`train_stack_updates`), and with ``keep_model`` the
    model of its last step (:class:`Trained`, after the final update); with ``objects``,
    the final update carries the classes of its objects.

    Live updates carry the step's preview labels, which never wait for post-processing's
    image-level maps (the network's classes until those are made, in the background); the
    final one carries its finished labels. Training keeps the thread's priority: a lower
    one let any other busy process on a small CPU starve it, and stall the viewer too
    whenever the starved thread held the GIL.
    """
    try:
        from ..core import iter_segment

        steps = iter_segment(image, params, channel_axis=channel_axis, rgb=rgb)
        try:
            throttle = _Throttle(interval)
            for step in _until(stop, steps):
                now = clock()
                final = bool(step.is_last) or stop.is_set()
                if abandon is not None and abandon.is_set():
                    return
                if throttle.due(now, final):
                    levels = step.hierarchy if final and hierarchy else None
                    if levels is not None:
                        labels = levels.labels(0.0)  # the same as step.labels
                    else:
                        labels = step.labels if final else step.preview_labels
                    source = None
                    if final and objects:  # the objects' classes, to make them again
                        source = ClassObjects.of(
                            step.prediction[0].cpu().numpy(),
                            params,
                            intensity=step.brightness,
                        )
                    throttle.made()
                    yield Update(
                        step.iteration,
                        step.n_classes,
                        step.loss,
                        labels,
                        final,
                        hierarchy=levels,
                        objects=source,
                    )
                if final:
                    if keep_model and not (abandon is not None and abandon.is_set()):
                        with contextlib.suppress(ValueError):  # a constant image: no network
                            yield Trained(step.model)
                    return
        finally:
            steps.close()
    except Exception as exc:  # shown as a notification by the widget
        yield Failure(user_message(exc))


def _fit_steps(inp: LayerInput, params: SegmentationParams) -> Iterator[Any]:
    """The training steps of one model for every plane, or volume, of ``inp`` (a single
    plane too large to train whole: on crops of it)."""
    from .. import core

    image, channel_axis = inp.arranged()
    return core.iter_fit(
        image, params, channel_axis=channel_axis, rgb=inp.rgb, **inp.engine_options
    )


def _preview_model(step: Any) -> Any:
    """The model to draw a live update with: the step's cheap preview where it has one."""
    preview = getattr(step, "preview_model", None)
    return preview if preview is not None else step.model


def _predict(model: Any, inp: LayerInput, number: int) -> np.ndarray:
    """The labels of ``inp``'s ``number``-th plane, or volume, by ``model`` (tile by tile,
    as ``predict`` goes, so that a large plane needs the memory of one tile)."""
    image, channel_axis = inp.unit_image(number)
    return model.predict(image, channel_axis=channel_axis, rgb=inp.rgb)


def _label_unit(
    model: Any, inp: LayerInput, number: int, disk: DiskLabels | None
) -> tuple[np.ndarray | None, frozenset[int] | None]:
    """The labels of ``inp``'s ``number``-th plane (volume) by ``model``, or, with
    ``disk``, None and the labels written tile by tile into it (never held whole)."""
    if disk is None:
        return _predict(model, inp, number), None
    image, channel_axis = inp.unit_image(number)
    out = disk.unit_out(number)
    model.predict(image, channel_axis=channel_axis, rgb=inp.rgb, out=out)
    return None, frozenset(out.classes)


def _plane_order(inp: LayerInput) -> list[int]:
    """Every plane's (or volume's) number, the one shown first (it is labelled first)."""
    shown = inp.shown_unit
    return [shown] + [n for n in range(inp.n_units) if n != shown]


def fit_stack_updates(
    inp: LayerInput,
    params: SegmentationParams,
    stop: threading.Event,
    done: threading.Event,
    interval: float = UPDATE_INTERVAL,
    clock: Callable[[], float] = time.monotonic,
    *,
    abandon: threading.Event | None = None,
    live: bool = True,
    disk: DiskLabels | None = None,
) -> Iterator[Update | Failure | Trained]:
    """Train one model for every plane, or volume, of ``inp`` (or, for a plane too large
    to train whole, on crops of it) and label each with it: the same classes everywhere.

    While training (with ``live``), throttled updates (as :func:`train_stack_updates`)
    carry the plane (or volume) shown labelled by the model so far; once training ends
    (``stop`` ends it early), the model (:class:`Trained`), then every plane's (volume's)
    labels, the one shown first. Labels are the network's classes (class ``k`` is label
    ``k + 1``), without post-processing; with ``label_by="object"`` (and no ``disk``), live
    labels are the objects of the plane (volume) shown, and the objects of every plane
    come at the end, numbered across the stack (:class:`Objects`, see :func:`_label_units`).
    Progress counts iterations, then planes (volumes). ``done`` is set at the end. With
    ``disk``, the labels are written into it, not sent.
    """
    try:
        yield from _fit_stack_updates(inp, params, stop, interval, clock, abandon, live, disk)
    except Exception as exc:  # shown as a notification by the widget
        yield Failure(user_message(exc), exc)
    finally:
        done.set()


def _fit_stack_updates(
    inp: LayerInput,
    params: SegmentationParams,
    stop: threading.Event,
    interval: float,
    clock: Callable[[], float],
    abandon: threading.Event | None,
    live: bool = True,
    disk: DiskLabels | None = None,
) -> Iterator[Update | Trained]:
    n_planes, shown, unit = inp.n_units, inp.shown_unit, inp.plan.unit
    objects = params.label_by == "object" and disk is None
    last: Any = None
    model: Any = None
    steps = _fit_steps(inp, params)
    try:
        throttle = _Throttle(interval)
        for step in _until(stop, steps):
            if abandon is not None and abandon.is_set():
                return
            last = step
            final = bool(step.is_last) or stop.is_set()
            if final:
                model = step.model
                break
            if live and throttle.due(clock(), False):
                preview = _preview_model(step)
                labels = _predict(preview, inp, shown)
                if objects:  # the unit's own objects
                    intensity = _unit_brightness(preview, inp, shown, params)
                    labels = _objects_of(labels, inp, params, intensity).labels()
                throttle.made()
                yield Update(
                    step.iteration,
                    step.n_classes,
                    step.loss,
                    labels,
                    False,
                    shown,
                    n_planes,
                    unit=unit,
                )
    finally:
        steps.close()
    if last is None or (abandon is not None and abandon.is_set()):
        return
    if model is None:  # stopped between two steps: the model of the last one
        model = last.model
    yield Trained(model)
    done = Update(last.iteration, last.n_classes, last.loss, None, True, unit=unit)
    yield from _label_units(model, inp, params, done, params.max_iter, abandon=abandon, disk=disk)


def _label_units(
    model: Any,
    inp: LayerInput,
    settings: SegmentationParams,
    done: Update,
    progress: int,
    *,
    stop: threading.Event | None = None,
    abandon: threading.Event | None = None,
    disk: DiskLabels | None = None,
) -> Iterator[Update | Objects]:
    """Label every plane (volume) of ``inp`` with ``model``, the one shown first: one final
    :class:`Update` each, as ``done`` with its plane, labels and ``progress`` + count.

    With ``label_by="object"`` in ``settings`` and no ``disk``, the updates carry no
    labels; once every unit is labelled, :class:`Objects` carries the objects of them all,
    numbered across the stack, their background chosen once for the stack.
    ``stop`` (or ``abandon``) leaves the units after the current one unlabelled (and, for
    objects, makes none)."""
    objects = settings.label_by == "object" and disk is None
    n_units = inp.n_units
    classes: np.ndarray | None = None
    intensity: np.ndarray | None = None
    for count, number in enumerate(_plane_order(inp), start=1):
        if (stop is not None and stop.is_set()) or (abandon is not None and abandon.is_set()):
            return
        labels, written = _label_unit(model, inp, number, disk)
        if objects and labels is not None:
            if classes is None:  # the stack's axes first, then the unit's
                classes = np.zeros((n_units, *labels.shape), dtype=labels.dtype)
            classes[number] = labels - 1  # the network's classes: label k + 1 is class k
            unit_intensity = _unit_brightness(model, inp, number, settings)
            if unit_intensity is not None:
                if intensity is None:
                    intensity = np.zeros(classes.shape, np.float32)
                intensity[number] = unit_intensity
            labels = None
        yield dataclasses.replace(
            done,
            labels=labels,
            plane=number,
            n_planes=n_units,
            progress=progress + count,
            classes=written,
        )
    if classes is not None:
        shape = _stack_shape(inp, classes)
        stack_intensity = None if intensity is None else intensity.reshape(shape)
        source = _objects_of(classes.reshape(shape), inp, settings, stack_intensity)
        yield Objects(source.labels(), source)


def _unit_brightness(
    model: Any, inp: LayerInput, number: int, settings: SegmentationParams
) -> np.ndarray | None:
    """The brightness of ``inp``'s ``number``-th plane (volume) as ``model`` scales it, for
    the objects' background rule (None when the rule does not need it)."""
    if settings.object_background != "intensity":
        return None
    image, channel_axis = inp.unit_image(number)
    return model.brightness(image, channel_axis=channel_axis, rgb=inp.rgb)


def _stack_shape(inp: LayerInput, classes: np.ndarray) -> tuple[int, ...]:
    """The shape of ``classes`` (one unit's after another) with the stack's axes first."""
    plan = inp.plan
    leading = plan.stack_shape[:-1] if plan.is_volume else plan.stack_shape
    return (*leading, *classes.shape[1:])


def _objects_of(
    classes: np.ndarray,
    inp: LayerInput,
    settings: SegmentationParams,
    intensity: np.ndarray | None = None,
) -> ClassObjects:
    """The objects of one model's ``classes`` of ``inp`` (a unit's, or its stack's with the
    stack's axes first): in 3D for volumes, with their voxel size."""
    volume = inp.plan.is_volume
    return ClassObjects.of(
        classes,
        settings,
        spatial_ndim=3 if volume else 2,
        spacing=inp.spacing if volume else None,
        intensity=intensity,
    )


def apply_updates(
    model: Any,
    inp: LayerInput,
    stop: threading.Event,
    done: threading.Event,
    *,
    abandon: threading.Event | None = None,
    disk: DiskLabels | None = None,
) -> Iterator[Update | Failure]:
    """Label every plane (or volume) of ``inp`` with ``model`` (no training), the one
    shown first: one final :class:`Update` per plane (volume; progress counts them).
    ``stop`` leaves the ones after the current one unlabelled; errors come as a
    :class:`Failure`. ``done`` is set at the end. With ``disk``, the labels are written
    into it, not sent. A model trained with ``label_by="object"`` gives objects, as
    :func:`fit_stack_updates` does (none when stopped before the last unit)."""
    try:
        template = Update(0, model.n_classes, 0.0, None, True, unit=inp.plan.unit)
        settings = model.settings
        yield from _label_units(
            model, inp, settings, template, 0, stop=stop, abandon=abandon, disk=disk
        )
    except Exception as exc:  # shown as a notification by the widget
        yield Failure(user_message(exc), exc)
    finally:
        done.set()


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
        text = f"{update.unit.capitalize()} {update.plane + 1}/{update.n_planes} · {text}"
    return f"{text}\n{note}" if note else text


@functools.cache
def _import_engine_in_background() -> None:
    """Import the engine (and torch, seconds on a small CPU) in a daemon thread once a widget
    opens, so that the first Run does not wait for it; napari itself starts without it."""

    def import_engine() -> None:
        with contextlib.suppress(Exception):  # an error shows when Run imports it again
            importlib.import_module("napari_unsupervised_segmentation.core.train")

    threading.Thread(target=import_engine, name="engine-import", daemon=True).start()


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
    disk: DiskLabels | None = None  # labels too large for memory: on disk
    next_refresh: float = 0.0  # perf_counter time before which a stack is not redrawn again
    unrefreshed: bool = False  # the stack's layer holds labels not drawn yet
    #: The number of labels in each plane's final labels (what the user gets), by plane.
    final_counts: dict[int, int] = dataclasses.field(default_factory=dict)
    #: "train" (each plane on its own), "model" (one model for all) or "apply" (no training).
    kind: str = "train"
    #: Labels seen in the planes a model labelled (its classes, as labels k + 1).
    classes: set[int] = dataclasses.field(default_factory=set)
    trained: bool = False  # a Trained model came
    #: The classes of the run's objects (label_by="object"), to make them again.
    objects: ClassObjects | None = None
    #: One model's objects of every plane (volume), in the layer's axis order.
    objects_labels: np.ndarray | None = None

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
