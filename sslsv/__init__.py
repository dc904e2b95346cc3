"""sslsv: Kaldi-style recipes for self-supervised speaker verification."""

__version__ = "0.1.0"
