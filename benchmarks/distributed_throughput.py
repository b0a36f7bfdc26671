"""Throughput of labelling files with a saved model on a LocalCluster: 1 worker against 2.

Writes ``--images`` synthetic grayscale TIFFs and a model trained on one of them, labels them
in one process as the command line does (``--model``, no ``--dask``), then with
:func:`napari_unsupervised_segmentation.distributed.apply_model` on a LocalCluster of one and
of two single-threaded worker processes. Prints the images per second of each, the ratio of
2 workers to 1, and checks that every output is byte for byte the one-process output with
torch on one thread, as on each worker (torch on more threads adds up a pixel's sums in
another order, which can flip a near tie between two classes: the count is printed).
The clusters are started and warmed up (torch imported, the model on the workers) before
the clock starts: the figures are the steady throughput of a run of many files.

    python benchmarks/distributed_throughput.py            # 40 images of 768 x 768
    python benchmarks/distributed_throughput.py --images 8 --size 256
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from napari_unsupervised_segmentation import distributed as scale
from napari_unsupervised_segmentation import fit
from napari_unsupervised_segmentation.cli import main
from napari_unsupervised_segmentation.core.params import SegmentationParams


def synthetic(seed: int, size: int) -> np.ndarray:
    """Blobs and waves with noise: a few classes' worth of texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    wave = np.sin(x / (6 + seed % 7)) + np.cos(y / (9 + seed % 5))
    blobs = sum(
        np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r**2))
        for cx, cy, r in rng.uniform([0, 0, size / 40], [size, size, size / 12], (12, 3))
    )
    image = wave * 40 + blobs * 90 + 90 + rng.normal(0, 8, (size, size))
    return image.clip(0, 255).astype(np.uint8)


def outputs(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def main_benchmark() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--size", type=int, default=768)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        files = []
        for index in range(options.images):
            files.append(root / "in" / f"image{index:03d}.tif")
            files[-1].parent.mkdir(exist_ok=True)
            tifffile.imwrite(files[-1], synthetic(index, options.size))
        params = SegmentationParams(max_iter=20, min_classes=0, max_classes=16)
        model = fit(synthetic(0, 256), params).save(root / "bench.model")

        def plain_run(out: Path, threads: int) -> float:
            argv = [*map(str, files), "--model", str(model), "--out", str(out), "--quiet"]
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            started = time.perf_counter()
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # its summary lines
                    assert main(argv) == 0
            finally:
                torch.set_num_threads(before)
            return time.perf_counter() - started

        # torch on one thread, as on each worker: the same sums in the same order
        plain_run(root / "plain", 1)
        plain = outputs(root / "plain")
        plain_seconds = plain_run(root / "plain_all_cores", torch.get_num_threads())
        differing = sum(
            int(np.count_nonzero(tifffile.imread(root / "plain" / name) != tifffile.imread(path)))
            for name, path in ((p.name, p) for p in sorted((root / "plain_all_cores").iterdir()))
        )

        rates = {}
        for workers in (1, 2):
            client = scale.connect("local", n_workers=workers)
            try:
                client.wait_for_workers(workers)
                scale.apply_model(files[:workers], model, root / f"warm{workers}", client=client)
                out = root / f"workers{workers}"
                started = time.perf_counter()
                results = scale.apply_model(files, model, out, client=client)
                seconds = time.perf_counter() - started
            finally:
                scale.close(client)
            assert {r.status for r in results} == {"written"}, results
            same = outputs(out) == plain
            rates[workers] = options.images / seconds
            print(f"{workers} worker(s): {options.images} images in {seconds:.2f} s, "
                  f"{rates[workers]:.2f} images/s; outputs as one process's: {same}")  # fmt: skip
            assert same
        print(f"one process (the command line, torch on all cores): {plain_seconds:.2f} s, "
              f"{options.images / plain_seconds:.2f} images/s; pixels whose label differs from "
              f"torch on one thread (float sums in another order): {differing} of "
              f"{options.images * options.size**2}")  # fmt: skip
        print(f"2 workers / 1 worker: {rates[2] / rates[1]:.2f}x")
        size = f"{options.size} x {options.size}"
        print(f"machine: {platform.machine()}, {scale.local_workers()} cores; "
              f"{options.images} images of {size}, 16 classes")  # fmt: skip


if __name__ == "__main__":
    main_benchmark()
