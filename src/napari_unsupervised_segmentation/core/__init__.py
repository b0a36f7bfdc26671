"""The napari-free, Qt-free engine: parameters, model, refinement, training loop.

Names are loaded lazily so that the numpy-only helpers (``core.labels``, ``core.params``)
can be imported without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
]

if TYPE_CHECKING:
    from .crops import CropSampling
    from .fitted import SegmentationModel, fit, load_model
    from .params import PRESETS, SegmentationParams
    from .train import FitStep, Step, iter_fit, iter_segment, segment


def __getattr__(name: str) -> Any:
    if name in ("SegmentationParams", "PRESETS"):
        from . import params

        return getattr(params, name)
    if name in ("SegmentationModel", "fit", "load_model"):
        from . import fitted

        return getattr(fitted, name)
    if name == "CropSampling":
        from . import crops

        return crops.CropSampling
    if name in ("FitStep", "Step", "iter_fit", "iter_segment", "segment"):
        from . import train

        return getattr(train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
