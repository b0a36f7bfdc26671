"""Seconds per megapixel of ``SegmentationModel.predict`` on colour photos of several sizes.

Run from the repository root::

    python benchmarks/predict_speed.py                  # default preset, CPU, fp32
    python benchmarks/predict_speed.py --tiles 128 256 512 1024 0   # tile sizes compared
    python benchmarks/predict_speed.py --threads 1      # CPU seconds of one thread

The model is the ``default`` preset (32 filters, 2 conv blocks) trained briefly on a crop of
scikit-image's bundled coffee photo; the images are that photo tiled to each size. Labelling
time grows with the pixels, so seconds per megapixel should be about the same at every
size. The machine's load average is printed with the figures: other work on the machine
slows them.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np
import torch
from skimage import data

from napari_unsupervised_segmentation import fit
from napari_unsupervised_segmentation.core.fitted import SegmentationModel


def photo(height: int, width: int) -> np.ndarray:
    """Scikit-image's coffee photo repeated (mirrored) to ``height`` x ``width`` RGB uint8."""
    coffee = data.coffee()
    tile = np.concatenate([coffee, coffee[::-1]], axis=0)
    tile = np.concatenate([tile, tile[:, ::-1]], axis=1)
    reps = (-(-height // tile.shape[0]), -(-width // tile.shape[1]), 1)
    return np.ascontiguousarray(np.tile(tile, reps)[:height, :width])


def trained_model(device: str) -> SegmentationModel:
    """The default preset trained for a few iterations on a 160 x 200 crop (seconds)."""
    return fit(
        data.coffee()[100:260, 150:350], "default", channel_axis=-1, max_iter=5, device=device
    )


def seconds(
    model: SegmentationModel, image: np.ndarray, tile: tuple[int, int] | None, repeats: int
) -> tuple[float, float, float]:
    """Wall-clock, user CPU and kernel CPU seconds (all threads) of the fastest of
    ``repeats`` labellings of ``image`` (the least disturbed by other work). On a busy
    machine the CPU seconds divided by the threads tell the wall-clock time it would take
    unloaded."""
    best = (np.inf, np.inf, np.inf)
    for _ in range(repeats):
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        model.predict(image, channel_axis=-1, tile_shape=tile)
        after, took = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - start
        cpu = (after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime)
        best = min(best, (took, *cpu))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[512, 1024, 2048, 3072],
        help="square image sides in pixels",
    )
    parser.add_argument(
        "--tiles",
        type=int,
        nargs="*",
        default=[],
        help="also compare these square tile sides on a 1024 x 1024 photo "
        "(0: the whole image as one tile)",
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch's CPU threads (0: torch's default, one per core); with 1 "
        "the CPU seconds are not swollen by threads waiting for each other "
        "on a busy machine",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = trained_model(args.device)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, fp32"
    )
    print(f"default preset: {model.n_classes} filters, {model.settings.n_conv} conv blocks")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    model.predict(photo(256, 256), channel_axis=-1)  # warm up
    rows, cols = model.default_tile_shape
    print(f"default tile {rows} x {cols}")
    threads = torch.get_num_threads()
    print(
        f"{'image':>12} {'megapixels':>10} {'s/MP':>6} {'user CPU s/MP':>14} "
        f"{'kernel CPU s/MP':>16} {'CPU s/MP / threads':>19}"
    )
    for side in args.sizes:
        image = photo(side, side)
        mp = side * side / 1e6
        took, user, kernel = seconds(model, image, None, args.repeats)
        print(
            f"{side:>5} x {side:<5} {mp:>10.2f} {took / mp:>6.2f} {user / mp:>14.2f} "
            f"{kernel / mp:>16.2f} {(user + kernel) / mp / threads:>19.2f}"
        )
    if args.tiles:
        image = photo(1024, 1024)
        mp = image.shape[0] * image.shape[1] / 1e6
        print("tile side on a 1024 x 1024 photo:")
        for side in args.tiles:
            tile = (side, side) if side else image.shape[:2]
            took, user, kernel = seconds(model, image, tile, args.repeats)
            print(
                f"{side or 'whole':>12} {'':>10} {took / mp:>6.2f} {user / mp:>14.2f} "
                f"{kernel / mp:>16.2f} {(user + kernel) / mp / threads:>19.2f}"
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
