"""Sample images bundled with scikit-image (nothing is downloaded).

``coffee`` is a natural RGB photo and ``ihc`` an RGB immunohistochemistry micrograph. The
napari sample-data contributions return LayerData lists; :func:`load_sample` returns the
plain array for scripts and the CLI (``--sample NAME``) without importing napari.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def _coffee_array() -> np.ndarray:
    """A (400, 600, 3) uint8 RGB photo of a coffee cup."""
    from skimage import data

    return data.coffee()


def _ihc_array() -> np.ndarray:
    """A (512, 512, 3) uint8 RGB immunohistochemistry (DAB + haematoxylin) image."""
    from skimage import data

    return data.immunohistochemistry()


#: Sample name -> function returning the image as an (H, W, 3) uint8 RGB array.
SAMPLES: dict[str, Callable[[], np.ndarray]] = {
    "coffee": _coffee_array,
    "ihc": _ihc_array,
}


def load_sample(name: str) -> tuple[np.ndarray, int | None]:
    """The sample image ``name`` and its channel axis (``-1``: all samples are RGB)."""
    try:
        loader = SAMPLES[name]
    except KeyError:
        raise ValueError(
            f"unknown sample {name!r}; choose one of {', '.join(sorted(SAMPLES))}"
        ) from None
    return loader(), -1


def coffee() -> list[tuple[np.ndarray, dict[str, Any], str]]:
    """napari sample data: the coffee cup photo as an RGB image layer."""
    return [(_coffee_array(), {"name": "coffee", "rgb": True}, "image")]


def ihc() -> list[tuple[np.ndarray, dict[str, Any], str]]:
    """napari sample data: the IHC micrograph as an RGB image layer."""
    return [(_ihc_array(), {"name": "ihc", "rgb": True}, "image")]
