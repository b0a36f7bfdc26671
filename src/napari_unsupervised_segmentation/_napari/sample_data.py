"""Sample images: bundled with scikit-image or made on the spot (nothing is downloaded).

``coffee`` is a natural RGB photo, ``ihc`` an RGB immunohistochemistry micrograph, ``cell``
a grayscale phase-contrast micrograph and ``stack`` a synthetic 16-bit z-stack with two
channels (made from random blobs, seeded), for the Channel axis and nD paths. The napari
sample-data contributions return LayerData lists; :func:`load_sample` returns the plain array
and its axis letters for scripts and the CLI (``--sample NAME``) without importing napari.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np


def _coffee_array() -> np.ndarray:
    """A (400, 600, 3) uint8 RGB photo of a coffee cup."""
    from skimage import data

    return data.coffee()


def _ihc_array() -> np.ndarray:
    """A (512, 512, 3) uint8 RGB immunohistochemistry (DAB + haematoxylin) image."""
    from skimage import data

    return data.immunohistochemistry()


def _cell_array() -> np.ndarray:
    """A (660, 550) uint8 grayscale phase-contrast image of a cell."""
    from skimage import data

    return data.cell()


def _stack_array() -> np.ndarray:
    """A (6, 2, 160, 160) uint16 ZCYX stack: two channels of blurred, noisy random blobs.

    Slices 16 voxels apart through two seeded 3D blob volumes, so objects change from plane
    to plane; intensities like a 12-bit camera's (offset 100, Poisson noise).
    """
    from skimage.data import binary_blobs
    from skimage.filters import gaussian

    rng = np.random.default_rng(0)
    channels = []
    for seed, brightness, fraction in ((1, 2500.0, 0.3), (2, 900.0, 0.5)):
        blobs = binary_blobs(
            160, blob_size_fraction=0.1, n_dim=3, volume_fraction=fraction, rng=seed
        )
        signal = gaussian(blobs[8::16][:6].astype(np.float64), sigma=(0, 2, 2)) * brightness
        channels.append(rng.poisson(signal + 100.0))
    return np.stack(channels, axis=1).astype(np.uint16)


class Sample(NamedTuple):
    """A sample image: how to make it and its axis letters (tifffile's: ``S`` for RGB)."""

    load: Callable[[], np.ndarray]
    axes: str


#: Sample name -> how to make it and its axes.
SAMPLES: dict[str, Sample] = {
    "coffee": Sample(_coffee_array, "YXS"),
    "ihc": Sample(_ihc_array, "YXS"),
    "cell": Sample(_cell_array, "YX"),
    "stack": Sample(_stack_array, "ZCYX"),
}


def load_sample(name: str) -> tuple[np.ndarray, str]:
    """The sample image ``name`` and its axis letters (``YXS``: RGB, ``ZCYX``: a stack)."""
    try:
        sample = SAMPLES[name]
    except KeyError:
        raise ValueError(
            f"unknown sample {name!r}; choose one of {', '.join(sorted(SAMPLES))}"
        ) from None
    return sample.load(), sample.axes


def _layer(name: str) -> list[tuple[np.ndarray, dict[str, Any], str]]:
    """The sample as napari LayerData: RGB for colour samples, axis labels for stacks."""
    image, axes = load_sample(name)
    meta: dict[str, Any] = {"name": name}
    if "S" in axes:
        meta["rgb"] = True
    elif len(axes) > 2:
        meta["axis_labels"] = tuple(axes.lower())
    return [(image, meta, "image")]


def coffee() -> list[tuple[np.ndarray, dict[str, Any], str]]:
    """napari sample data: the coffee cup photo as an RGB image layer."""
    return _layer("coffee")


def ihc() -> list[tuple[np.ndarray, dict[str, Any], str]]:
    """napari sample data: the IHC micrograph as an RGB image layer."""
    return _layer("ihc")


def cell() -> list[tuple[np.ndarray, dict[str, Any], str]]:
    """napari sample data: the phase-contrast cell as a grayscale image layer."""
    return _layer("cell")


def stack() -> list[tuple[np.ndarray, dict[str, Any], str]]:
    """napari sample data: the synthetic two-channel z-stack as one image layer, its axes
    labelled ``z c y x`` so that the widget picks Channel axis 1 (both channels together)."""
    return _layer("stack")
