"""What the reference pixel predictors share: reading a split, sampling training pixels,
writing a split's predictions in the semseg submission format, saving and loading."""
from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image
from tqdm import tqdm

from ovbench.errors import OvbenchError
from ovbench.protocols import Layout, Protocol


def split_layout(protocol: Protocol, split: str) -> Layout:
    """The protocol's layout with its split folder replaced by ``split`` (``images/val/{id}.png`` →
    ``images/train/{id}.png``)."""
    if split == protocol.split:
        return protocol.layout

    def swap(template: str) -> str:
        parts = template.split("/")
        if protocol.split not in parts:
            raise OvbenchError(f"protocol {protocol.id}: layout {template!r} has no '{protocol.split}' folder "
                               f"to swap for split {split!r}; use split={protocol.split!r}")
        return "/".join(split if p == protocol.split else p for p in parts)

    return Layout(images=swap(protocol.layout.images), labels=swap(protocol.layout.labels))


def list_ids(data_root: Path, template: str) -> list[str]:
    """Sorted ids of the files matching ``template`` (one ``{id}``) below ``data_root``."""
    prefix, suffix = template.split("{id}")
    folder = data_root / prefix
    if not folder.is_dir():
        raise OvbenchError(f"{folder}: folder not found; generate the data first "
                           f"(`ovbench data synth --out DIR`, then pass DIR as the data root)")
    ids = sorted(p.relative_to(folder).as_posix()[: -len(suffix)]
                 for p in folder.rglob(f"*{suffix}") if p.is_file())
    if not ids:
        raise OvbenchError(f"{folder}: no '*{suffix}' files; generate the data first")
    return ids


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def read_label(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        if im.mode not in ("L", "P"):
            raise OvbenchError(f"{path}: label image has mode {im.mode}; expected single-channel uint8 (L)")
        return np.asarray(im)


def training_pairs(data_root: Path, protocol: Protocol, split: str = "train"
                   ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(id, image, label) for every labelled image of ``split``."""
    layout = split_layout(protocol, split)
    for iid in list_ids(data_root, layout.labels):
        image = read_rgb(layout.image_path(data_root, iid))
        label = read_label(layout.label_path(data_root, iid))
        if image.shape[:2] != label.shape:
            raise OvbenchError(f"{layout.label_path(data_root, iid)}: label shape {label.shape} differs "
                               f"from its image's {image.shape[:2]}; regenerate the data")
        yield iid, image, label


def sample_pixels(label: np.ndarray, allowed: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Flat indices of up to ``n`` random pixels whose label is an allowed (base) class."""
    flat = label.ravel()
    ok = np.flatnonzero(allowed[flat])
    if len(ok) > n:
        ok = rng.choice(ok, n, replace=False)
    return np.sort(ok)


def sample_training_pixels(data_root: Path, protocol: Protocol, featurise: Callable[[np.ndarray], np.ndarray],
                           pixels_per_image: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features ``(N, F)`` float64 and base class ids ``(N,)`` int64 of up to ``pixels_per_image``
    random base-labelled pixels per training image; ``featurise`` maps an HxWx3 image to
    ``(H*W, F)`` per-pixel features."""
    _, allowed = base_lookup(protocol)
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for _, image, label in training_pairs(Path(data_root), protocol):
        idx = sample_pixels(label, allowed, pixels_per_image, rng)
        xs.append(featurise(image)[idx])
        ys.append(label.ravel()[idx])
    y = np.concatenate(ys).astype(np.int64)
    if y.size == 0:
        raise OvbenchError(f"{data_root}: no base-class pixels in the training labels; regenerate the data")
    return np.concatenate(xs).astype(np.float64), y


def base_lookup(protocol: Protocol) -> tuple[np.ndarray, np.ndarray]:
    """(base class ids, a 256-entry bool table of which uint8 labels are base classes)."""
    base = np.asarray(protocol.class_ids("base"), np.int64)
    allowed = np.zeros(256, bool)
    allowed[base[base < 256]] = True
    return base, allowed


class PixelPredictor:
    """The interface of a reference predictor. Subclasses set ``name`` and implement
    ``fit``, ``predict`` and ``_state`` / ``_from_state``."""

    name = "pixel"

    def fit(self, data_root: Path, protocol: Protocol) -> "PixelPredictor":
        raise NotImplementedError

    def predict(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _check_image(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise OvbenchError(f"{self.name}: expected an HxWx3 uint8 image, got {image.dtype} {image.shape}")
        return image

    def predict_split(self, data_root: Path, protocol: Protocol, out_dir: Path, split: str = "val",
                      progress: bool = True) -> list[float]:
        """Predict every image of ``split`` into ``<out_dir>/<image_id>.png`` (uint8, mode L).

        Returns the per-image latency of :meth:`predict` alone (decoded image in, label map out),
        in seconds, in image-id order.
        """
        data_root, out_dir = Path(data_root), Path(out_dir)
        layout = split_layout(protocol, split)
        latencies = []
        for iid in tqdm(list_ids(data_root, layout.images), desc=f"{self.name} {split}", unit="img",
                        disable=not progress):
            image = read_rgb(layout.image_path(data_root, iid))
            start = time.perf_counter()
            pred = self.predict(image)
            latencies.append(time.perf_counter() - start)
            path = out_dir / f"{iid}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pred.astype(np.uint8)).save(path, format="PNG")
        return latencies

    # -- persistence -------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        raise NotImplementedError

    @classmethod
    def _from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> "PixelPredictor":
        raise NotImplementedError

    def save(self, path: Path) -> Path:
        """Write the fitted predictor to ``path`` (an .npz archive, exactly that name)."""
        meta, arrays = self._state()
        buf = io.BytesIO()
        np.savez(buf, __meta__=np.frombuffer(json.dumps({"kind": self.name, **meta}).encode(), np.uint8), **arrays)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buf.getvalue())
        return path

    @classmethod
    def load(cls, path: Path) -> "PixelPredictor":
        meta, arrays = read_state(Path(path))
        if meta.get("kind") != cls.name:
            raise OvbenchError(f"{path}: holds a {meta.get('kind')!r} predictor, not {cls.name!r}; "
                               f"load it with baselines.reference.load_predictor")
        return cls._from_state(meta, arrays)


def read_state(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise OvbenchError(f"{path}: not a saved reference predictor ({e}); re-run its fit and save") from e
    if "__meta__" not in arrays:
        raise OvbenchError(f"{path}: not a saved reference predictor (no metadata); re-run its fit and save")
    meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    return meta, arrays
