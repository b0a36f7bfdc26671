"""Time and peak memory of training on a 4096 x 4096 colour photo and of labelling it.

Run from the repository root::

    python benchmarks/large_photo.py                   # default preset, CPU
    python benchmarks/large_photo.py --side 2048 --max-iter 20

The photo is a mosaic of BSDS500 photos (``../shared/data/bsds500``, each enlarged twice)
or, without them, of scikit-image's bundled coffee photo; it is written to a temporary
``.npy`` file that each step opens as a memory map, so that the steps read it as a large
file on disk is read. Each step (``fit``, then ``predict`` with the saved model) runs in
its own process, which reports its seconds, its CPU seconds (all threads, the process's
start included: on a busy machine, divided by the threads, about the time it would take
unloaded) and its peak resident memory (``ru_maxrss``):
the figures of one step are not mixed with the other's or with building the photo.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
BSDS = REPO_ROOT.parent / "shared" / "data" / "bsds500" / "val"
#: Peak resident memory each step should stay within.
MEMORY_BUDGET = 4 * 1024**3


def mosaic(side: int) -> np.ndarray:
    """A ``side`` x ``side`` RGB uint8 mosaic of landscape photos enlarged twice (bilinear)."""
    from skimage import data, io, transform

    paths = sorted(BSDS.glob("*.jpg"))
    photos = (io.imread(path) for path in paths) if paths else iter([data.coffee()] * 1000)
    image = np.zeros((side, side, 3), np.uint8)
    top = 0
    while top < side:
        left, row_height = 0, 0
        while left < side:
            photo = next(photos)
            if photo.shape[0] > photo.shape[1]:  # portrait: laid on its side, as the others
                photo = photo.transpose(1, 0, 2)
            big = transform.rescale(photo, 2, order=1, channel_axis=-1, preserve_range=True)
            big = big[: side - top, : side - left].astype(np.uint8)
            image[top : top + big.shape[0], left : left + big.shape[1]] = big
            left += big.shape[1]
            row_height = max(row_height, big.shape[0])
        top += row_height
    return image


def run_step(step: str, image_path: Path, model_path: Path, args: argparse.Namespace) -> dict:
    """Run one step in a fresh process and return what it reports."""
    command = [sys.executable, __file__, "--step", step, "--image", str(image_path)]
    command += ["--model", str(model_path), "--preset", args.preset]
    if args.max_iter:
        command += ["--max-iter", str(args.max_iter)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"{step} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def child(args: argparse.Namespace) -> None:
    """One step, in this process: print its seconds and peak memory as JSON."""
    from napari_unsupervised_segmentation import fit, load_model

    image = np.load(args.image, mmap_mode="r")
    start = time.perf_counter()
    report: dict = {}
    if args.step == "fit":
        overrides = {"max_iter": args.max_iter} if args.max_iter else {}
        model = fit(image, args.preset, channel_axis=-1, **overrides)
        model.save(args.model)
    else:
        model = load_model(args.model)
        labels = model.predict(image, channel_axis=-1)
        report["labels"] = int(len(np.unique(labels)))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report["seconds"] = time.perf_counter() - start
    report["cpu_seconds"] = usage.ru_utime + usage.ru_stime  # the whole process, all threads
    report["peak_bytes"] = usage.ru_maxrss * 1024  # Linux: KiB
    print(json.dumps(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=4096, help="the photo's side in pixels")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--max-iter", type=int, default=0, help="0: the preset's")
    parser.add_argument("--step", choices=["fit", "predict"], help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        child(args)
        return
    print(f"{os.cpu_count()} CPUs, load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as folder:
        image_path, model_path = Path(folder) / "photo.npy", Path(folder) / "photo.model"
        np.save(image_path, mosaic(args.side))
        print(f"{args.side} x {args.side} RGB photo, preset {args.preset!r}")
        print(f"{'step':>8} {'seconds':>8} {'CPU s':>8} {'peak MiB':>9} {'of 4 GiB':>9}")
        for step in ("fit", "predict"):
            report = run_step(step, image_path, model_path, args)
            peak = report["peak_bytes"]
            print(
                f"{step:>8} {report['seconds']:>8.1f} {report['cpu_seconds']:>8.1f} "
                f"{peak / 2**20:>9.0f} {peak / MEMORY_BUDGET:>9.2f}"
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
