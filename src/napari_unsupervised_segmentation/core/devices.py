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

    ``fp32``: plain float32 (on CUDA, PyTorch's default lets cuDNN convolutions use
    TensorFloat-32: turned off here). ``tf32``: float32 storage with TensorFloat-32 matmuls
    and convolutions on CUDA (no effect elsewhere). ``bf16``: autocast to bfloat16, which
    recent CPUs (AVX512-BF16, AMX) and GPUs compute fast.
    """
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    elif device.type == "cuda":
        with _cuda_tf32(precision == "tf32"):
            yield
    else:
        yield


@contextlib.contextmanager
def _cuda_tf32(enabled: bool) -> Iterator[None]:
    """TensorFloat-32 in CUDA convolutions and matmuls on or off; restored afterwards.

    PyTorch 2.9 and later keep per-operator flags (``fp32_precision``) and raise when the
    legacy ``allow_tf32`` switches are used while those differ (a user may have set them),
    so the new flags are used where they exist.
    """
    conv = getattr(torch.backends.cudnn, "conv", None)
    matmul = torch.backends.cuda.matmul
    if conv is not None and hasattr(conv, "fp32_precision"):
        old = (conv.fp32_precision, matmul.fp32_precision)
        conv.fp32_precision = matmul.fp32_precision = "tf32" if enabled else "ieee"
        try:
            yield
        finally:
            conv.fp32_precision, matmul.fp32_precision = old
        return
    legacy = (matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = legacy


@contextlib.contextmanager
def autograd_enabled() -> Iterator[None]:
    """Gradients on and inference mode off, whatever the caller chose: a script may well
    call :func:`~napari_unsupervised_segmentation.segment` inside ``torch.no_grad()``.
    Enter it around each piece of training, never across a ``yield`` (the caller's mode
    must hold while a generator is paused)."""
    with torch.inference_mode(False), torch.enable_grad():
        yield
