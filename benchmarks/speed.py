"""Seconds per iteration: this engine vs. the public demo's loop vs. the bare network step.

Run from the repository root::

    python benchmarks/speed.py                      # 481x321 BSDS-sized image, CPU
    python benchmarks/speed.py --device cuda --precision tf32 bf16
    python benchmarks/speed.py --memory             # peak memory on a 1024x1024 RGB image

All three loops run in this one process on the same image with the same settings, so the
printed ratios compare like with like. (a) is :func:`iter_segment`; (b) re-implements the
loop of the public demo of Kanezaki (2018) as published: labels copied to the host every
iteration and a Python loop over superpixels; (c) is the network's forward, loss, backward
and SGD step alone, against a fixed target.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from napari_unsupervised_segmentation.core import PRESETS, iter_segment
from napari_unsupervised_segmentation.core.devices import precision_context, resolve_device
from napari_unsupervised_segmentation.core.normalize import prepare_image
from napari_unsupervised_segmentation.core.refine import compute_superpixels
from napari_unsupervised_segmentation.core.train import build_model, image_tensor


def bsds_sized_image() -> np.ndarray:
    """A 321x481 RGB photo: a crop of scikit-image's bundled coffee (no download)."""
    from skimage import data

    return data.coffee()[:321, :481]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_iterations(
    steps: Iterator[object], n: int, warmup: int, device: torch.device
) -> list[float]:
    """Seconds between consecutive items of ``steps`` (after ``warmup`` items)."""
    times = []
    for _ in range(warmup):
        next(steps)
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(n):
        next(steps)
        _synchronize(device)
        now = time.perf_counter()
        times.append(now - start)
        start = now
    return times


def engine_steps(image: np.ndarray, settings) -> Iterator[object]:
    """(a) This engine, never stopping early."""
    return iter_segment(image, settings, channel_axis=-1)


def demo_steps(image: np.ndarray, settings) -> Iterator[None]:
    """(b) The public demo's loop, re-implemented: host labels, Python loop over superpixels."""
    device = resolve_device(settings.device)
    prepared = prepare_image(image, channel_axis=-1)
    superpixels = compute_superpixels(
        prepared, settings.n_superpixels, settings.compactness
    ).ravel()
    members = [np.where(superpixels == s)[0] for s in np.unique(superpixels)]
    model = build_model(3, settings, device).to(memory_format=torch.contiguous_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum)
    data = torch.from_numpy(prepared.channels.transpose(2, 0, 1)[None].copy()).to(device)
    while True:
        optimizer.zero_grad()
        output = model(data)[0].permute(1, 2, 0).contiguous().view(-1, settings.max_classes)
        _, target = torch.max(output, 1)
        target = target.data.cpu().numpy()
        len(np.unique(target))  # the demo's label count
        for inside in members:
            values = np.unique(target[inside])
            counts = np.array([np.count_nonzero(target[inside] == v) for v in values])
            target[inside] = values[np.argmax(counts)]
        loss = F.cross_entropy(output, torch.from_numpy(target).to(device))
        loss.backward()
        optimizer.step()
        yield None


def bare_steps(image: np.ndarray, settings) -> Iterator[None]:
    """(c) Only the network: forward, cross-entropy on a fixed target, backward, SGD step."""
    device = resolve_device(settings.device)
    prepared = prepare_image(image, channel_axis=-1)
    model = build_model(3, settings, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum)
    data = image_tensor(prepared, device)
    target = torch.randint(0, settings.max_classes, (1, *prepared.spatial_shape), device=device)
    while True:
        with precision_context(settings.precision, device):
            loss = F.cross_entropy(model(data).float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        yield None


def median_seconds(make: Callable[[], Iterator[object]], n: int, warmup: int, device) -> float:
    return statistics.median(time_iterations(make(), n, warmup, device))


def machine() -> str:
    """CPU model and thread count, or the GPU name."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    text = f"{cpu}, {torch.get_num_threads()} torch threads"
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name()}"
    return text


def run_speed(args: argparse.Namespace) -> None:
    image = bsds_sized_image()
    base = PRESETS[args.preset].replace(device=args.device, min_classes=0, max_iter=10**6)
    device = resolve_device(base.device)
    print(
        f"machine: {machine()}; torch {torch.__version__}; "
        f"image {image.shape}; preset {args.preset}"
    )
    demo = median_seconds(lambda: demo_steps(image, base), args.n, args.warmup, device)
    print(f"(b) demo loop, fp32: {demo * 1000:.1f} ms/iteration")
    for precision in args.precision:
        settings = base.replace(precision=precision)
        engine = median_seconds(
            lambda s=settings: engine_steps(image, s), args.n, args.warmup, device
        )
        bare = median_seconds(lambda s=settings: bare_steps(image, s), args.n, args.warmup, device)
        print(
            f"{precision}: (a) engine {engine * 1000:.1f} ms, "
            f"(c) bare network {bare * 1000:.1f} ms; "
            f"(b)/(a) = {demo / engine:.2f}, (a)/(c) = {engine / bare:.3f}"
        )


def run_memory(args: argparse.Namespace) -> None:
    """Peak RSS (and GPU memory) of a few iterations on a 1024x1024 RGB image, in a new process."""
    code = f"""
import resource, numpy as np, torch
from napari_unsupervised_segmentation import segment
image = np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
segment(image, {args.preset!r}, channel_axis=-1, max_iter=3, min_classes=0,
        device={args.device!r}, precision={args.precision[0]!r})
gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, gpu)
"""
    output = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    )
    rss, gpu = (float(v) for v in output.stdout.split())
    print(f"machine: {machine()}")
    print(
        f"1024x1024 RGB, preset {args.preset}, {args.precision[0]}: peak RSS {rss:.0f} MiB", end=""
    )
    print(f", peak GPU memory {gpu:.0f} MiB" if gpu else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("-n", type=int, default=7, help="timed iterations per loop")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--memory", action="store_true", help="measure peak memory instead")
    args = parser.parse_args()
    (run_memory if args.memory else run_speed)(args)


if __name__ == "__main__":
    main()
