"""Shared test set-up. torch is imported before any Qt binding (needed on Windows)."""

import torch  # noqa: F401  (import order matters: torch before Qt)
