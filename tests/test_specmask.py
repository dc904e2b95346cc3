"""SpecAugment-style masks: against a plain loop, seeded, split by rows like the batch."""

from __future__ import annotations

import torch

from sslsv.augment.specmask import Masks, apply_masks, masking_enabled, sample_masks
from sslsv.config.schema import AugmentConfig

CFG = AugmentConfig(spec_freq_masks=2, spec_freq_width=5, spec_time_masks=3, spec_time_width=7)


def plain_apply(feats: torch.Tensor, masks: Masks) -> torch.Tensor:
    out = feats.clone()
    for r in range(feats.shape[0]):
        fill = float(feats[r].double().mean())
        for s, w in zip(masks.freq_start[r].tolist(), masks.freq_width[r].tolist()):
            for b in range(s, s + w):
                out[r, b, :] = fill
        for s, w in zip(masks.time_start[r].tolist(), masks.time_width[r].tolist()):
            for t in range(s, s + w):
                out[r, :, t] = fill
    return out


def test_masks_match_a_plain_loop_and_stay_inside():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(6, 24, 50, generator=g)
    masks = sample_masks(6, 24, 50, CFG, torch.Generator().manual_seed(1))
    assert masks.freq_start.shape == (6, 2) and masks.time_start.shape == (6, 3)
    assert ((masks.freq_start + masks.freq_width) <= 24).all()
    assert ((masks.time_start + masks.time_width) <= 50).all()
    assert (masks.freq_width <= 5).all() and (masks.time_width <= 7).all()
    got = apply_masks(feats, masks)
    torch.testing.assert_close(got, plain_apply(feats, masks), rtol=1e-5, atol=1e-5)
    assert not torch.equal(got, feats)


def test_masks_are_seeded_and_split_by_rows():
    a = sample_masks(8, 40, 100, CFG, torch.Generator().manual_seed(5))
    b = sample_masks(8, 40, 100, CFG, torch.Generator().manual_seed(5))
    assert all(torch.equal(x, y) for x, y in zip(vars(a).values(), vars(b).values()))
    feats = torch.randn(8, 40, 100)
    whole = apply_masks(feats, a)
    halves = torch.cat([apply_masks(feats[:4], a.rows(0, 4)), apply_masks(feats[4:], a.rows(4, 8))])
    assert torch.equal(whole, halves)


def test_off_by_default_and_without_augmentation():
    assert not masking_enabled(AugmentConfig())
    assert masking_enabled(CFG)
    assert not masking_enabled(AugmentConfig(enabled=False, spec_time_masks=2))
