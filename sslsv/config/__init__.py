"""Experiment configuration: ``schema`` (the sections, their defaults, choices and ranges)
and ``load`` (YAML in, checked completely)."""
