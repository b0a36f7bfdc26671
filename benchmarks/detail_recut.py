"""What moving the Detail slider costs: re-cutting the merge hierarchy of a 1-megapixel photo.

Run from the repository root::

    python benchmarks/detail_recut.py                 # CPU, 10 training iterations
    python benchmarks/detail_recut.py --max-iter 160 --device cuda

The bundled coffee photo is enlarged twice (800 x 1200 pixels, about 1 megapixel) and
segmented with the ``default`` preset. The script then times, in this one process, the
finished labels (``Step.labels``), the hierarchy's construction (``Step.hierarchy``) and
the re-cut at a dozen levels of detail spread over the hierarchy's range, each one
everything that runs after the slider moves (the cut and the clean-up of specks and rims),
and prints the median re-cut in milliseconds per megapixel. It checks that level 0 gives
exactly the finished labels. The training's length changes how many segments there are,
hardly what a re-cut costs.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np

N_LEVELS = 12
REPEATS = 3


def photo() -> np.ndarray:
    """The bundled coffee photo enlarged twice: (800, 1200, 3) uint8."""
    from skimage import data
    from skimage.transform import resize

    coffee = data.coffee()
    shape = (2 * coffee.shape[0], 2 * coffee.shape[1], 3)
    return (resize(coffee, shape, order=1) * 255).round().astype(np.uint8)


def main() -> None:
    """Time the hierarchy and its re-cuts and print them."""
    from napari_unsupervised_segmentation.core import iter_segment

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-iter", type=int, default=10, help="training iterations")
    parser.add_argument("--device", default="cpu", help="where the network trains")
    args = parser.parse_args()

    image = photo()
    megapixels = image.shape[0] * image.shape[1] / 1e6
    started = time.perf_counter()
    steps = iter_segment(
        image, "default", channel_axis=-1, max_iter=args.max_iter, device=args.device
    )
    *_, last = steps
    trained = time.perf_counter() - started

    started = time.perf_counter()
    labels = last.labels
    finished = time.perf_counter() - started
    started = time.perf_counter()
    hierarchy = last.hierarchy
    built = time.perf_counter() - started
    if not np.array_equal(hierarchy.labels(0.0), labels):
        raise SystemExit("level 0 differs from the finished labels")

    low, high = hierarchy.detail_range
    levels = np.linspace(low, high, N_LEVELS)
    per_level = []
    counts = []
    for level in levels:
        seconds = []
        for _ in range(REPEATS):
            started = time.perf_counter()
            cut = hierarchy.labels(float(level))
            seconds.append(time.perf_counter() - started)
        per_level.append(min(seconds))
        counts.append(int(cut.max()))

    print(f"{platform.node()} {platform.processor() or platform.machine()}")
    print(f"image {image.shape[0]} x {image.shape[1]} ({megapixels:.2f} MP), default preset,")
    print(f"  {args.max_iter} iterations on {args.device}: {trained:.1f} s")
    print(f"finished labels: {finished * 1000:.0f} ms ({labels.max()} segments)")
    print(f"hierarchy built: {built * 1000:.0f} ms")
    print(f"detail levels {low:.2f} .. {high:.2f}:")
    for level, seconds, count in zip(levels, per_level, counts, strict=True):
        print(f"  {level:6.2f}: {seconds * 1000:6.1f} ms, {count} segments")
    median = statistics.median(per_level) * 1000 / megapixels
    worst = max(per_level) * 1000 / megapixels
    print(f"median re-cut: {median:.1f} ms per megapixel (slowest {worst:.1f})")


if __name__ == "__main__":
    main()
