"""The shared open-vocabulary detector (ViLD, EZSD): a Mask R-CNN whose classifier is a swappable set of
CLIP text embeddings (:mod:`~ovbench.models.detector.spec`, :mod:`~ovbench.models.detector.heads`,
:mod:`~ovbench.models.detector.model`) and its inference wrapper and model file
(:mod:`~ovbench.models.detector.ov_detector`)."""
from ovbench.models.detector.model import OVMaskRCNN, build_detector, detector_loss
from ovbench.models.detector.ov_detector import Detection, OVDetector, load_detector
from ovbench.models.detector.spec import DetectorSpec

__all__ = ["Detection", "DetectorSpec", "OVDetector", "OVMaskRCNN", "build_detector", "detector_loss", "load_detector"]
