"""The widget's settings controls, made from the settings' declarations.

:func:`_make_controls` makes a control for every setting declared in
:mod:`~napari_unsupervised_segmentation.core.params` (its kind, range, label and one-line
help as tooltip), with the ``default`` preset's value; :data:`BASIC` are the few shown
first, :func:`_make_sections` puts the others in one collapsed section per group.
:func:`watch_options` greys out the controls of options not chosen and gives a newly chosen
option's settings their defaults under it; :func:`params_from_values` turns the controls'
values back into settings and :func:`show_params` shows settings in them. Nothing here
imports torch.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, LineEdit, SpinBox

from ..core.params import GROUPS, PRESETS, SETTINGS, SegmentationParams, Setting

__all__ = [
    "BASIC",
    "device_choices",
    "params_from_values",
    "show_params",
    "watch_options",
]

#: The settings whose controls the widget shows first; the others sit in collapsed groups.
BASIC = tuple(name for name, declared in SETTINGS.items() if declared.basic)
#: Settings that others belong to: changing one greys out or enables those others.
OPTIONS = tuple(dict.fromkeys(r.option for s in SETTINGS.values() for r in s.requires))
#: The largest value an integer box offers where the setting has no bound of its own.
_BIG = 2**31 - 1


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


def params_from_values(values: Mapping[str, Any]) -> SegmentationParams:
    """Settings from the controls' values: seed -1 is a fresh random start (None), and the
    settings of options not chosen are left out (raises ValueError when out of range)."""
    values = dict(values)
    if values.get("seed") is not None and values["seed"] < 0:
        values["seed"] = None
    for name, declared in SETTINGS.items():
        if name in values and declared.requires and not declared.applies(values):
            values[name] = None
    return SegmentationParams(**values)


def show_params(controls: Mapping[str, Any], params: SegmentationParams) -> None:
    """Show ``params`` in ``controls``; settings of options not chosen keep their controls'
    values. ValueError, and no control changed, for a value outside what a control offers."""
    values = {name: getattr(params, name) for name in SETTINGS}
    if values["seed"] is None:
        values["seed"] = -1
    shown = {name: value for name, value in values.items() if value is not None}
    for name, value in shown.items():
        box = controls[name]
        if isinstance(box, SpinBox | FloatSpinBox) and not box.min <= value <= box.max:
            raise ValueError(f"{name}={value} is outside the widget's {box.min} to {box.max}")
    for name, value in shown.items():  # options first: their watchers set defaults first
        controls[name].value = value
    _enable_applicable(controls)


def watch_options(controls: Mapping[str, Any]) -> None:
    """Keep the controls of options not chosen greyed out, and give the settings of a newly
    chosen option their defaults under it (a colour merge's threshold is not a texture's)."""
    for option in OPTIONS:
        controls[option].changed.connect(lambda *_, name=option: _on_option(controls, name))
    _enable_applicable(controls)


def _on_option(controls: Mapping[str, Any], option: str) -> None:
    values = _values(controls)
    for name, declared in SETTINGS.items():
        keyed = declared.requires and declared.requires[0].option == option
        if keyed and isinstance(declared.default, dict) and declared.applies(values):
            controls[name].value = declared.default_for(values)
    _enable_applicable(controls)


def _enable_applicable(controls: Mapping[str, Any]) -> None:
    values = _values(controls)
    for name, declared in SETTINGS.items():
        if declared.requires:
            controls[name].enabled = declared.applies(values)


def _values(controls: Mapping[str, Any]) -> dict[str, Any]:
    return {name: control.value for name, control in controls.items()}


def _make_controls() -> dict[str, Any]:
    """One control per declared setting, with the ``default`` preset's value, the setting's
    label, and its help (and the option it belongs to) as tooltip."""
    defaults = PRESETS["default"]
    controls: dict[str, Any] = {}
    for name, declared in SETTINGS.items():
        value = getattr(defaults, name)
        if value is None:  # an option the preset does not choose: its first default
            value = declared.default
            value = next(iter(value.values())) if isinstance(value, dict) else value
        tooltip = declared.help
        if declared.requires:
            tooltip += " Applies with " + " and ".join(r.words() for r in declared.requires) + "."
        if name == "seed":
            value = -1 if value is None else value
            tooltip += " -1: a fresh random start every run."
        cls, options = _control_for(declared)
        label = {"text": declared.label} if cls is CheckBox else {"label": declared.label}
        controls[name] = cls(name=name, value=value, tooltip=tooltip, **label, **options)
    return controls


def _control_for(declared: Setting) -> tuple[type, dict[str, Any]]:
    """The kind of control and its options (range, step) for one declared setting."""
    widget = dict(declared.widget)
    if declared.name == "device":
        return ComboBox, {"choices": lambda _w: device_choices()}
    if declared.choices is not None:
        return ComboBox, {"choices": list(declared.choices)}
    if declared.kind == "bool":
        return CheckBox, {}
    if declared.kind == "int":
        low = -1 if declared.optional else int(declared.minimum or 0) + int(declared.above)
        high = min(int(widget.get("max", _BIG)), _BIG)
        return SpinBox, {"min": widget.get("min", low), "max": high, **_step(widget)}
    if declared.kind == "float":
        # min: the smallest value the box's decimals show where 0 itself is refused
        low = widget.get("min", declared.minimum or 0.0)
        high = widget.get("max", declared.maximum if declared.maximum is not None else 1e6)
        return FloatSpinBox, {"min": low, "max": high, "step": widget.get("step", 1e-3)}
    return LineEdit, {}


def _step(widget: Mapping[str, Any]) -> dict[str, Any]:
    return {"step": widget["step"]} if "step" in widget else {}


def _make_sections(controls: Mapping[str, Any]) -> dict[str, tuple[CheckBox, Container]]:
    """For each group with settings beyond :data:`BASIC`: a check box that shows or hides a
    section of their controls (hidden at first), by group name."""
    sections: dict[str, tuple[CheckBox, Container]] = {}
    for group in GROUPS:
        names = [n for n, s in SETTINGS.items() if s.group == group and n not in BASIC]
        if not names:
            continue
        key = group.replace("-", "_")
        toggle = CheckBox(name=f"{key}_toggle", text=f"{group.capitalize()} settings", value=False)
        toggle.tooltip = f"Show the settings of {GROUPS[group]}."
        section = Container(
            name=f"{key}_settings", widgets=[controls[n] for n in names], visible=False
        )
        toggle.changed.connect(lambda shown, section=section: _show(section, shown))
        sections[group] = (toggle, section)
    return sections


def _show(section: Container, shown: bool) -> None:
    section.visible = bool(shown)
