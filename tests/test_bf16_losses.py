"""Under bf16 autocast the losses still see float32 logits: the similarity products and the
cross-entropy run outside autocast (sslsv.devices.full_precision). Autocast would otherwise
cast the float32 operands of a matmul back to bf16 and round every cosine by about 0.004.
CPU autocast supports bf16, so these run anywhere."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sslsv import losses
from sslsv.config.load import load_config
from sslsv.methods import StepInfo, build_method
from sslsv.methods.dino import DINOHead
from sslsv.models.embedding import EmbeddingModel


def bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def unit_rows(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_nt_xent_am_under_bf16_is_the_float32_loss():
    z1, z2 = unit_rows(16, 32, 0), unit_rows(16, 32, 1)
    want = losses.nt_xent_am(z1, z2, 30.0, 0.1)
    with bf16():
        got = losses.nt_xent_am(z1, z2, 30.0, 0.1)
    assert got[0].dtype == torch.float32
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-6)
    assert float(got[1]) == float(want[1])


def test_aam_and_dino_losses_under_bf16_are_the_float32_losses():
    cos = unit_rows(8, 16, 2) @ unit_rows(5, 16, 3).T
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    want = losses.aam_softmax_with_accuracy(cos, labels, 30.0, 0.2)
    with bf16():
        got = losses.aam_softmax_with_accuracy(cos, labels, 30.0, 0.2)
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-6)
    g = torch.Generator().manual_seed(4)
    student, teacher = torch.randn(4, 6, 20, generator=g), torch.randn(2, 6, 20, generator=g)
    center = torch.randn(20, generator=g)
    want = losses.dino_loss(student, teacher, center, 0.1, 0.04)
    with bf16():
        got = losses.dino_loss(student, teacher, center, 0.1, 0.04)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_dino_prototype_logits_are_float32_under_bf16():
    torch.manual_seed(0)
    head = DINOHead(16, 32, 8, 64)
    x = torch.randn(6, 16)
    with bf16():
        hidden = head.mlp(x)  # the MLP itself may run in bf16
        logits = head(x)
    assert logits.dtype == torch.float32
    want = F.linear(F.normalize(hidden.double(), dim=-1), F.normalize(head.prototypes.double()))
    torch.testing.assert_close(logits.double(), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", ["simclr", "moco", "classifier"])
def test_each_methods_logits_are_float32_under_bf16(monkeypatch, method):
    """The cosines that a method hands its loss, captured under bf16 autocast, are float32
    and equal (1e-6) the cosines recomputed in float64 from the same embeddings."""
    own = {
        "simclr": ["method.projector=[32]"],
        "moco": ["method.projector=[32]", "method.queue_size=16"],
        "classifier": [],
    }
    cfg = load_config(
        None,
        ["encoder.name=resnet", "encoder.args={channels: [4, 8], blocks: [1, 1], embed_dim: 16}",
         f"method.name={method}", *own[method]],
    )  # fmt: skip
    torch.manual_seed(0)
    module = build_method(cfg, EmbeddingModel(cfg), num_classes=3).eval()
    seen: list[torch.Tensor] = []
    captured: list[torch.Tensor] = []
    if method == "classifier":
        real = losses.aam_softmax_with_accuracy

        def capture(cos, *args, **kwargs):
            seen.append(cos)
            return real(cos, *args, **kwargs)

        monkeypatch.setattr("sslsv.methods.classifier.aam_softmax_with_accuracy", capture)
        forward_features = module.model.forward_features

        def keep(x):
            captured.append(forward_features(x))
            return captured[-1]

        monkeypatch.setattr(module.model, "forward_features", keep)
    else:
        real = losses.margin_logits_loss
        target = "sslsv.losses" if method == "simclr" else "sslsv.methods.moco"

        def capture(cos, *args, **kwargs):
            seen.append(cos)
            return real(cos, *args, **kwargs)

        monkeypatch.setattr(f"{target}.margin_logits_loss", capture)
    views = 1 if method == "classifier" else 2
    feats = torch.randn(4, views, 40, 50, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 0])
    with bf16():
        module(feats, labels, StepInfo())
    assert seen and all(cos.dtype == torch.float32 for cos in seen)
    if method == "classifier":
        embeddings = captured[0].double()
        want = F.normalize(embeddings, dim=-1) @ F.normalize(module.centres.double(), dim=-1).T
        torch.testing.assert_close(seen[0].double(), want, rtol=0, atol=1e-6)
    # Cosines computed in bf16 sit on bf16's grid; float32 ones almost never do.
    for cos in seen:
        on_grid = (cos == cos.bfloat16().float()).float().mean()
        assert on_grid < 0.1
