"""The widget's settings controls: one per setting, built in one place.

:func:`_make_controls` makes a control for every field of
:class:`~napari_unsupervised_segmentation.core.params.SegmentationParams`, with the
``default`` preset's value and the setting's help as tooltip; :func:`params_from_values`
turns the controls' values back into settings. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, LineEdit, SpinBox

from ..core.params import BOUNDARIES, PRECISIONS, PRESETS, SegmentationParams

__all__ = ["device_choices", "params_from_values"]

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


def params_from_values(values: dict[str, Any]) -> SegmentationParams:
    """Settings from the controls' values (seed -1 means a fresh random start: None)."""
    values = dict(values)
    if values.get("seed") is not None and values["seed"] < 0:
        values["seed"] = None
    return SegmentationParams(**values)


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
