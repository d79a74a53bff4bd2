"""Submission formats: how users hand in predictions, and how ovbench reads them."""
