"""The network of the paper: M x [3x3 conv, ReLU, BatchNorm], 1x1 conv, BatchNorm."""

from __future__ import annotations

import math

import torch
from torch import nn


class SegmentationNet(nn.Module):
    """Fully convolutional feature extractor with a normalised 1x1 classifier.

    ``n_conv`` blocks of [3x3 conv with ``n_channels`` filters, ReLU, BatchNorm], then a
    1x1 conv to ``n_channels`` responses and a BatchNorm over them: the intra-axis
    normalisation (Sec. 2.3) that keeps every response in play so that the argmax does not
    collapse to one label at once.

    With ``n_runs > 1`` the module holds that many independent networks side by side
    (grouped convolutions: no weight is shared and no gradient crosses between them), so one
    forward pass trains them all; the responses of network ``r`` are channels
    ``r * n_channels`` to ``(r + 1) * n_channels - 1``.
    """

    def __init__(self, in_channels: int, n_channels: int, n_conv: int, n_runs: int = 1) -> None:
        super().__init__()
        self.n_runs = n_runs
        width = n_channels * n_runs
        layers: list[nn.Module] = []
        for block in range(n_conv):
            # The first conv sees the same image for every network: no groups needed there.
            first = block == 0
            groups = 1 if first else n_runs
            layers += [
                nn.Conv2d(in_channels if first else width, width, 3, padding=1, groups=groups),
                nn.ReLU(inplace=True),
                nn.BatchNorm2d(width),
            ]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(width, width, 1, groups=n_runs)
        self.response_norm = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.response_norm(self.classifier(self.features(x)))

    def reset_parameters(self, generators: list[torch.Generator] | None = None) -> None:
        """Xavier-uniform weights (as in the paper), PyTorch's default bias range.

        Network ``r`` draws its weights from ``generators[r]`` in the order a single network
        would, so it starts exactly as a one-network model seeded the same way.
        """
        for run in range(self.n_runs):
            generator = None if generators is None else generators[run]
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    size = module.out_channels // self.n_runs
                    rows = slice(run * size, (run + 1) * size)
                    weight, bias = module.weight[rows], module.bias[rows]
                    with torch.no_grad():
                        nn.init.xavier_uniform_(weight, generator=generator)
                        bound = 1.0 / math.sqrt(weight[0].numel())
                        nn.init.uniform_(bias, -bound, bound, generator=generator)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()
