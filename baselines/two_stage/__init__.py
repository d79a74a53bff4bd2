"""The two-stage "frozen CLIP per mask" baseline (ZSSeg / SimBaseline, Xu et al. 2022); importing
this package registers the ``two-stage`` model kind."""
from baselines.two_stage.model import TwoStageSegmenter, build_two_stage

__all__ = ["TwoStageSegmenter", "build_two_stage"]
