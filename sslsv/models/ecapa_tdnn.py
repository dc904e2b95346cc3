"""ECAPA-TDNN (Desplanques et al., 2020): SE-Res2Net blocks, multi-layer aggregation,
channel- and context-dependent attentive statistics pooling."""

from __future__ import annotations

import torch
from torch import nn

from sslsv.models import register_encoder


class ConvReluBn(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 1, dilation: int = 1) -> None:
        super().__init__(
            nn.Conv1d(cin, cout, kernel, dilation=dilation, padding=dilation * (kernel // 2)),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(cout),
        )


class Res2Conv(nn.Module):
    """Split channels into ``scale`` groups; each group's conv also sees the previous output."""

    def __init__(self, channels: int, kernel: int, dilation: int, scale: int) -> None:
        super().__init__()
        self.width = channels // scale
        self.convs = nn.ModuleList(
            ConvReluBn(self.width, self.width, kernel, dilation) for _ in range(scale - 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(x, self.width, dim=1)
        out, previous = [], None
        for chunk, conv in zip(chunks, self.convs):
            previous = conv(chunk if previous is None else chunk + previous)
            out.append(previous)
        out.append(chunks[-1])
        return torch.cat(out, dim=1)


class SERes2Block(nn.Module):
    def __init__(self, channels: int, kernel: int, dilation: int, scale: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvReluBn(channels, channels),
            Res2Conv(channels, kernel, dilation, scale),
            ConvReluBn(channels, channels),
        )
        self.se = nn.Sequential(
            nn.Conv1d(channels, 128, 1),
            nn.ReLU(inplace=True),
            nn.Conv1d(128, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out * self.se(out.mean(dim=2, keepdim=True))


class AttentiveStatsPooling(nn.Module):
    """Attention over time conditioned on global context; weighted mean and std."""

    def __init__(self, channels: int, bottleneck: int = 128) -> None:
        super().__init__()
        self.attention = nn.Sequential(
            nn.Conv1d(channels * 3, bottleneck, 1),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(bottleneck),
            nn.Tanh(),
            nn.Conv1d(bottleneck, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[2]
        mean = x.mean(dim=2, keepdim=True)
        std = torch.sqrt(x.var(dim=2, keepdim=True, unbiased=False).clamp(min=1e-5))
        context = torch.cat([x, mean.expand(-1, -1, frames), std.expand(-1, -1, frames)], dim=1)
        weights = torch.softmax(self.attention(context), dim=2)
        mu = (x * weights).sum(dim=2)
        sigma = torch.sqrt((((x**2) * weights).sum(dim=2) - mu**2).clamp(min=1e-5))
        return torch.cat([mu, sigma], dim=1)


@register_encoder("ecapa_tdnn")
class EcapaTdnn(nn.Module):
    """Input (B, n_mels, T) normalised log-mels; output (B, embed_dim)."""

    def __init__(self, n_mels: int = 40, channels: int = 512, embed_dim: int = 192) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.stem = ConvReluBn(n_mels, channels, kernel=5)
        self.blocks = nn.ModuleList(SERes2Block(channels, 3, d) for d in (2, 3, 4))
        self.aggregate = ConvReluBn(3 * channels, 1536)
        self.pool = AttentiveStatsPooling(1536)
        self.head = nn.Sequential(nn.BatchNorm1d(3072), nn.Linear(3072, embed_dim))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.stem(feats)
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return self.head(self.pool(self.aggregate(torch.cat(outputs, dim=1))))
