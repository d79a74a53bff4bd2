"""Image-caption pairs for pre-training a small CLIP: small scenes described with class names
and synonyms in several sentence templates. Every class, novel ones included, is the focus of
every ``len(classes)``-th pair, so all of them are covered evenly."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ovbench.protocols import ClassInfo
from ovbench.synth.appearance import LOOKS, STUFF, STUFF_IDS, THING_IDS
from ovbench.synth.images import KIND_CAPTION
from ovbench.synth.scenes import (SKY, Thing, wavy_line, finish, grid, paint_thing, render_stuff,
                                  sample_illumination, sample_thing)

STUFF_ONE = ("a photo of {s}.", "{s}.", "a view of {s}.", "a picture of the {s}.", "a close-up of {s}.")
STUFF_TWO = ("{s} and {s2}.", "{s} above {s2}.", "a photo of {s} and {s2}.", "{s2} below the {s}.")
THING_ON = ("a photo of {t}.", "{t} on {s}.", "a photo of {t} on the {s}.", "{t} in front of the {s}.",
            "a picture of {t}.", "{t} lying on {s}.", "{s} with {t}.")
TWO_THINGS = ("{t} next to {t2}.", "{t} and {t2}.", "{t} and {t2} on the {s}.",
              "a photo of {t} beside {t2}.", "{t2} near {t} on {s}.")


@dataclass
class CaptionPair:
    rgb: np.ndarray
    caption: str
    classes: list[int]  # the classes visible in the image, sorted


def _article(word: str) -> str:
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def _name(rng: np.random.Generator, info: ClassInfo) -> str:
    names = info.names
    return names[int(rng.integers(len(names)))]


def render_caption_pair(seed: int, index: int, size: int, classes: Sequence[ClassInfo]) -> CaptionPair:
    rng = np.random.default_rng([seed, KIND_CAPTION, 0, index])
    h = w = size
    focus = index % len(LOOKS)
    is_stuff = LOOKS[focus].kind == STUFF
    if is_stuff:
        kind = "stuff" if rng.random() < 0.4 else "thing-on-stuff"
    else:
        kind = "thing-on-stuff" if rng.random() < 0.65 else "two-things"
    s = focus if is_stuff else int(rng.choice(STUFF_IDS))
    lab = np.full((h, w), s, np.uint8)
    s2 = None
    if kind == "stuff" and rng.random() < 0.35:
        s2 = int(rng.choice([i for i in STUFF_IDS if i != s]))
        if s2 == SKY:
            s, s2 = s2, s
        lab[:] = s
        yy, xx = grid(h, w)
        lab[yy > wavy_line(rng, xx, h, w, 0.35, 0.65)] = s2
    img = render_stuff(rng, lab)
    sem = lab.copy()
    things: list[Thing] = []
    if kind == "thing-on-stuff":
        t = focus if not is_stuff else int(rng.choice(THING_IDS))
        centre = (rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.65) * h)
        things.append(sample_thing(rng, t, h, w, (0.16 * size, 0.3 * size), centre=centre))
    elif kind == "two-things":
        t2 = int(rng.choice([i for i in THING_IDS if i != focus]))
        left = rng.random() < 0.5
        for cid, fx in ((focus, 0.3 if left else 0.7), (t2, 0.7 if left else 0.3)):
            centre = ((fx + rng.uniform(-0.05, 0.05)) * w, rng.uniform(0.4, 0.6) * h)
            things.append(sample_thing(rng, cid, h, w, (0.13 * size, 0.2 * size), centre=centre))
    for k, t in enumerate(things):
        paint_thing(img, sem, None, t, k + 1)
    rgb = finish(img, sample_illumination(rng), rng)

    sn = _name(rng, classes[s])
    words = {"s": sn}
    if kind == "stuff":
        templates = STUFF_ONE if s2 is None else STUFF_TWO
        if s2 is not None:
            words["s2"] = _name(rng, classes[s2])
    elif kind == "thing-on-stuff":
        # a caption about a stuff class must name it
        templates = tuple(t for t in THING_ON if "{s}" in t) if is_stuff else THING_ON
        words["t"] = _article(_name(rng, classes[things[0].class_id]))
    else:
        templates = TWO_THINGS
        words["t"] = _article(_name(rng, classes[things[0].class_id]))
        words["t2"] = _article(_name(rng, classes[things[1].class_id]))
    template = templates[int(rng.integers(len(templates)))]
    if s == SKY:  # things are in the sky, not on it
        template = template.replace("on the {s}", "in the {s}").replace("on {s}", "in the {s}")
    caption = template.format(**words)
    visible = sorted(int(c) for c in np.unique(sem))
    return CaptionPair(rgb=rgb, caption=caption, classes=visible)
