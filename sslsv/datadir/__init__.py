"""Kaldi data directories: ``io`` (files, roles, reading), ``validate``, ``fix``, ``tools``
(combine, subset, split, utt2dur) and ``trials`` (trial lists for corpora without one)."""
