"""Scene composition: stuff regions, things painted over them, illumination and sensor noise.

Images are composed in float32 RGB (0..255); :func:`finish` applies the scene's illumination and
noise and rounds to uint8. A semantic map (class ids) and an instance map (0 = stuff, k = the
k-th thing) are painted alongside, so that occlusion is exact: a later thing hides an earlier one.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ovbench.synth.appearance import LOOKS, STUFF_IDS, shape_mask, stuff_mix, thing_mix

# the stuff class drawn on top when a horizon splits the scene
SKY = next(i for i, look in enumerate(LOOKS) if look.texture == "gradient")


def grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy, xx


def wavy_line(rng: np.random.Generator, xx: np.ndarray, h: int, w: int, lo: float, hi: float) -> np.ndarray:
    y0 = rng.uniform(lo, hi) * h
    a1, a2 = rng.uniform(0, 0.08) * h, rng.uniform(0, 0.04) * h
    f1, f2 = rng.uniform(0.5, 2.0), rng.uniform(2.0, 5.0)
    p1, p2 = rng.uniform(0, 2 * np.pi, size=2)
    tilt = rng.uniform(-0.25, 0.25)
    return (y0 + tilt * (xx - w / 2) + a1 * np.sin(2 * np.pi * f1 * xx / w + p1)
            + a2 * np.sin(2 * np.pi * f2 * xx / w + p2))


def _blob(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, h: int, w: int,
          cy_range: tuple[float, float] = (0.25, 0.75)) -> np.ndarray:
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(*cy_range) * h
    radius = rng.uniform(0.18, 0.38) * min(h, w)
    k1, k2 = rng.integers(2, 5), rng.integers(5, 8)
    p1, p2 = rng.uniform(0, 2 * np.pi, size=2)
    a1, a2 = rng.uniform(0.1, 0.25), rng.uniform(0.0, 0.12)
    dy, dx = yy - cy, xx - cx
    ang = np.arctan2(dy, dx)
    boundary = radius * (1 + a1 * np.sin(k1 * ang + p1) + a2 * np.sin(k2 * ang + p2))
    return dx * dx + dy * dy <= boundary * boundary


def sample_stuff_layout(rng: np.random.Generator, h: int, w: int, forced: int | None = None,
                        counts: tuple[int, ...] = (1, 2, 3), p: tuple[float, ...] = (0.2, 0.45, 0.35)
                        ) -> np.ndarray:
    """A stuff label map (uint8 class ids): one region, a horizon split, a blob, or both."""
    n = int(rng.choice(counts, p=p))
    ids = [int(i) for i in rng.permutation(STUFF_IDS)[:n]]
    if forced is not None and forced not in ids:
        ids[int(rng.integers(n))] = forced
    if SKY in ids:  # the sky goes on top
        ids.remove(SKY)
        ids.insert(0, SKY)
    yy, xx = grid(h, w)
    lab = np.full((h, w), ids[0], dtype=np.uint8)
    if n == 2:
        if ids[0] == SKY or rng.random() < 0.6:
            lab[yy > wavy_line(rng, xx, h, w, 0.3, 0.7)] = ids[1]
        else:
            lab[_blob(rng, yy, xx, h, w)] = ids[1]
    elif n == 3:
        if rng.random() < 0.5:
            lab[yy > wavy_line(rng, xx, h, w, 0.2, 0.42)] = ids[1]
            lab[yy > wavy_line(rng, xx, h, w, 0.58, 0.8)] = ids[2]
        else:
            lab[yy > wavy_line(rng, xx, h, w, 0.25, 0.5)] = ids[1]
            lab[_blob(rng, yy, xx, h, w, (0.6, 0.85))] = ids[2]
    return lab


def jitter_colours(rng: np.random.Generator, class_id: int) -> tuple[np.ndarray, np.ndarray]:
    """The class's two colours with a per-instance brightness and per-channel jitter."""
    look = LOOKS[class_id]
    gain = rng.uniform(0.9, 1.1)
    c1 = np.asarray(look.colour, np.float32) * gain + rng.normal(0, 7, 3)
    c2 = np.asarray(look.colour2, np.float32) * gain + rng.normal(0, 7, 3)
    return c1.astype(np.float32), c2.astype(np.float32)


def render_stuff(rng: np.random.Generator, lab: np.ndarray) -> np.ndarray:
    """Float32 RGB of the stuff regions of ``lab`` (each region textured over the full grid)."""
    h, w = lab.shape
    yy, xx = grid(h, w)
    img = np.zeros((h, w, 3), np.float32)
    for cid in np.unique(lab):
        cid = int(cid)
        look = LOOKS[cid]
        c1, c2 = jitter_colours(rng, cid)
        m = stuff_mix(look.texture, yy, xx, look.period * rng.uniform(0.85, 1.2), rng)
        sel = lab == cid
        img[sel] = c1 + m[sel][:, None] * (c2 - c1)
    return img


@dataclass(frozen=True)
class Thing:
    """One painted object: class, centre, half-extents (px), rotation and its own colours."""

    class_id: int
    cx: float
    cy: float
    sx: float
    sy: float
    theta: float
    c1: tuple[float, float, float]
    c2: tuple[float, float, float]
    period: float
    phase: float
    salt: int
    pattern_scale: float = 1.0

    def moved(self, cx: float, cy: float, scale: float, theta: float) -> "Thing":
        """This thing at another place, size (relative to now) and rotation; its pattern follows."""
        return replace(self, cx=cx, cy=cy, sx=self.sx * scale, sy=self.sy * scale, theta=theta,
                       pattern_scale=self.pattern_scale * scale)


def sample_thing(rng: np.random.Generator, class_id: int, h: int, w: int,
                 half_size: tuple[float, float], margin: float = 0.1,
                 centre: tuple[float, float] | None = None) -> Thing:
    look = LOOKS[class_id]
    s = rng.uniform(*half_size)
    # keep the area roughly independent of the aspect ratio
    sx, sy = s / np.sqrt(look.aspect), s * np.sqrt(look.aspect)
    if centre is None:
        cx, cy = rng.uniform(margin * w, (1 - margin) * w), rng.uniform(margin * h, (1 - margin) * h)
    else:
        cx, cy = centre
    c1, c2 = jitter_colours(rng, class_id)
    return Thing(class_id=class_id, cx=float(cx), cy=float(cy), sx=float(sx), sy=float(sy),
                 theta=float(rng.uniform(-0.6, 0.6)), c1=tuple(map(float, c1)), c2=tuple(map(float, c2)),
                 period=float(max(look.period, 1.0) * rng.uniform(0.85, 1.2)),
                 phase=float(rng.uniform(0, 2 * np.pi)), salt=int(rng.integers(1 << 30)))


def paint_thing(img: np.ndarray, sem: np.ndarray, inst: np.ndarray | None, thing: Thing,
                inst_id: int) -> int:
    """Paint ``thing`` over the arrays in place; returns its full (unoccluded) area in pixels."""
    h, w = sem.shape
    look = LOOKS[thing.class_id]
    reach = 1.5 * max(thing.sx, thing.sy) + 2
    y0, y1 = max(int(thing.cy - reach), 0), min(int(thing.cy + reach) + 1, h)
    x0, x1 = max(int(thing.cx - reach), 0), min(int(thing.cx + reach) + 1, w)
    if y0 >= y1 or x0 >= x1:
        return 0
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - np.float32(thing.cy), xx - np.float32(thing.cx)
    ct, st = np.float32(np.cos(thing.theta)), np.float32(np.sin(thing.theta))
    u, v = dx * ct + dy * st, dy * ct - dx * st
    un, vn = u / np.float32(thing.sx), v / np.float32(thing.sy)
    mask = shape_mask(look.shape, un, vn)
    if not mask.any():
        return 0
    ps = np.float32(thing.pattern_scale)
    m = thing_mix(look.texture, u / ps, v / ps, un, vn, thing.period, thing.phase, thing.salt)
    c1, c2 = np.asarray(thing.c1, np.float32), np.asarray(thing.c2, np.float32)
    colour = c1 + m[..., None] * (c2 - c1)
    img[y0:y1, x0:x1][mask] = colour[mask]
    sem[y0:y1, x0:x1][mask] = thing.class_id
    if inst is not None:
        inst[y0:y1, x0:x1][mask] = inst_id
    return int(mask.sum())


@dataclass(frozen=True)
class Illumination:
    gain: float
    cast: tuple[float, float, float]
    grad_angle: float
    grad_amp: float
    noise: float


def sample_illumination(rng: np.random.Generator) -> Illumination:
    return Illumination(gain=float(rng.uniform(0.85, 1.12)),
                        cast=tuple(float(c) for c in rng.normal(0, 0.03, 3)),
                        grad_angle=float(rng.uniform(0, 2 * np.pi)),
                        grad_amp=float(rng.uniform(0, 0.12)),
                        noise=float(rng.uniform(2.0, 5.0)))


def finish(img: np.ndarray, illum: Illumination, rng: np.random.Generator) -> np.ndarray:
    """Apply illumination (gain, colour cast, linear light gradient) and noise; round to uint8."""
    h, w, _ = img.shape
    yy, xx = grid(h, w)
    ramp = ((xx - w / 2) * np.cos(illum.grad_angle) + (yy - h / 2) * np.sin(illum.grad_angle)) / max(h, w)
    light = (1 + 2 * illum.grad_amp * ramp)[..., None] * (illum.gain * (1 + np.asarray(illum.cast, np.float32)))
    out = img * light.astype(np.float32) + rng.normal(0, illum.noise, img.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
