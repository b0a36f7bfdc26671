"""napari's console: :func:`segment_layer` segments an image layer into a Labels layer.

It chains :func:`~.layers.layer_input`, :func:`segment_planes` (each plane on its own) or
:func:`fit_planes` (one model: the widget's worker code) and :func:`~.layers.show_labels`;
torch is only imported when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.wording import counted, labels_per_plane
from .layers import (
    LayerInput,
    PlaneStack,
    in_layer_order,
    layer_input,
    measurable,
    measure_labels,
    show_labels,
)

if TYPE_CHECKING:
    import napari
    from napari.layers import Labels

    from ..core import SegmentationParams

__all__ = ["SegmentedPlanes", "fit_planes", "segment_layer", "segment_planes"]


@dataclass(frozen=True)
class SegmentedPlanes:
    """The labels of a run over a plane or a stack (:func:`segment_planes`), and what the
    run took, for the line that tells the user."""

    labels: np.ndarray  # 2D, or the stack's (:meth:`PlaneStack.snapshot`)
    label_counts: tuple[int, ...]  # per plane: the labels after post-processing
    iterations: tuple[int, ...]  # per plane: the training iterations run
    seconds: float
    #: One model for all (:func:`fit_planes`): the classes it gave, and the planes (or
    #: volumes) it labelled, "3 planes"; None when each plane trained on its own.
    one_model: tuple[int, str] | None = None
    model: Any = None  # the model trained, with one model
    #: One model's objects (``label_by="object"``): the classes they are made of
    #: (:class:`~.objects.ClassObjects`); ``labels`` are then the objects, numbered across
    #: every plane (volume), and ``one_model`` counts them instead of classes.
    objects: Any = None

    def summary(self, labels_name: str, note: str = "") -> str:
        """One line: "img labels: 23 labels in 160 iterations, 12.3 s"; for a stack the
        labels per plane and the iterations of all planes; with one model, "one model, 4
        classes in 3 planes"; ``note`` (where in the layer, :attr:`LayerInput.note`) after
        a " · "."""
        if self.one_model is not None:
            count, where = self.one_model
            what = counted(count, "object" if self.objects is not None else "class")
            labels = f"one model, {what} in {where}"
        else:
            labels = labels_per_plane(self.label_counts)
        iterations = counted(sum(self.iterations), "iteration")
        text = f"{labels_name}: {labels} in {iterations}, {self.seconds:.1f} s"
        return f"{text} · {note}" if note else text


def segment_planes(inp: LayerInput, settings: SegmentationParams) -> SegmentedPlanes:
    """Segment ``inp``'s plane, or each of its planes, to the end: the labels (2D, or the
    stack's, :meth:`PlaneStack.snapshot`) and what the run took."""
    import time
    from collections import deque

    from ..core.train import iter_segment

    counts: list[int] = []
    iterations: list[int] = []

    def labels_of(stack_index: tuple[int, ...]) -> np.ndarray:
        image = inp.plane_image(stack_index)
        steps = iter_segment(image, settings, channel_axis=inp.channel_axis, rgb=inp.rgb)
        last = deque(steps, maxlen=1)[0]  # max_iter >= 1 guarantees one step
        labels = last.labels
        counts.append(int(labels.max()))  # labels are 1..n
        iterations.append(last.iteration)
        return labels

    start = time.perf_counter()
    if not inp.plan.stack_axes:
        labels = labels_of(())
    else:
        stack = PlaneStack(inp.plan, inp.plane_shape)
        for number, stack_index in enumerate(inp.plan.stack_indices()):
            try:
                stack.put(number, labels_of(stack_index))
            except (ValueError, MemoryError) as exc:  # say which plane, as the widget does
                raise type(exc)(f"plane {number + 1}/{inp.n_planes}: {exc}") from exc
        labels = stack.snapshot()
    seconds = time.perf_counter() - start
    return SegmentedPlanes(labels, tuple(counts), tuple(iterations), seconds)


def fit_planes(inp: LayerInput, settings: SegmentationParams) -> SegmentedPlanes:
    """Train one model for every plane, or volume, of ``inp`` and label each with it, as
    the widget's "all planes" and "volume (3D)" do (the same worker code, without live
    updates): the labels (2D, or the stack's) and what the run took. With
    ``label_by="object"``, the labels are objects numbered across every plane (volume).
    Engine errors are raised."""
    import threading
    import time

    from .worker import Failure, Objects, Trained, Update, fit_stack_updates

    start = time.perf_counter()
    stack = PlaneStack(inp.plan, inp.plane_shape) if inp.plan.stack_axes else None
    labels: np.ndarray | None = None
    counts: list[int] = []
    classes: set[int] = set()
    model: Any = None
    objects: Objects | None = None
    last: Update | None = None
    updates = fit_stack_updates(inp, settings, threading.Event(), threading.Event(), live=False)
    for item in updates:
        if isinstance(item, Failure):
            raise item.error if item.error is not None else RuntimeError(item.message)
        if isinstance(item, Trained):
            model = item.model
            continue
        if isinstance(item, Objects):
            objects = item
            continue
        if item.labels is None:  # objects to come: the classes of this plane are kept
            last = item
            continue
        last, labels = item, item.labels
        counts.append(int(labels.max(initial=0)))
        classes.update(np.unique(labels).tolist())
        if stack is not None:
            for plane, plane_labels in inp.unit_planes(item.plane, labels):
                stack.put(plane, plane_labels)
    n, unit = inp.n_units, inp.plan.unit
    where = f"{n} {unit}s" if n > 1 else f"the {unit}"
    seconds = time.perf_counter() - start
    if last is not None and objects is not None:
        found = in_layer_order(inp.plan, objects.labels)
        count = int(found.max(initial=0))
        return SegmentedPlanes(
            found, (count,), (last.iteration,), seconds, (count, where), model, objects.source
        )
    if last is None or labels is None:
        raise RuntimeError("training ended before any labels were made")
    return SegmentedPlanes(
        stack.snapshot() if stack is not None else labels,
        tuple(counts),
        (last.iteration,),
        seconds,
        one_model=(len(classes), where),
        model=model,
    )


def segment_layer(
    layer_or_name: Any,
    viewer: napari.Viewer | None = None,
    params: SegmentationParams | str | None = None,
    *,
    channel_axis: int | None = None,
    planes: str = "shown",
    all_planes: bool = False,
    measure: bool = False,
    **overrides: Any,
) -> Labels:
    """Segment an image layer into a "<image name> labels" Labels layer (see :func:`show_labels`).

    For napari's console: ``layer_or_name`` is a layer or a layer name in ``viewer``
    (default: ``napari.current_viewer()``); ``params`` and ``overrides`` are as for
    :func:`~napari_unsupervised_segmentation.segment`. nD layers: ``planes`` is the
    widget's Planes choice (:data:`~..core.plan.PLANES`): ``"shown"``, the displayed 2D
    plane; ``"all"``, every plane parallel to it with one model trained for all of them
    (class ``k`` is label ``k + 1`` in every plane, no post-processing); ``"each"``, every
    plane on its own (labels numbered from 1 in each plane; ``all_planes=True`` says the
    same); ``"volume"``, the displayed plane and the axis before it (z) as volumes of 3D
    objects, one model for every volume (a time series), the voxel size from the layer's
    scale. A plane too large to train whole trains one model on crops of it (except with
    ``"each"``). With ``label_by="object"`` (the ``objects`` preset), one model's labels
    are objects, background 0, numbered across every plane (volume; 3D objects for
    ``"volume"``), the background chosen once for the stack. Runs to the end
    before returning (the widget shows live updates instead), then says what it made in a
    notification: "img labels: 23 labels in 160 iterations, 12.3 s"
    (:meth:`SegmentedPlanes.summary`).

    ``measure=True`` also measures every label (:func:`~.layers.measure_labels`: area,
    centroid, mean intensity per channel, shape; sizes in the units of the layer's scale)
    into the Labels layer's ``features``, which napari shows beside a label's value under
    the pointer. Measured: the labels of one plane, of one volume (``planes="volume"`` on a
    3D image), or one model's objects of a stack (each plane, or volume, measured on its
    own, with a column per stack axis saying where); any other stack (planes segmented each
    on their own, one model's classes) is refused (ValueError) before anything runs, as its
    label values repeat from plane to plane. Where one model labels one plane or volume with
    classes (``"volume"``, or a plane trained on crops, without objects) a label is a class:
    its row measures all its pieces together.
    """
    if viewer is None:
        from napari import current_viewer

        viewer = current_viewer()
        if viewer is None:
            raise RuntimeError("no napari viewer is open; pass viewer=...")
    if isinstance(layer_or_name, str):
        if layer_or_name not in viewer.layers:
            names = ", ".join(repr(layer.name) for layer in viewer.layers) or "none"
            raise ValueError(f"no layer named {layer_or_name!r} in the viewer (layers: {names})")
        layer = viewer.layers[layer_or_name]
    else:
        layer = layer_or_name
    if "rgb" in overrides:
        raise TypeError(
            "segment_layer takes colour from the layer: an RGB layer is colour (four channels "
            "that are not uint8 stay four channels), channels on channel_axis are independent; "
            "to use an RGB layer's channels one by one, add its data again with "
            "viewer.add_image(data, rgb=False), show its first two axes with "
            "viewer.dims.order = (2, 0, 1) and pass channel_axis=-1"
        )
    from ..core.plan import planes_choice
    from ..core.train import resolve_params

    if all_planes and planes not in ("shown", "each"):
        raise ValueError(f"all_planes=True is planes='each'; it cannot go with planes={planes!r}")
    choice = planes_choice("each" if all_planes else planes)
    settings = resolve_params(params, **overrides)
    inp = layer_input(
        layer,
        viewer.dims,
        channel_axis=channel_axis,
        params=settings,
        all_planes=choice.all_planes,
        crops_allowed=choice.crops_allowed,
        volume=choice.volume,
        one_model=choice.one_model,
    )
    one_model = choice.one_model or inp.by_crops
    objects = one_model and settings.label_by == "object"  # numbered across the stack
    if measure and not measurable(inp, numbered_across=objects):
        raise ValueError(
            f"measure=True measures the labels of one plane or one volume, or one model's "
            f"objects, not those of {inp.n_units} {inp.plan.unit}s, whose label values "
            "repeat in each"
        )
    run = fit_planes(inp, settings) if one_model else segment_planes(inp, settings)
    labels_layer = show_labels(viewer, inp, run.labels)
    if measure:
        labels_layer.features = measure_labels(inp, run.labels)
    # a notification: napari shows it beside the console and keeps it in its log
    from napari.utils.notifications import show_info

    show_info(run.summary(labels_layer.name, inp.note))
    return labels_layer
