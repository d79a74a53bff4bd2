"""Reference predictors: simple, honest per-pixel classifiers trained in seconds on the base
classes of synth-ov's train split. They stand in for real models in the demo; never having seen
a novel label, they can only ever predict base classes.

:mod:`baselines.reference.boxes` turns the texture classifier's label maps into the demo's
reference detectors for synth-ovd (one of them open-vocabulary through a frozen CLIP); it is not
imported here, so that the pixel predictors load without CLIP."""
from __future__ import annotations

from pathlib import Path

from baselines.reference.colour import PixelColourClassifier
from baselines.reference.common import PixelPredictor, read_state
from baselines.reference.texture import PixelTextureClassifier
from ovbench.errors import OvbenchError

PREDICTORS: dict[str, type[PixelPredictor]] = {
    PixelColourClassifier.name: PixelColourClassifier,
    PixelTextureClassifier.name: PixelTextureClassifier,
}


def load_predictor(path: Path) -> PixelPredictor:
    """A saved reference predictor of any registered kind."""
    meta, arrays = read_state(Path(path))
    kind = meta.get("kind")
    if kind not in PREDICTORS:
        raise OvbenchError(f"{path}: unknown predictor kind {kind!r}; known: {', '.join(PREDICTORS)}")
    return PREDICTORS[kind]._from_state(meta, arrays)


__all__ = ["PREDICTORS", "PixelColourClassifier", "PixelPredictor", "PixelTextureClassifier",
           "load_predictor"]
