"""How counts of labels are put in words, the same in the widget, the console and the CLI."""

from __future__ import annotations

from collections.abc import Sequence


def counted(number: int, noun: str) -> str:
    """``1 label``, ``2 labels``, ``3 classes``."""
    if number == 1:
        return f"1 {noun}"
    return f"{number} {noun}{'es' if noun.endswith('s') else 's'}"


def labels_per_plane(counts: Sequence[int], per_plane: bool | None = None) -> str:
    """The labels of one plane (``23 labels``), or of a stack's planes, each numbered from 1
    on its own: ``4 labels per plane``, ``5 to 23 labels per plane``. ``per_plane`` says
    whether the counts are a stack's (None: when there are several), also for one plane done
    of a stack."""
    if per_plane is None:
        per_plane = len(counts) > 1
    low, high = min(counts), max(counts)
    spread = counted(low, "label") if low == high else f"{low} to {high} labels"
    return f"{spread} per plane" if per_plane else spread
