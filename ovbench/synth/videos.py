"""Video scenes: static stuff, things that move smoothly (bouncing off the borders, slowly
rotating and changing scale) with a track id that stays the same over the video."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ovbench.synth.appearance import STUFF_IDS, THING_IDS
from ovbench.synth.images import KIND_VIDEO, SPLIT_CODES
from ovbench.synth.scenes import (Thing, finish, paint_thing, render_stuff, sample_illumination,
                                  sample_stuff_layout, sample_thing)


@dataclass
class VideoFrame:
    rgb: np.ndarray
    semantic: np.ndarray  # full labels
    instances: np.ndarray  # uint16 track ids, 0 = stuff


@dataclass
class Video:
    frames: list[VideoFrame]
    tracks: list[tuple[int, int]]  # (track_id, class_id), in painting (depth) order


def _trajectory(rng: np.random.Generator, thing: Thing, frames: int, h: int, w: int,
                speed: tuple[float, float]) -> list[Thing]:
    """The thing in each frame: linear motion reflected at the borders, rotation, scale drift."""
    ang = rng.uniform(0, 2 * np.pi)
    spd = rng.uniform(*speed)
    vx, vy = spd * np.cos(ang), spd * np.sin(ang)
    growth = rng.uniform(-0.025, 0.025)
    omega = rng.uniform(-0.08, 0.08)
    lo_x, hi_x, lo_y, hi_y = 0.08 * w, 0.92 * w, 0.08 * h, 0.92 * h
    x, y = thing.cx, thing.cy
    out = []
    for t in range(frames):
        out.append(thing.moved(float(x), float(y), float((1 + growth) ** t), float(thing.theta + omega * t)))
        x, y = x + vx, y + vy
        if x < lo_x or x > hi_x:
            vx = -vx
            x = 2 * lo_x - x if x < lo_x else 2 * hi_x - x
        if y < lo_y or y > hi_y:
            vy = -vy
            y = 2 * lo_y - y if y < lo_y else 2 * hi_y - y
    return out


def render_video(seed: int, split: str, index: int, size: int, frames: int) -> Video:
    """Video ``index`` of ``split``; depends only on (seed, split, index, size, frames)."""
    code = SPLIT_CODES[split]
    rng = np.random.default_rng([seed, KIND_VIDEO, code, index])
    h = w = size
    scale = size / 128
    lab = sample_stuff_layout(rng, h, w, forced=STUFF_IDS[index % len(STUFF_IDS)])
    base = render_stuff(rng, lab)
    illum = sample_illumination(rng)
    n = int(rng.integers(3, 5))
    nt = len(THING_IDS)
    classes = [THING_IDS[(3 * index + k) % nt] for k in range(3)]
    classes += [int(c) for c in rng.choice(THING_IDS, n - 3)]
    order = rng.permutation(n)
    classes = [classes[i] for i in order]
    paths = [_trajectory(rng, sample_thing(rng, cid, h, w, (9 * scale, 18 * scale), margin=0.15),
                         frames, h, w, (1.0 * scale, 3.5 * scale)) for cid in classes]
    out = []
    for t in range(frames):
        frng = np.random.default_rng([seed, KIND_VIDEO, code, index, t + 1])
        img, sem = base.copy(), lab.copy()
        inst = np.zeros((h, w), np.uint16)
        for k, path in enumerate(paths):
            paint_thing(img, sem, inst, path[t], k + 1)
        flicker = replace(illum, gain=illum.gain * float(1 + frng.normal(0, 0.01)))
        out.append(VideoFrame(rgb=finish(img, flicker, frng), semantic=sem, instances=inst))
    return Video(frames=out, tracks=[(k + 1, cid) for k, cid in enumerate(classes)])
