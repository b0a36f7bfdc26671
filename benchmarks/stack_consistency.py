"""Does one class keep one label in every plane? One model fitted on a stack against ``segment``
run on each plane.

A synthetic uint16 stack holds ``--classes`` known classes in random smooth regions that
differ from plane to plane; every plane has its own gain, offset (brightness) and noise.
Predicted labels are matched to the true classes once for the whole stack (Hungarian
matching, ``scipy.optimize.linear_sum_assignment``, on the pixel counts of every label and
class): a pixel agrees when its label is matched to its class. A label that means one class
in one plane and another elsewhere can be matched to only one of them, so the score
measures both the segmentation and the consistency of its labels across planes.

Run from the repository root::

    python benchmarks/stack_consistency.py                   # 8 planes of 256 x 256
    python benchmarks/stack_consistency.py --planes 4 --size 160 --param max_iter=40

It prints the agreement and seconds of ``fit`` once on the stack then ``predict`` on it,
and of ``segment`` on each plane; the labels go to the ignored
``benchmarks/results/stack_consistency/``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "src"))

#: Mean intensity of each class before a plane's gain and offset.
CLASS_LEVELS = (700.0, 1900.0, 3300.0, 4700.0)
#: Ranges of each plane's gain, offset and noise (standard deviation).
GAIN, OFFSET, NOISE = (0.9, 1.1), (-100.0, 100.0), (50.0, 200.0)


def synthetic_stack(
    n_planes: int, size: int, n_classes: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(stack, truth)``: uint16 planes and their classes 0..n_classes-1."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    truth = np.empty((n_planes, size, size), np.int64)
    stack = np.empty((n_planes, size, size), np.float64)
    levels = np.asarray(CLASS_LEVELS[:n_classes])
    for z in range(n_planes):
        field = ndimage.gaussian_filter(rng.normal(size=(size, size)), size / 8)
        edges = np.quantile(field, np.linspace(0, 1, n_classes + 1)[1:-1])
        truth[z] = np.searchsorted(edges, field)
        gain, offset = rng.uniform(*GAIN), rng.uniform(*OFFSET)
        stack[z] = (
            levels[truth[z]] * gain + offset + rng.normal(0, rng.uniform(*NOISE), (size, size))
        )
    return np.clip(stack, 0, 65535).astype(np.uint16), truth


def agreement(labels: np.ndarray, truth: np.ndarray, n_classes: int) -> float:
    """Share of pixels whose label is matched to their class by one Hungarian matching."""
    from scipy.optimize import linear_sum_assignment

    values, index = np.unique(labels, return_inverse=True)
    table = np.bincount(
        index.ravel() * n_classes + truth.ravel(), minlength=len(values) * n_classes
    )
    table = table.reshape(len(values), n_classes)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / truth.size)


def _agreement_words(labels: np.ndarray, truth: np.ndarray, n_classes: int) -> str:
    """How many labels a stack has and how well they agree with ``truth``: over the whole
    stack (one matching of labels to classes), and the worst and best plane (one each)."""
    per_plane = [
        agreement(plane, true, n_classes) for plane, true in zip(labels, truth, strict=True)
    ]
    return (
        f"{len(np.unique(labels))} labels, {100 * agreement(labels, truth, n_classes):.1f}% "
        f"agree (one matching per plane: {100 * min(per_plane):.1f}% to "
        f"{100 * max(per_plane):.1f}%)"
    )


def _parse_param(text: str) -> tuple[str, object]:
    import ast

    key, _, value = text.partition("=")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--planes", type=int, default=8)
    parser.add_argument("--size", type=int, default=256, help="rows and columns of a plane")
    parser.add_argument("--classes", type=int, default=3, choices=range(2, len(CLASS_LEVELS) + 1))
    parser.add_argument("--preset", default="default")
    parser.add_argument(
        "--param", action="append", default=[], help="setting=value, e.g. max_iter=40"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip segment per plane")
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "stack_consistency"
    )
    args = parser.parse_args(argv)

    from napari_unsupervised_segmentation import fit, segment

    overrides = dict(_parse_param(p) for p in args.param)
    stack, truth = synthetic_stack(args.planes, args.size, args.classes)
    args.out.mkdir(parents=True, exist_ok=True)
    print(
        f"{args.planes} planes of {args.size} x {args.size}, {args.classes} classes; preset "
        f"{args.preset!r} {overrides or ''}; load {os.getloadavg()[0]:.1f}"
    )

    started = time.perf_counter()
    model = fit(stack, args.preset, **overrides)
    fitted = time.perf_counter() - started
    labels = model.predict(stack)
    once = time.perf_counter() - started
    np.save(args.out / "fit_once.npy", labels)
    print(
        f"fit once, predict: {_agreement_words(labels, truth, args.classes)}; "
        f"{once:.1f} s ({fitted:.1f} s fitting)"
    )

    if not args.no_baseline:
        started = time.perf_counter()
        planes = np.stack([segment(plane, args.preset, **overrides) for plane in stack])
        seconds = time.perf_counter() - started
        np.save(args.out / "segment_per_plane.npy", planes)
        print(
            f"segment per plane: {_agreement_words(planes, truth, args.classes)}; {seconds:.1f} s"
        )
    print(f"load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
