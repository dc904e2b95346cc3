"""Corpus importers: one module per corpus family, all writing through ``importer``, at the
rate that ``rate`` gives (data preparation's: the experiment config's ``features.sample_rate``)."""
