"""The network of the paper: M x [3x3 conv, ReLU, BatchNorm], 1x1 conv, BatchNorm.

The same network in 3D (3x3x3 convolutions, BatchNorm3d) segments volumes.
"""

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

    ``ndim`` is the number of spatial axes: 2 for images ``(N, C, H, W)``, 3 for volumes
    ``(N, C, D, H, W)`` (3x3x3 convolutions, BatchNorm3d).
    """

    def __init__(self, in_channels: int, n_channels: int, n_conv: int, ndim: int = 2) -> None:
        super().__init__()
        if ndim not in (2, 3):
            raise ValueError(f"the network has 2 or 3 spatial axes, not {ndim!r}")
        self.ndim = ndim
        conv = nn.Conv2d if ndim == 2 else nn.Conv3d
        batch_norm = nn.BatchNorm2d if ndim == 2 else nn.BatchNorm3d
        layers: list[nn.Module] = []
        for block in range(n_conv):
            layers += [
                conv(in_channels if block == 0 else n_channels, n_channels, 3, padding=1),
                nn.ReLU(inplace=True),
                batch_norm(n_channels),
            ]
        self.features = nn.Sequential(*layers)
        self.classifier = conv(n_channels, n_channels, 1)
        self.response_norm = batch_norm(n_channels)

    @property
    def memory_format(self) -> torch.memory_format:
        """Channels-last for the network's input: the faster layout on the CPUs measured."""
        return torch.channels_last if self.ndim == 2 else torch.channels_last_3d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.response_norm(self.classifier(self.features(x)))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Xavier-uniform weights (as in the paper), PyTorch's default bias range."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Conv3d):
                nn.init.xavier_uniform_(module.weight, generator=generator)
                fan_in = module.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in)
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)
            elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm3d):
                module.reset_parameters()
