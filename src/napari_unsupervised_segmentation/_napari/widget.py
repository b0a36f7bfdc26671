"""The "Segment image" dock widget of Unsupervised Segmentation (its UI).

Training runs in a napari generator thread worker (:mod:`.worker`); the main thread only
copies finished label images into the "<image name> labels" layer (for all planes of a
stack, the plane being trained, written in place). The image plane and the settings are
snapshotted when Run is pressed, so editing layers or the selection during a run changes
nothing. The settings controls are built in :mod:`.controls`.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
import weakref
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSlider,
    Label,
    ProgressBar,
    PushButton,
)
from psygnal import Signal
from qtpy.QtWidgets import QApplication, QMainWindow, QSizePolicy

from ..core.labels import smallest_unsigned_dtype  # numpy only
from ..core.params import PRESETS, SegmentationParams
from ..core.plan import AmbiguousChannels, guess_channel_axis, planes_choice
from ..core.wording import counted, labels_per_plane
from .controls import (
    BASIC,
    _make_controls,
    _make_sections,
    params_from_values,
    show_params,
    watch_options,
)
from .layers import (
    DiskLabels,
    LayerInput,
    PlaneStack,
    full_resolution,
    in_layer_order,
    layer_input,
    measurable,
    measure_labels,
    show_disk_labels,
    show_labels,
    stack_index,
    write_plane,
)
from .objects import ClassObjects
from .worker import (
    LABELS_TIME_FACTOR,
    UPDATE_INTERVAL,
    Failure,
    Objects,
    Trained,
    Update,
    _CloseWatcher,
    _DockProgress,
    _import_engine_in_background,
    _Lifeline,
    _Run,
    _shutdown,
    _UndockWatcher,
    _weak_slot,
    apply_updates,
    fit_stack_updates,
    status_text,
    train_stack_updates,
    user_message,
)

if TYPE_CHECKING:
    import napari
    from napari.layers import Labels

    from ..core.fitted import SegmentationModel
    from ..core.labels import MergeHierarchy

#: The Planes choice that trains one model for every plane (see ``core.plan.PLANES``).
ONE_MODEL = "all"
#: The Planes choice that segments volumes as 3D objects.
VOLUME = "volume"
#: The status line's word on labels that Measure objects cannot measure.
NOT_MEASURED = (
    "Not measured: the label values repeat from plane to plane (measured: one plane, one "
    "volume, or one model's objects)."
)
#: What the model file dialogs offer.
MODEL_FILTER = "Segmentation model (*.model);;All files (*)"

__all__ = ["SegmentationWidget"]


@functools.cache
def _warm_up_labels() -> None:
    """Build one throw-away Labels layer, once per process.

    napari imports much of its Labels machinery lazily; doing it when the widget opens
    keeps that cost out of the first live update, in the middle of training.
    """
    from napari.layers import Labels

    Labels(np.zeros((2, 2), dtype=np.uint8))


def _ask_path(parent: Any, *, save: bool) -> str | None:
    """A model file's path from a Qt file dialog (None when cancelled)."""
    from qtpy.QtWidgets import QFileDialog

    if save:
        path, _ = QFileDialog.getSaveFileName(parent, "Save model", "", MODEL_FILTER)
        if path and not Path(path).suffix:
            path += ".model"
    else:
        path, _ = QFileDialog.getOpenFileName(parent, "Load model", "", MODEL_FILTER)
    return path or None


def _hide_row_label(widget: Any) -> None:
    """Hide the label that a labelled Container gives ``widget`` (its row's first widget),
    so that a section of controls has no stray caption of its own."""
    row = widget.native.parentWidget()
    layout = row.layout() if row is not None else None
    if layout is not None and layout.count() > 1:
        caption = layout.itemAt(0).widget()
        if caption is not None and caption is not widget.native:
            caption.hide()


# --- the widget -----------------------------------------------------------------------


class SegmentationWidget(Container):
    """Unsupervised segmentation (Kanezaki 2018) of an image layer, watched live.

    Scripting: choose the layer with ``widget.image.value = layer``, set ``widget.params``
    (or single controls such as ``widget.max_iter.value``), then ``widget.run()``;
    ``widget.stop()`` ends the run keeping the labels; ``widget.finished`` is emitted at the end.
    ``widget.model`` is the model of the last run (or loaded); ``widget.apply_model()``
    labels the chosen layer with it, ``widget.save_model(path)`` and
    ``widget.load_model(path)`` write and read it (without a path: a file dialog).
    After a run on one plane, ``widget.detail.value`` cuts its labels again at another level
    of detail (:class:`~napari_unsupervised_segmentation.core.labels.MergeHierarchy`).
    After a run into objects (``label_by="object"``), ``widget.toggle_class(k)`` turns the
    network's class ``k`` from background into objects or back and redraws them (what a
    click does while ``widget.click_classes`` is pressed); with ``widget.measure.value =
    True`` the labels are measured into the Labels layer's features.
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
        #: The latest run's input and merge hierarchy, while the Detail slider re-cuts them.
        self._detail_source: tuple[LayerInput, MergeHierarchy] | None = None
        self._setting_detail = False  # the slider is being set, not moved by the user
        #: The latest run's input and the classes of its objects, while clicks toggle them.
        self._objects: tuple[LayerInput, ClassObjects] | None = None
        #: The latest run's input and labels (in the layer's axis order), which Measure
        #: objects measures, and whether they are numbered across a stack.
        self._result: tuple[LayerInput, np.ndarray, bool] | None = None
        self._click = _click_callback(weakref.ref(self))

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
            choices=[
                ("shown plane", "shown"),
                ("all planes", ONE_MODEL),
                ("each plane on its own", "each"),
                ("volume (3D)", VOLUME),
            ],
            value="shown",
            tooltip="For nD layers: the plane shown; all planes: one model trained for every "
            "plane parallel to it, the same classes in each; each plane on its own: one "
            "training per plane, one after the other; volume (3D): the plane shown and the "
            "axis before it (z) as a volume of 3D objects, one model for every volume, its "
            "voxel size from the layer's scale. Into one labels layer.",
        )
        self.preset = ComboBox(
            name="preset",
            label="Preset",
            choices=list(PRESETS),
            value="default",
            tooltip="Fill every setting from a named preset ('paper': as published).",
        )
        self._controls = _make_controls()
        self.detail = FloatSlider(
            name="detail",
            label="Detail",
            min=-3.0,
            max=3.0,
            step=0.1,
            value=0.0,
            enabled=False,
            tooltip="After a run: right for more, smaller segments, left for fewer, larger "
            "ones (each step of 1 doubles or halves them), redrawn without training again.",
        )
        #: The settings beyond the basic ones: a check box and a collapsed section per group.
        self.sections = _make_sections(self._controls)
        self.run_button = PushButton(name="run_button", text="Run")
        self.save_button = PushButton(
            name="save_button",
            text="Save model...",
            enabled=False,
            tooltip="Write the model of the last run to a file, to apply later or elsewhere.",
        )
        self.load_button = PushButton(
            name="load_button",
            text="Load model...",
            tooltip="Read a model file: Apply model then labels layers with its classes.",
        )
        self.apply_button = PushButton(
            name="apply_button",
            text="Apply model",
            enabled=False,
            tooltip="Label the chosen image layer with the model, without training: the same "
            "classes as the layer it was trained on (no post-processing).",
        )
        self.model_buttons = Container(
            name="model_buttons",
            layout="horizontal",
            labels=False,
            widgets=[self.save_button, self.load_button, self.apply_button],
        )
        self.model_buttons.margins = (0, 0, 0, 0)
        self.click_classes = PushButton(
            name="click_classes",
            text="Click a class: background \u2194 object",
            enabled=False,
            tooltip="After a run into objects (label by: object): while pressed, a click in "
            "the image turns the class under the pointer from background into objects, or "
            "back, and the objects are made again, without training.",
        )
        self.click_classes.native.setCheckable(True)
        self.measure = CheckBox(
            name="measure",
            text="Measure objects",
            value=False,
            tooltip="Measure every label of a run (area, centroid, mean intensity, shape; in "
            "the units of the layer's scale) into the Labels layer's features, which napari "
            "shows under the pointer; again after each click on a class.",
        )
        self.object_buttons = Container(
            name="object_buttons",
            layout="horizontal",
            labels=False,
            widgets=[self.click_classes, self.measure],
        )
        self.object_buttons.margins = (0, 0, 0, 0)
        self._model: SegmentationModel | None = None
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
                *(self._controls[n] for n in BASIC),
                self.detail,
                *(widget for section in self.sections.values() for widget in section),
                self.run_button,
                self.model_buttons,
                self.object_buttons,
                self.progress_bar,
                self.status,
            ]
        )
        self.status.native.setWordWrap(True)
        # The status never widens the dock (and so never squeezes the canvas): it wraps.
        self.status.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        for _, section in self.sections.values():
            _hide_row_label(section)
        _hide_row_label(self.model_buttons)
        _hide_row_label(self.object_buttons)

        self.image.changed.connect(self._on_image_changed)
        self.channel_axis.changed.connect(self._on_channel_axis_changed)
        self.preset.changed.connect(self._on_preset)
        self.run_button.changed.connect(self._on_button)
        self.save_button.changed.connect(lambda *_: self.save_model())
        self.load_button.changed.connect(lambda *_: self.load_model())
        self.apply_button.changed.connect(lambda *_: self.apply_model())
        watch_options(self._controls)
        self.detail.changed.connect(self._on_detail)
        self.click_classes.native.toggled.connect(self._on_click_classes)
        self.measure.changed.connect(self._on_measure)

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
        show_params(self._controls, params)

    @property
    def labels_layer(self) -> Labels | None:
        """The Labels layer of the latest run (held weakly: the viewer owns its layers)."""
        return self._labels_ref()

    @property
    def model(self) -> SegmentationModel | None:
        """The model of the last run (of the plane shown, all planes, or a large layer's
        crops) or the one loaded last; None before either."""
        return self._model

    @model.setter
    def model(self, model: SegmentationModel | None) -> None:
        self._model = model
        self._update_buttons()

    def _update_buttons(self) -> None:
        """Save and Apply need a model and no run going on; Load needs no run."""
        idle = not self.is_running
        self.save_button.enabled = idle and self._model is not None
        self.apply_button.enabled = idle and self._model is not None
        self.load_button.enabled = idle

    @property
    def hierarchy(self) -> MergeHierarchy | None:
        """The merge hierarchy of the latest run's labels, which the Detail slider cuts
        (None before a run on one plane has finished)."""
        return None if self._detail_source is None else self._detail_source[1]

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
            with contextlib.suppress(AmbiguousChannels):  # several named: none chosen
                shape = full_resolution(layer).shape
                named = guess_channel_axis(shape, _axis_names(layer), from_shape=False)
                if named is not None:
                    self.channel_axis.value = named
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
        choice = planes_choice(self.planes.value if self._planes_offered else "shown")
        try:
            params = self.params
            inp = layer_input(
                layer,
                self._viewer.dims,
                self.channel_axis.value,
                params,
                all_planes=choice.all_planes,
                crops_allowed=choice.crops_allowed,
                volume=choice.volume,
                one_model=choice.one_model,
                # one model's classes (all planes, volumes, crops): too large go to disk
                model_labels=smallest_unsigned_dtype(params.max_classes)
                if choice.crops_allowed
                else None,
            )
        except Exception as exc:  # e.g. a layer that cannot be segmented: tell, never raise
            self._refuse(exc)
            return
        one_model = choice.one_model or inp.by_crops
        self._start(inp, params, "model" if one_model else "train")

    def _refuse(self, exc: BaseException) -> None:
        """Tell why a run cannot start (a notification and the status line)."""
        from napari.utils.notifications import show_error

        message = user_message(exc)
        show_error(message)
        self.status.value = f"Failed: {message}"

    def _idle_layer(self) -> Any:
        """The chosen image layer when no run is going on, else None (with a message)."""
        from napari.utils.notifications import show_error, show_info

        if self.is_running:
            show_info("Unsupervised Segmentation is already running; press Stop first.")
            return None
        if self._life.closed:
            return None
        if self.image.value is None:
            show_error("Unsupervised Segmentation: add or choose an image layer first.")
        return self.image.value

    # the model -----------------------------------------------------------------------

    def apply_model(self) -> None:
        """Label the chosen image layer with :attr:`model`, without training (the planes
        control as for Run: the plane shown, or every plane; a volume model labels every
        volume): class ``k`` is label ``k + 1`` in every layer and plane. Runs in the
        background like training."""
        if self._model is None:
            self._refuse(ValueError("no model yet: run, or load a model file, first"))
            return
        layer = self._idle_layer()
        if layer is None:
            return
        choice = planes_choice(self.planes.value if self._planes_offered else "shown")
        volume = getattr(self._model, "spatial_ndim", 2) == 3
        try:
            inp = layer_input(
                layer,
                self._viewer.dims,
                self.channel_axis.value,
                all_planes=choice.all_planes,
                volume=volume,
                model_labels=smallest_unsigned_dtype(self._model.n_classes),
                one_model=True,
            )
        except Exception as exc:
            self._refuse(exc)
            return
        self._start(inp, self._model.settings, "apply")

    def save_model(self, path: str | os.PathLike[str] | None = None) -> Path | None:
        """Write :attr:`model` to ``path`` (None: ask with a file dialog); the path written,
        or None when nothing was (no model, dialog cancelled, an error: notified)."""
        if self._model is None:
            self._refuse(ValueError("no model to save yet: run, or load a model file, first"))
            return None
        if path is None:
            path = _ask_path(self.native, save=True)
            if path is None:
                return None
        try:
            written = self._model.save(path)
        except Exception as exc:  # a read-only folder, a full disk: tell, never raise
            self._refuse(exc)
            return None
        self.status.value = f"Model saved to {written}."
        return written

    def load_model(self, path: str | os.PathLike[str] | None = None) -> SegmentationModel | None:
        """Read a model file into :attr:`model` (None: ask with a file dialog); the model,
        or None when none was read (dialog cancelled, not a model file: notified)."""
        if self.is_running:
            self._refuse(ValueError("a run is going on; press Stop first"))
            return None
        if path is None:
            path = _ask_path(self.native, save=False)
            if path is None:
                return None
        try:
            from ..core import load_model

            model = load_model(path)
        except Exception as exc:
            self._refuse(exc)
            return None
        self.model = model
        self.status.value = (
            f"Model loaded from {Path(path).name}: {model.n_classes} classes at most. "
            "Apply model labels the chosen layer with them."
        )
        return model

    def stop(self) -> None:
        """Stop after the current iteration and show its labels."""
        run = self._life.run
        if run is None:
            return
        run.stop.set()
        self.run_button.text = "Stopping…"
        self.run_button.enabled = False

    def _start(self, inp: LayerInput, params: SegmentationParams, kind: str = "train") -> None:
        """Start a run in a worker thread: ``kind`` "train" (each plane trained on its own),
        "model" (one model for every plane, or a large plane's crops) or "apply" (label
        with :attr:`model`, no training)."""
        from napari.qt.threading import GeneratorWorker

        run = _Run(inp=inp, params=params, kind=kind)
        if inp.disk_labels is not None and kind != "train":
            try:
                run.disk = DiskLabels(inp)
            except Exception as exc:  # a full or read-only temporary folder: tell
                self._refuse(exc)
                return
        self._watch_window()
        if inp.plan.stack_axes and run.disk is None:
            run.stack = PlaneStack(inp.plan, inp.plane_shape)
        if kind == "train":
            total = params.max_iter * inp.n_planes
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
                # the Detail slider: one plane's segments (objects are not cut from a merge)
                hierarchy=not inp.plan.stack_axes and params.label_by != "object",
                keep_model=True,
                objects=not inp.plan.stack_axes,  # one plane: its objects' classes
            )
        elif kind == "model":
            total = params.max_iter + inp.n_units
            run.worker = GeneratorWorker(
                fit_stack_updates,
                inp,
                params,
                run.stop,
                run.done,
                self.update_interval,
                abandon=run.abandon,
                live=run.disk is None,  # labels on disk: shown as each plane is written
                disk=run.disk,
            )
        else:
            total = inp.n_units
            run.worker = GeneratorWorker(
                apply_updates,
                self._model,
                inp,
                run.stop,
                run.done,
                abandon=run.abandon,
                disk=run.disk,
            )
        run.progress = _DockProgress(self.progress_bar, total)
        run.worker.yielded.connect(_weak_slot(self._on_yielded, run))
        run.worker.finished.connect(_weak_slot(self._on_finished, run))
        self._life.run = run
        self._labels_ref = lambda: None
        self._detail_source = None
        self.detail.enabled = False
        self._set_objects(None)
        self._result = None
        self.updates_shown = 0
        self.run_button.text = "Stop"
        self.run_button.enabled = True
        self._update_buttons()
        note = f"\n{inp.note}" if inp.note else ""
        if kind == "apply":
            doing = f"Labelling {inp.layer_name} with the model…"
        elif inp.by_crops:
            doing = f"Preparing {inp.layer_name}: too large to train whole, trained on crops…"
        else:
            doing = f"Preparing {inp.layer_name} (superpixels, model)…"
        if run.disk is not None:
            from napari.utils.notifications import show_info

            where = _disk_note(run.disk)
            note = f"\n{where}{note}"
            show_info(f"Unsupervised Segmentation: {where}")
        self.status.value = f"{doing}{note}"
        run.worker.start()

    def _on_yielded(self, run: _Run, item: Update | Failure | Trained) -> None:
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
                elif isinstance(item, Trained):
                    run.trained = True
                    self._model = item.model  # buttons follow when the run ends
                elif isinstance(item, Objects):
                    self._show_objects(run, item)
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
                done = item.progress
                if done is None:
                    done = item.plane * run.params.max_iter + item.iteration
                run.progress.update(done - run.progress.n)
            if run.kind == "train" or not item.is_last:
                self.status.value = status_text(item, run.params.max_iter, run.inp.note)
            else:
                done_planes = len(run.final_counts) + 1
                self.status.value = f"Labelling {item.unit} {done_planes}/{item.n_planes}…"
            if item.is_last and item.labels is not None:
                run.final_counts[item.plane] = int(item.labels.max(initial=0))
                if run.kind != "train":
                    run.classes.update(np.unique(item.labels).tolist())
            elif item.is_last and run.kind != "train" and item.classes is None:
                run.final_counts[item.plane] = 0  # labelled: its objects come at the end
                if len(run.final_counts) == item.n_planes:
                    self.status.value = f"Making the objects of {_where(run, item)}…"
            if item.objects is not None:
                run.objects = item.objects
            if item.classes is not None and run.disk is not None:  # written on disk
                run.final_counts[item.plane] = max(item.classes, default=0)
                run.classes.update(item.classes)
                self._put_disk(run)
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

    def _put_disk(self, run: _Run) -> None:
        """Show the labels on disk: a Labels layer on their zarr array, redrawn as each
        plane (volume) is written (only what the viewer shows is read)."""
        assert run.disk is not None
        run.labels_layer = show_disk_labels(self._viewer, run.inp, run.disk, run.labels_layer)
        run.updates_shown += 1
        self._labels_ref = weakref.ref(run.labels_layer)
        self.updates_shown = run.updates_shown

    def _put_plane(self, run: _Run, number: int, labels: np.ndarray) -> None:
        """Show one plane's (or volume's) labels of a stack: written into the run's layer in
        place (its planes' cost, whatever the stack's size), or, the first time and once
        that layer is no longer the run's, every plane's labels so far in a layer (a new
        one then)."""
        assert run.stack is not None
        planes = run.inp.unit_planes(number, labels)
        for plane, plane_labels in planes:
            run.stack.put(plane, plane_labels)
        layer = run.labels_layer
        if (
            layer is not None
            and layer in self._viewer.layers
            and all(
                write_plane(layer, run.inp, plane, plane_labels, refresh=False)
                for plane, plane_labels in planes
            )
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

    def _show_objects(self, run: _Run, item: Objects) -> None:
        """Show the objects of every plane (volume) one model labelled, in the run's layer."""
        try:
            run.objects = item.source
            run.objects_labels = in_layer_order(run.inp.plan, item.labels)
            run.classes = set(np.unique(item.labels).tolist())
            self._put_labels(run, run.objects_labels)
        except Exception as exc:  # e.g. the viewer is half closed
            self._show_failure(run, _not_shown(exc))

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
            self._update_buttons()
            self.status.value = _final_status(run)
            self._offer_detail(run)
            self._offer_result(run)
        except RuntimeError:  # the Qt widgets are being deleted
            return
        self.finished.emit()

    # detail --------------------------------------------------------------------------

    def _offer_detail(self, run: _Run) -> None:
        """Enable the Detail slider at 0 over the levels of the run's final labels."""
        last = run.last
        levels = last.hierarchy if last is not None and run.failure is None else None
        if levels is None or run.labels_layer is None:
            return
        low, high = levels.detail_range
        if high - low < 1e-9:  # one level only: nothing to cut
            return
        self._detail_source = (run.inp, levels)
        self._setting_detail = True
        try:
            self.detail.value = 0.0
            self.detail.min = math.floor(low * 10) / 10
            self.detail.max = math.ceil(high * 10) / 10
        finally:
            self._setting_detail = False
        self.detail.enabled = True

    def _on_detail(self, value: float) -> None:
        """Cut the latest run's labels at ``value`` and redraw them (no training)."""
        from napari.utils.notifications import show_error

        if self._setting_detail or self._detail_source is None or self.is_running:
            return
        inp, levels = self._detail_source
        try:
            labels = levels.labels(float(value))
            layer = show_labels(self._viewer, inp, labels, self._labels_ref(), set_transforms=False)
        except Exception as exc:  # e.g. the viewer is half closed: tell, never raise
            show_error(_not_shown(exc))
            return
        self._labels_ref = weakref.ref(layer)
        self._result = (inp, labels, False)
        self.status.value = f"Detail {value:+.1f}: {counted(int(labels.max()), 'label')}."
        self._measure_result()

    # objects and measurements --------------------------------------------------------

    def _offer_result(self, run: _Run) -> None:
        """Keep the final labels of a run for Measure objects (measured now if checked) and,
        after a run into objects, offer to click classes."""
        if run.failure is not None or run.labels_layer is None or run.disk is not None:
            return
        if run.objects_labels is not None:
            labels: np.ndarray | None = run.objects_labels
        elif run.stack is not None:
            labels = run.stack.snapshot()
        else:
            labels = run.last.labels if run.last is not None else None
        if labels is None:
            return
        numbered_across = run.objects_labels is not None
        self._result = (run.inp, labels, numbered_across)
        if run.objects is not None and run.labels_layer is self._labels_ref():
            self._set_objects((run.inp, run.objects))
        self._measure_result()

    def _set_objects(self, objects: tuple[LayerInput, ClassObjects] | None) -> None:
        """Offer (or, with None, stop offering) to click the classes of a run's objects."""
        self._objects = objects
        if objects is None:
            self.click_classes.value = False  # removes the click callback
        self.click_classes.enabled = objects is not None

    def _on_click_classes(self, checked: bool) -> None:
        """While the button is pressed, a click in the viewer toggles the class under it."""
        callbacks = self._viewer.mouse_drag_callbacks
        if checked and self._click not in callbacks:
            callbacks.append(self._click)
        elif not checked and self._click in callbacks:
            callbacks.remove(self._click)
        layer = self._labels_ref()
        if checked and layer is not None and layer.mode != "pan_zoom":
            layer.mode = "pan_zoom"  # a click toggles a class; it paints nothing
        if checked and self._objects is not None:
            self.status.value = (
                "Click a class in the image: background becomes objects, objects become "
                f"background ({_background_text(self._objects[1])})."
            )

    def toggle_at(self, position: Any) -> int | None:
        """Toggle the class at ``position`` (world coordinates, as a mouse event gives
        them) in the latest run's objects (:meth:`toggle_class`); the class, or None where
        there is none (outside the labels, no objects to toggle: the status line says)."""
        layer = self._labels_ref()
        if self._objects is None or layer is None or layer not in self._viewer.layers:
            self.status.value = "No objects to click: run with label by: object first."
            return None
        inp, source = self._objects
        value = source.class_at(stack_index(inp.plan, layer.world_to_data(position)))
        if value is None:
            self.status.value = "Click inside the labels to toggle a class."
            return None
        self.toggle_class(value)
        return value

    def toggle_class(self, value: int) -> None:
        """Turn the network's class ``value`` from background into objects, or back, in the
        latest run's objects, and redraw them (no training; measured again if Measure
        objects is checked)."""
        from napari.utils.notifications import show_error

        if self._objects is None or self.is_running:
            return
        inp, source = self._objects
        source = source.toggled(value)
        try:
            labels = in_layer_order(inp.plan, source.labels())
            layer = show_labels(self._viewer, inp, labels, self._labels_ref(), set_transforms=False)
        except Exception as exc:  # e.g. the viewer is half closed: tell, never raise
            show_error(_not_shown(exc))
            return
        self._labels_ref = weakref.ref(layer)
        self._objects = (inp, source)
        self._result = (inp, labels, True)  # objects: numbered across a stack
        side = "background" if value in source.background else "objects"
        self.status.value = (
            f"Class {value} is {side} now: {counted(int(labels.max(initial=0)), 'object')} "
            f"({_background_text(source)})."
        )
        self._measure_result()

    def _on_measure(self, checked: bool) -> None:
        """Measure the latest run's labels now, or clear their measurements."""
        layer = self._labels_ref()
        if checked:
            self._measure_result()
        elif layer is not None and layer.features.shape[1]:
            layer.features = {}

    def _measure_result(self) -> None:
        """With Measure objects checked, measure the latest labels into their layer's
        features (or say in the status line why they cannot be)."""
        from napari.utils.notifications import show_error

        layer = self._labels_ref()
        if not self.measure.value or self._result is None or layer is None:
            return
        inp, labels, numbered_across = self._result
        if not measurable(inp, numbered_across=numbered_across):
            if NOT_MEASURED not in self.status.value:
                self.status.value += f"\n{NOT_MEASURED}"
            return
        try:
            layer.features = measure_labels(inp, labels)
        except Exception as exc:  # tell, never raise
            show_error(f"Unsupervised Segmentation could not measure the labels: {exc}")


def _click_callback(widget_ref: Callable[[], SegmentationWidget | None]) -> Callable[..., Any]:
    """A viewer mouse callback that toggles the class under a click (not a drag) in the
    widget's latest objects; it holds the widget weakly."""

    def on_click(viewer: Any, event: Any) -> Any:
        if getattr(event, "button", 1) != 1:
            return
        yield
        dragged = False
        while event.type == "mouse_move":
            dragged = True
            yield
        widget = widget_ref()
        if widget is None or dragged:
            return
        with contextlib.suppress(RuntimeError):  # the widget's Qt controls are deleted
            if viewer.dims.ndisplay == 3:
                widget.status.value = "Switch to 2D display to click a class."
            else:
                widget.toggle_at(event.position)

    return on_click


def _background_text(source: ClassObjects) -> str:
    """ "background: classes 0, 3" (the network's classes that are background)."""
    classes = sorted(source.background)
    if not classes:
        return "no class is background"
    word = "class" if len(classes) == 1 else "classes"
    return f"background: {word} {', '.join(map(str, classes))}"


def _where(run: _Run, last: Update) -> str:
    """ "all 3 planes", "2 of 3 volumes", "the plane": the units a model labelled."""
    done, unit = len(run.final_counts), last.unit
    if done < last.n_planes:
        return f"{done} of {last.n_planes} {unit}s"
    return f"all {last.n_planes} {unit}s" if last.n_planes > 1 else f"the {unit}"


def _model_status(run: _Run, last: Update) -> str:
    """The status line after a run with one model (trained, or applied): its classes, or
    objects, in the planes it labelled."""
    where = _where(run, last)
    verb = "Stopped at iteration" if run.stop.is_set() else "Done after"
    iterations = "" if run.stop.is_set() else " iterations"
    how = " on crops" if run.inp.by_crops else ""
    done = "Applied the model" if run.kind == "apply" else f"{verb} {last.iteration}{iterations}"
    if run.objects_labels is not None:
        objects = f"{counted(int(run.objects_labels.max(initial=0)), 'object')} in {where}"
        return (
            f"{done}{how}: one model, {objects} ({_background_text(run.objects)}). Click a "
            "class to make it background or objects."
        )
    if run.params.label_by == "object" and run.disk is None:  # stopped before the last
        return f"Stopped: {where} labelled, no objects made (they need every {last.unit})."
    classes = f"{counted(len(run.classes), 'class')} in {where}"
    if run.kind == "apply":
        return f"Applied the model: {classes}."
    return (
        f"{done}{how}: one model, {classes} (label k + 1 is class k everywhere). Apply model "
        "labels other layers with the same classes."
    )


def _disk_note(disk: DiskLabels) -> str:
    """Where labels too large for memory are written (status line, notification)."""
    return f"Labels too large for memory: written to the zarr array {disk.path}"


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
    elif run.kind != "train":
        text = _model_status(run, last)
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
        if run.objects is not None:
            text = (
                f"{verb} {last.iteration}{iterations}: {counted(n_labels, 'object')} "
                f"({_background_text(run.objects)}). Click a class to make it background or "
                "objects."
            )
    if run.disk is not None:
        text = f"{text}\n{_disk_note(run.disk)}"
    return f"{text}\n{run.inp.note}" if run.inp.note else text


def _axis_names(layer: Any) -> list[str]:
    """The layer's axis labels, lower-cased, with napari's default numbers ("-3") as ""."""
    labels = [str(label) for label in getattr(layer, "axis_labels", None) or ()]
    if len(labels) != layer.ndim:
        return [""] * layer.ndim
    return ["" if label.lstrip("-").isdigit() else label.lower() for label in labels]
