"""Choosing the torch device and the numeric precision."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``'auto'``, ``'cpu'``, ``'cuda'``, ``'cuda:N'`` or ``'mps'`` into an available device.

    ``'auto'`` picks CUDA, then Apple MPS, then the CPU. A device that is not present here
    raises ValueError saying what is available, instead of failing later inside torch.
    """
    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(
            f"unknown device {name!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from error
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = device.index or 0
        if index >= count:
            raise ValueError(
                f"device {name!r} is not available: this machine has {count} CUDA device(s); "
                "use device='auto' or 'cpu'"
            )
        return device
    if device.type == "mps":
        if not _mps_available():
            raise ValueError("device 'mps' is not available here; use device='auto' or 'cpu'")
        return device
    raise ValueError(f"unsupported device {name!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")


def available_devices() -> list[str]:
    """Names of the devices present here, for choices in the GUI and the CLI."""
    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(1, torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return names


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """Run the enclosed torch code in ``precision``; global flags are restored afterwards.

    ``fp32``: plain float32. ``tf32``: float32 storage with TensorFloat-32 matmuls and
    convolutions on CUDA (no effect elsewhere). ``bf16``: autocast to bfloat16, which recent
    CPUs (AVX512-BF16, AMX) and GPUs compute fast.
    """
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
        return
    if precision == "tf32" and device.type == "cuda":
        old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
        return
    yield
