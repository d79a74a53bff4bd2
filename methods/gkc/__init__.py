"""GKC (Global Knowledge Calibration, ICCV 2023): ovbench's re-implementation.

Spec: ``/work/shared/specs/gkc.md``. Submodules:

- :mod:`methods.gkc.distillation`: the pure building blocks of text-guided knowledge distillation
  (TGKD, spec §4): teacher region crops, region subsampling, the TGKD loss and the per-decoder-output
  student projection head.

Kept import-light on purpose: import the submodules you need.
"""
