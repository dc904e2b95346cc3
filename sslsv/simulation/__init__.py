"""Simulated data for machines without corpora: ``dsp`` (noise, mixing, EQ), ``rooms``
(room impulse responses), ``aug_sets`` (offline augmentation sets), ``espeak`` (the eSpeak NG
binding), ``sentences`` and ``mini_corpus`` (the synthetic corpus of ``egs/mini``)."""
