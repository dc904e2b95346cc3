"""Training augmentation: ``sets`` (noise and RIR sets in memory), ``augmenter`` (the batched
reverb + noise augmenter on any device), ``build`` (both from the ``augment:`` config)."""
