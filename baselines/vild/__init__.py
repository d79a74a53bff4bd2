"""ViLD (Gu, Lin, Kuo, Cui, ICLR 2022): the open-vocabulary detection baseline, on the shared detector.

Spec: ``/work/shared/specs/ezsd.md`` §4.4, §10. Submodules:

- :mod:`baselines.vild.proposals`: the offline distillation regions (a base-trained RPN's top proposals
  and their 1x + 1.5x crop-ensembled CLIP embeddings); ``python -m baselines.vild.proposals``;
- :mod:`baselines.vild.method`: the ``vild`` detector training method (distillation from that cache).

ViLD-text is a plain detector run config (``configs/synth-ovd-text.yaml``); ViLD-ensemble is the
detector spec's ``ensemble: true``. Importing the package registers the ``vild`` method.
"""
from baselines.vild import method

__all__ = ["method"]
