"""NT-Xent-AM against a direct float64 loop over anchors of its definition."""

import math

import pytest
import torch

from sslsv.losses import margin_at, nt_xent_am


def reference_loss(z1, z2, scale, margin, symmetric):
    """Plain per-anchor loop of loss_i = -log(e^{s(cos_pos - m)} / (that + sum_neg e^{s cos}))."""

    def unit(v):
        norm = math.sqrt(sum(x * x for x in v))
        return [x / norm for x in v]

    z1, z2 = [unit(v) for v in z1.tolist()], [unit(v) for v in z2.tolist()]
    n = len(z1)

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b))

    anchors = []  # (anchor, positive, negatives)
    for i in range(n):
        if symmetric:
            others = [z1[j] for j in range(n) if j != i] + [z2[j] for j in range(n) if j != i]
            anchors.append((z1[i], z2[i], others))
            anchors.append((z2[i], z1[i], others))
        else:
            anchors.append((z1[i], z2[i], [z2[j] for j in range(n) if j != i]))
    total = 0.0
    for a, p, negatives in anchors:
        pos = math.exp(scale * (cos(a, p) - margin))
        neg = sum(math.exp(scale * cos(a, q)) for q in negatives)
        total += -math.log(pos / (pos + neg))
    return total / len(anchors)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("margin", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("scale", [10.0, 30.0])
def test_matches_definition(symmetric, margin, scale):
    g = torch.Generator().manual_seed(int(scale * 10 + margin * 100 + symmetric))
    z1 = torch.randn(7, 5, generator=g, dtype=torch.float64)
    z2 = z1 + 0.7 * torch.randn(7, 5, generator=g, dtype=torch.float64)
    got, accuracy = nt_xent_am(z1, z2, scale=scale, margin=margin, symmetric=symmetric)
    assert got.dim() == 0 and accuracy.dim() == 0 and 0 <= float(accuracy) <= 1
    assert got.item() == pytest.approx(reference_loss(z1, z2, scale, margin, symmetric), abs=1e-6)


def test_margin_raises_loss_and_zero_margin_is_ntxent():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    assert nt_xent_am(z1, z2, margin=0.2)[0] > nt_xent_am(z1, z2, margin=0.0)[0]
    # The accuracy is that of the positives without margin: the margin does not change it.
    assert nt_xent_am(z1, z2, margin=0.2)[1] == nt_xent_am(z1, z2, margin=0.0)[1]


@pytest.mark.parametrize("symmetric", [True, False])
def test_gradcheck(symmetric):
    g = torch.Generator().manual_seed(1)
    z1 = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b: nt_xent_am(a, b, scale=10.0, margin=0.1, symmetric=symmetric)[0], (z1, z2)
    )


def test_margin_warmup():
    assert margin_at(0.0, 0.1, 0.2) == 0.0
    assert margin_at(0.1, 0.1, 0.2) == pytest.approx(0.05)
    assert margin_at(0.5, 0.1, 0.2) == pytest.approx(0.1)
    assert margin_at(0.0, 0.1, 0.0) == 0.1
