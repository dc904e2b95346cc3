"""Encoders: output shapes and pinned parameter counts."""

import pytest
import torch

from sslsv.models import build_encoder


@pytest.mark.parametrize(
    "name,args,params,dim",
    [
        ("fast_resnet34", {}, 1_437_366, 512),
        ("ecapa_tdnn", {"channels": 512}, 6_091_648, 192),
        ("ecapa_tdnn", {"channels": 1024}, 14_455_616, 192),
    ],
)
def test_parameter_counts(name, args, params, dim):
    encoder = build_encoder(name, 40, args)
    assert sum(p.numel() for p in encoder.parameters()) == params
    encoder.eval()
    with torch.no_grad():
        assert encoder(torch.randn(2, 40, 123)).shape == (2, dim)


def test_unknown_encoder_and_argument_are_named():
    with pytest.raises(ValueError, match="nope"):
        build_encoder("nope", 40, {})
    with pytest.raises(ValueError, match="widths"):
        build_encoder("resnet", 40, {"widths": [1]})


def test_ecapa_pooling_is_finite_for_constant_channels():
    """The weighted variance E[x^2] - mu^2 can round below 0 (constant channels); the square
    root must see it clamped (it was clamped after the root: NaN embeddings)."""
    from sslsv.models.ecapa_tdnn import AttentiveStatsPooling

    torch.manual_seed(0)
    pool = AttentiveStatsPooling(8).eval()
    x = torch.full((2, 8, 50), 3.3) + torch.linspace(0, 1, 8)[None, :, None]
    with torch.no_grad():
        out = pool(x)
    assert torch.isfinite(out).all()
    assert torch.allclose(out[:, 8:], torch.full((2, 8), 1e-5**0.5))
