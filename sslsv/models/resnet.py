"""Thin ResNet with squeeze-excitation and self-attentive pooling.

``fast_resnet34`` is the "Fast ResNet-34" of the speaker-verification literature used by the
paper: 16-32-64-128 channels, 3-4-6-3 basic SE blocks, time resolution kept in the first and
last stages, frequency pooled by averaging, self-attentive pooling over time, 512-d output
(about 1.4 M parameters).
"""

from __future__ import annotations

import torch
from torch import nn

from sslsv.models import register_encoder


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, max(1, channels // reduction)),
            nn.ReLU(inplace=True),
            nn.Linear(max(1, channels // reduction), channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=(2, 3)))[:, :, None, None]


class SEBasicBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, stride: int | tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.se = SqueezeExcitation(channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return self.relu(out + self.shortcut(x))


class SelfAttentivePooling(nn.Module):
    """Attention-weighted mean over time of (B, T, C) frames."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(channels, channels)
        self.context = nn.Linear(channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.context(torch.tanh(self.proj(x))), dim=1)
        return (x * weights).sum(dim=1)


@register_encoder("resnet")
class ThinResNet(nn.Module):
    """Input (B, n_mels, T) normalised log-mels; output (B, embed_dim)."""

    def __init__(
        self,
        n_mels: int = 40,
        channels: tuple[int, ...] | list[int] = (16, 32, 64, 128),
        blocks: tuple[int, ...] | list[int] = (3, 4, 6, 3),
        embed_dim: int = 512,
        stem_stride: tuple[int, int] | list[int] = (2, 1),
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        # (frequency, time) stride of the first convolution; (2, 2) quarters the cost of
        # everything after it, for CPU-sized models.
        self.stem = nn.Sequential(
            nn.Conv2d(1, channels[0], 7, stride=tuple(stem_stride), padding=3, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
        )
        strides = [(1, 1)] + [(2, 2)] * (len(channels) - 2) + [(1, 1)]
        layers, in_channels = [], channels[0]
        for width, count, stride in zip(channels, blocks, strides):
            for i in range(count):
                layers.append(SEBasicBlock(in_channels, width, stride if i == 0 else 1))
                in_channels = width
        self.layers = nn.Sequential(*layers)
        self.pool = SelfAttentivePooling(in_channels)
        self.fc = nn.Linear(in_channels, embed_dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(feats.unsqueeze(1)))  # (B, C, F', T')
        x = x.mean(dim=2).transpose(1, 2)  # frequency averaged: (B, T', C)
        return self.fc(self.pool(x))


@register_encoder("fast_resnet34")
class FastResNet34(ThinResNet):
    def __init__(self, n_mels: int = 40, embed_dim: int = 512) -> None:
        super().__init__(n_mels, (16, 32, 64, 128), (3, 4, 6, 3), embed_dim)
