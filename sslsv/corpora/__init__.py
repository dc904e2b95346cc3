"""Corpus importers: one module per corpus family, all writing through ``importer``."""
