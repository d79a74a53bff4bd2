"""Metrics: pure functions of accumulated statistics (no file I/O, no models)."""
