"""Choosing the torch device and the numeric precision."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

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
                "use 'auto' or 'cpu'"
            )
        return device
    if device.type == "mps":
        if not _mps_available():
            raise ValueError("device 'mps' is not available here; use 'auto' or 'cpu'")
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
    recent CPUs (AVX512-BF16, AMX) and GPUs compute fast. For training, where the backward
    pass must not autocast but must keep the flags, use :func:`precision_flags` around the
    forward and backward passes and :func:`autocast_for` around the forward pass only.
    """
    with precision_flags(precision, device), autocast_for(precision, device):
        yield


@contextlib.contextmanager
def precision_flags(precision: str, device: torch.device) -> Iterator[None]:
    """The TensorFloat-32 flags of ``precision`` on CUDA (see :func:`precision_context`)."""
    if device.type == "cuda" and precision in ("fp32", "tf32"):
        with _cuda_tf32(precision == "tf32"):
            yield
    else:
        yield


@contextlib.contextmanager
def autocast_for(precision: str, device: torch.device) -> Iterator[None]:
    """Autocast to bfloat16 for ``bf16``; nothing otherwise."""
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


#: PyTorch's per-operator TF32 flags (2.9 and later) of the operators the network uses.
_FP32_PRECISION_FLAGS = (("cudnn", "conv"), ("cuda", "matmul"))


_TF32_LOCK = threading.Lock()
_tf32_open: list[tuple[object, bool]] = []  # (token, enabled) of the contexts open now
_tf32_first_found: tuple[Any, ...] = ()


@contextlib.contextmanager
def _cuda_tf32(enabled: bool) -> Iterator[None]:
    """TensorFloat-32 in CUDA convolutions and matmuls on or off; restored afterwards.

    The flags are global to the process, and two runs may train at once (two viewers'
    widgets): the latest context still open sets them, so one leaving never changes them
    under another, and the last to leave restores what the first found, so the user's own
    flags survive any interleaving (and nesting in one thread).
    """
    global _tf32_first_found
    token = object()
    with _TF32_LOCK:
        if not _tf32_open:
            _tf32_first_found = _read_tf32()
        _tf32_open.append((token, enabled))
        _write_tf32(enabled)
    try:
        yield
    finally:
        with _TF32_LOCK:
            _tf32_open.remove(next(entry for entry in _tf32_open if entry[0] is token))
            if _tf32_open:
                _write_tf32(_tf32_open[-1][1])
            else:
                _write_tf32_state(_tf32_first_found)


def _new_tf32_flags() -> list[Any] | None:
    """PyTorch 2.9 and later keep per-operator flags (``fp32_precision``) and raise when the
    legacy ``allow_tf32`` switches are used while those differ (a user may have set them),
    so the new flags are used where they exist."""
    flags = [getattr(getattr(torch.backends, a), b, None) for a, b in _FP32_PRECISION_FLAGS]
    if all(flag is not None and hasattr(flag, "fp32_precision") for flag in flags):
        return flags
    return None


def _read_tf32() -> tuple[Any, ...]:
    flags = _new_tf32_flags()
    if flags is not None:
        return tuple(flag.fp32_precision for flag in flags)
    return (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)


def _write_tf32(enabled: bool) -> None:
    if _new_tf32_flags() is not None:
        _write_tf32_state(("tf32" if enabled else "ieee",) * len(_FP32_PRECISION_FLAGS))
    else:
        _write_tf32_state((enabled, enabled))


def _write_tf32_state(state: tuple[Any, ...]) -> None:
    flags = _new_tf32_flags()
    if flags is not None:
        for flag, value in zip(flags, state, strict=True):
            flag.fp32_precision = value
    else:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = state


@contextlib.contextmanager
def autograd_enabled() -> Iterator[None]:
    """Gradients on and inference mode off, whatever the caller chose: a script may well
    call :func:`~napari_unsupervised_segmentation.segment` inside ``torch.no_grad()``.
    Enter it around each piece of training, never across a ``yield`` (the caller's mode
    must hold while a generator is paused)."""
    with torch.inference_mode(False), torch.enable_grad():
        yield
