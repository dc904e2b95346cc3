"""The model that a checkpoint holds: log-mel front end + per-utterance MVN + encoder."""

from __future__ import annotations

import os

import torch
from torch import nn

from sslsv.config import Config, config_from_dict
from sslsv.features import LogMelFbank, mean_var_norm
from sslsv.models import build_encoder

FINAL_FORMAT = "sslsv-model-v1"


class EmbeddingModel(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.fbank = LogMelFbank(cfg.features)
        self.encoder = build_encoder(cfg.encoder.name, cfg.features.n_mels, cfg.encoder.args)

    @property
    def embed_dim(self) -> int:
        return self.encoder.embed_dim

    def forward_features(self, feats: torch.Tensor) -> torch.Tensor:
        """Raw log-mels (B, n_mels, T), as stage 1 writes them -> embeddings (B, D)."""
        return self.encoder(mean_var_norm(feats))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Waveforms (B, L) -> embeddings (B, D)."""
        return self.forward_features(self.fbank(wave))


def model_payload(cfg_dict: dict, state: dict[str, torch.Tensor]) -> dict:
    return {"format": FINAL_FORMAT, "config": cfg_dict, "model": state}


def load_model(path: str | os.PathLike, device: str = "cpu") -> tuple[EmbeddingModel, Config]:
    """Load ``final.pt``/``init.pt`` or a training checkpoint (safely: tensors only)."""
    payload = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(payload, dict) or "config" not in payload or "model" not in payload:
        raise ValueError(f"{path}: not an sslsv checkpoint (needs 'config' and 'model')")
    config = payload["config"]
    # Checkpoints written before stage 3 had crop settings carry an unused placeholder key.
    if isinstance(config.get("extract"), dict):
        config["extract"].pop("max_seconds", None)
    cfg = config_from_dict(config, source=str(path))
    model = EmbeddingModel(cfg)
    model.load_state_dict(payload["model"])
    return model.to(device).eval(), cfg
