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
    """

    def __init__(self, in_channels: int, n_channels: int, n_conv: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for block in range(n_conv):
            layers += [
                nn.Conv2d(in_channels if block == 0 else n_channels, n_channels, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.BatchNorm2d(n_channels),
            ]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(n_channels, n_channels, 1)
        self.response_norm = nn.BatchNorm2d(n_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.response_norm(self.classifier(self.features(x)))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Xavier-uniform weights (as in the paper), PyTorch's default bias range."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight, generator=generator)
                fan_in = module.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in)
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()
