"""sslsv: Kaldi-style recipes for self-supervised speaker verification.

``sslsv.load_model(path)`` gives a model that embeds audio and scores pairs (see
:mod:`sslsv.api`).
"""

__version__ = "0.1.0"

__all__ = ["SpeakerModel", "Verification", "__version__", "load_model"]


def __getattr__(name: str):
    # Lazily: importing torch costs seconds, and most commands (data prep) never need it.
    if name in ("SpeakerModel", "Verification", "load_model"):
        from sslsv import api

        return getattr(api, name)
    raise AttributeError(f"module 'sslsv' has no attribute {name!r}")
