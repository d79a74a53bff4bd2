"""EZSD / EZAD (Efficient Feature Distillation for Zero-shot Detection): ovbench's re-implementation.

Spec: ``/work/shared/specs/ezsd.md``. Submodules:

- :mod:`methods.ezsd.crops`: CLIP box crops (enlarged, zero-padded to a square, CLIP-normalised)
  and the COCO-format box annotations they are cut from;
- :mod:`methods.ezsd.renorm`: re-normalising CLIP (tune only its LayerNorms on base GT crops, §3)
  and GT-crop accuracy; ``python -m methods.ezsd.renorm``;
- :mod:`methods.ezsd.proposals`: CLIP proposals (dense anchors scored by log C − entropy, §4.1);
- :mod:`methods.ezsd.regions`: distillation regions and their cached CLIP targets, with the
  training-time sampler (§4.2, §4.3); ``python -m methods.ezsd.regions``;
- :mod:`methods.ezsd.method`: the detector training method ``ezsd`` of ``ovbench train`` (§4.3, §5).

Kept import-light on purpose: import the submodules you need.
"""
