"""Baselines that ovbench's methods are compared against, and simple reference predictors.

Importing the package registers the baseline model kinds (``two-stage``, ``maskclip``) with
:mod:`ovbench.models.zoo`; the naive fine-tune baseline is a ``segmenter`` run config.
"""
from baselines import maskclip, two_stage
from baselines import vild  # noqa: F401  (registers the `vild` detector training method)

__all__ = ["maskclip", "two_stage"]
