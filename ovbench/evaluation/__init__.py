"""Evaluation: evaluators (detectron2 interface) and offline scoring of submission files."""
