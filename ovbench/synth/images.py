"""Still scenes of the image splits: 1-3 stuff regions and 1-5 occluding things."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ovbench.synth.appearance import STUFF_IDS, THING_IDS
from ovbench.synth.scenes import (Thing, finish, paint_thing, render_stuff, sample_illumination,
                                  sample_stuff_layout, sample_thing)

# The first entries of every random stream's seed: (seed, kind, split, index[, frame]).
KIND_IMAGE, KIND_VIDEO, KIND_CAPTION = 0, 1, 2
SPLIT_CODES = {"train": 0, "val": 1}

THINGS_PER_IMAGE = (1, 2, 3, 4, 5)
THINGS_PER_IMAGE_P = (0.12, 0.22, 0.26, 0.22, 0.18)
MIN_VISIBLE_FRACTION = 0.25
MIN_VISIBLE_PIXELS = 24  # at 128x128; scaled with the image area


@dataclass
class Scene:
    """One rendered still: RGB, full semantic labels, instance map (k = ``classes[k-1]``)."""

    rgb: np.ndarray
    semantic: np.ndarray
    instances: np.ndarray
    classes: list[int]


def featured(index: int, per_item: int, stride: int = 7, offset: int = 3) -> list[int]:
    """Thing classes an item is guaranteed to show, cycling so that every class recurs regularly."""
    n = len(THING_IDS)
    picks = [THING_IDS[index % n], THING_IDS[(stride * index + offset) % n]]
    return picks[:per_item]


def _place(rng: np.random.Generator, cid: int, placed: list[Thing], h: int, w: int,
           half_size: tuple[float, float], tries: int = 6) -> Thing:
    """A thing that overlaps the already placed ones little, if a few tries find such a place."""
    t = sample_thing(rng, cid, h, w, half_size)
    for _ in range(tries - 1):
        if all(np.hypot(t.cx - o.cx, t.cy - o.cy) > 0.6 * (max(t.sx, t.sy) + max(o.sx, o.sy))
               for o in placed):
            break
        t = sample_thing(rng, cid, h, w, half_size)
    return t


def _paint_all(base: np.ndarray, lab: np.ndarray, things: list[Thing]):
    img, sem = base.copy(), lab.copy()
    inst = np.zeros(lab.shape, np.uint16)
    areas = [paint_thing(img, sem, inst, t, k + 1) for k, t in enumerate(things)]
    return img, sem, inst, areas


def render_image(seed: int, split: str, index: int, size: int) -> Scene:
    """The still scene ``index`` of ``split``; depends only on (seed, split, index, size)."""
    rng = np.random.default_rng([seed, KIND_IMAGE, SPLIT_CODES[split], index])
    h = w = size
    scale = size / 128
    lab = sample_stuff_layout(rng, h, w, forced=STUFF_IDS[index % len(STUFF_IDS)])
    base = render_stuff(rng, lab)
    n = int(rng.choice(THINGS_PER_IMAGE, p=THINGS_PER_IMAGE_P))
    top = featured(index, n)
    classes = [int(c) for c in rng.choice(THING_IDS, n - len(top))] + top  # featured on top
    things: list[Thing] = []
    for cid in classes:
        things.append(_place(rng, cid, things, h, w, (9 * scale, 24 * scale)))
    illum = sample_illumination(rng)

    img, sem, inst, areas = _paint_all(base, lab, things)
    visible = np.bincount(inst.ravel(), minlength=len(things) + 1)[1:]
    min_px = MIN_VISIBLE_PIXELS * scale * scale
    keep = [t for t, a, v in zip(things, areas, visible) if v >= max(min_px, MIN_VISIBLE_FRACTION * a)]
    if len(keep) < len(things):  # repaint without the (nearly) hidden ones
        things = keep
        img, sem, inst, areas = _paint_all(base, lab, things)
    return Scene(rgb=finish(img, illum, rng), semantic=sem, instances=inst,
                 classes=[t.class_id for t in things])
