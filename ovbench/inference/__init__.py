"""Running a model over a protocol's images and writing the submission ``ovbench evaluate`` reads."""
from ovbench.inference.semseg import PredictionRun, predict_protocol, vocabulary

__all__ = ["PredictionRun", "predict_protocol", "vocabulary"]
