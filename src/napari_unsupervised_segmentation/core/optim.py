"""Stochastic gradient descent with momentum, written out on the parameters.

``torch.optim`` imports ``torch._dynamo`` when an optimiser is created, and with the CUDA
build of torch that loads triton, whose bundled LLVM crashes a process in which Mesa's
OpenGL driver (napari's canvas on many Linux desktops) has already loaded its own. This
step is the same arithmetic as ``torch.optim.SGD(params, lr, momentum)`` (no dampening,
weight decay or Nesterov) and imports nothing beyond ``torch``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import torch


class Optimizer(Protocol):
    """What the training loop needs of an optimiser (``torch.optim.SGD`` also fits)."""

    def zero_grad(self, set_to_none: bool = True) -> None: ...

    def step(self) -> None: ...


class MomentumSGD:
    """``p -= lr * v`` with ``v = momentum * v + grad`` (``v = grad`` at the first step)."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, momentum: float = 0.0) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr = lr
        self.momentum = momentum
        self._velocity: list[torch.Tensor | None] = [None] * len(self.params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients of the last backward pass."""
        for param in self.params:
            if set_to_none:
                param.grad = None
            elif param.grad is not None:
                param.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        for index, param in enumerate(self.params):
            grad = param.grad
            if grad is None:
                continue
            if self.momentum:
                velocity = self._velocity[index]
                if velocity is None:
                    velocity = self._velocity[index] = grad.detach().clone()
                else:
                    velocity.mul_(self.momentum).add_(grad)
                grad = velocity
            param.add_(grad, alpha=-self.lr)
