"""How counts of labels are put in words, the same in the widget, the console and the CLI."""

from __future__ import annotations

from collections.abc import Sequence


def counted(number: int, noun: str) -> str:
    """``1 label``, ``2 labels``, ``3 classes``."""
    if number == 1:
        return f"1 {noun}"
    return f"{number} {noun}{'es' if noun.endswith('s') else 's'}"


def labels_per_plane(counts: Sequence[int]) -> str:
    """The labels of one plane (``23 labels``), or of a stack's planes, each numbered from 1
    on its own: ``4 labels per plane``, ``5 to 23 labels per plane``."""
    if len(counts) == 1:
        return counted(counts[0], "label")
    low, high = min(counts), max(counts)
    spread = counted(low, "label") if low == high else f"{low} to {high} labels"
    return f"{spread} per plane"
