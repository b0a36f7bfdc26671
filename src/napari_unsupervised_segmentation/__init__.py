"""Unsupervised image segmentation by backpropagation (Kanezaki, ICASSP 2018), for napari.

The engine lives in :mod:`napari_unsupervised_segmentation.core` and imports neither napari
nor Qt. Its names are re-exported here lazily, so that importing this package (which napari
does to find the widget, reader and writer) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "CropSampling",
    "FitStep",
    "SegmentationModel",
    "SegmentationParams",
    "Step",
    "fit",
    "iter_fit",
    "iter_segment",
    "load_model",
    "segment",
    "segment_layer",
]

if TYPE_CHECKING:
    from ._napari.console import segment_layer
    from .core import (
        PRESETS,
        CropSampling,
        FitStep,
        SegmentationModel,
        SegmentationParams,
        Step,
        fit,
        iter_fit,
        iter_segment,
        load_model,
        segment,
    )


def __getattr__(name: str) -> Any:
    if name == "segment_layer":
        from ._napari.console import segment_layer

        return segment_layer
    if name in __all__:
        from . import core

        return getattr(core, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
