"""How each class of the synthetic world looks: colours, textures, patterns and shapes.

The table :data:`LOOKS` is indexed by class id (the ids of the ``synth-ov`` protocol, whose JSON
is the only place that names the classes). Stuff classes are full-region textures; thing classes
are shapes painted with their own two colours and a pattern. Several pairs are deliberately
confusable by colour alone (they share a colour and differ only in texture or pattern), so that
a model has to look at a pixel's neighbourhood, not only at the pixel.

Every texture and pattern is a *mix* field ``m`` in ``[0, 1]``; a pixel's colour is
``colour + m * (colour2 - colour)`` before the scene-wide illumination and noise.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

STUFF, THING = "stuff", "thing"


@dataclass(frozen=True)
class Look:
    """The appearance of one class. Periods are in pixels; ``aspect`` is height / width."""

    kind: str
    colour: tuple[int, int, int]
    colour2: tuple[int, int, int]
    texture: str
    period: float
    shape: str | None = None
    aspect: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["colour"], d["colour2"] = list(self.colour), list(self.colour2)
        if self.kind == STUFF:
            del d["shape"], d["aspect"]
        return d


# Index = class id of the synth-ov protocol. Pairs sharing a colour: (3, 7), (14, 15), (1, 11),
# (6, 17, 20, 22) near-white, (18, 19).
LOOKS: tuple[Look, ...] = (
    Look(STUFF, (120, 170, 235), (185, 215, 250), "gradient", 0.0),
    Look(STUFF, (45, 125, 40), (95, 175, 60), "blades", 3.0),
    Look(STUFF, (35, 85, 160), (85, 145, 205), "waves", 6.0),
    Look(STUFF, (205, 185, 135), (232, 212, 168), "grain", 1.0),
    Look(STUFF, (85, 85, 90), (128, 128, 134), "noise", 1.0),
    Look(STUFF, (155, 75, 55), (195, 185, 170), "bricks", 6.0),
    Look(STUFF, (232, 236, 245), (150, 165, 195), "sparkle", 1.0),
    Look(STUFF, (205, 185, 135), (140, 110, 70), "tiles", 8.0),
    Look(THING, (215, 45, 40), (255, 150, 140), "shade-radial", 0.0, "disk", 1.0),
    Look(THING, (160, 105, 55), (110, 68, 28), "stripes", 4.0, "square", 1.0),
    Look(THING, (35, 70, 200), (210, 215, 230), "band", 0.0, "capsule", 0.5),
    Look(THING, (30, 100, 35), (85, 165, 60), "speckle", 1.0, "triangle", 1.3),
    Look(THING, (205, 190, 130), (150, 60, 45), "windows", 6.0, "house", 1.0),
    Look(THING, (230, 185, 150), (50, 60, 150), "two-tone", 0.0, "person", 1.6),
    Look(THING, (165, 115, 65), (85, 55, 30), "spots", 7.0, "ellipse", 0.6),
    Look(THING, (165, 115, 65), (85, 55, 30), "stripes", 4.0, "ellipse", 0.6),
    Look(THING, (50, 160, 110), (170, 235, 200), "shade-u", 0.0, "bottle", 1.8),
    Look(THING, (240, 238, 230), (200, 50, 50), "checker", 3.0, "cup", 1.0),
    Look(THING, (225, 55, 145), (250, 205, 60), "sectors", 0.0, "semicircle", 1.0),
    Look(THING, (250, 205, 40), (225, 45, 45), "diagonal", 5.0, "diamond", 1.4),
    Look(THING, (245, 245, 240), (30, 30, 30), "rings", 5.0, "disk", 1.0),
    Look(THING, (200, 30, 35), (250, 250, 250), "band", 0.0, "octagon", 1.0),
    Look(THING, (240, 240, 245), (40, 60, 130), "stripes-v", 5.0, "hull", 0.55),
    Look(THING, (240, 110, 200), (250, 225, 60), "centre", 0.0, "star", 1.0),
)

STUFF_IDS: tuple[int, ...] = tuple(i for i, look in enumerate(LOOKS) if look.kind == STUFF)
THING_IDS: tuple[int, ...] = tuple(i for i, look in enumerate(LOOKS) if look.kind == THING)


def hash_uniform(a: np.ndarray, b: np.ndarray, salt: int) -> np.ndarray:
    """A uniform [0, 1) value per integer coordinate pair, identical on every platform.

    Used for thing patterns that must move with the object (video) without a random stream.
    """
    with np.errstate(over="ignore"):
        h = (a.astype(np.int64).astype(np.uint32) * np.uint32(73856093)) ^ \
            (b.astype(np.int64).astype(np.uint32) * np.uint32(19349663)) ^ np.uint32(salt & 0xFFFFFFFF)
        h ^= h >> np.uint32(13)
        h *= np.uint32(0x5BD1E995)
        h ^= h >> np.uint32(15)
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def _wave(x: np.ndarray) -> np.ndarray:
    return np.float32(0.5) + np.float32(0.5) * np.sin(x)


def stuff_mix(texture: str, yy: np.ndarray, xx: np.ndarray, period: float,
              rng: np.random.Generator) -> np.ndarray:
    """The mix field of a stuff texture over the grid ``(yy, xx)`` (float32 in [0, 1])."""
    h, w = yy.shape
    tau = np.float32(2 * np.pi)
    phase = np.float32(rng.uniform(0, 2 * np.pi))
    angle = np.float32(rng.uniform(-0.25, 0.25))
    ca, sa = np.cos(angle), np.sin(angle)
    xr, yr = xx * ca + yy * sa, yy * ca - xx * sa
    noise = rng.standard_normal((h, w)).astype(np.float32)
    if texture == "gradient":
        m = yr / np.float32(max(h, 1)) * np.float32(rng.uniform(0.6, 1.0)) + 0.03 * noise
    elif texture == "blades":
        m = _wave(tau * xr / period + phase + 1.5 * np.sin(tau * yr / (4 * period))) + 0.25 * noise
    elif texture == "waves":
        m = _wave(tau * yr / period + phase + 1.2 * np.sin(tau * xr / (5 * period) + 2 * phase))
        m = m + 0.08 * noise
    elif texture == "grain":
        m = 0.5 + 0.3 * noise
    elif texture == "noise":
        m = 0.5 + 0.35 * noise + 0.15 * np.sin(tau * xr / 23.0 + phase)
    elif texture == "bricks":
        row = np.floor((yr + phase) / period)
        xs = xr + phase * 3 + (row % 2) * period
        mortar = ((yr + phase) % period < 1.2) | (xs % (2 * period) < 1.2)
        m = mortar.astype(np.float32) + 0.1 * noise
    elif texture == "sparkle":
        specks = rng.random((h, w)) < 0.06
        m = specks.astype(np.float32) * 0.9 + 0.04 * noise
    elif texture == "tiles":
        cell = (np.floor((xr + phase) / period) + np.floor((yr + phase) / period)) % 2
        grout = ((xr + phase) % period < 1.0) | ((yr + phase) % period < 1.0)
        m = 0.55 * cell + 0.45 * grout + 0.06 * noise
    else:
        raise ValueError(f"unknown stuff texture {texture!r}")
    return np.clip(m, 0, 1).astype(np.float32)


def shape_mask(shape: str, un: np.ndarray, vn: np.ndarray) -> np.ndarray:
    """Whether each point of the normalised object frame (``un, vn`` in [-1, 1]) is inside."""
    au, av = np.abs(un), np.abs(vn)
    r2 = un * un + vn * vn
    if shape in ("disk", "ellipse"):
        return r2 <= 1
    if shape == "square":
        return (au <= 1) & (av <= 1)
    if shape == "capsule":  # a rounded bar with the radius of its height
        du = np.maximum(au - 0.5, 0) * 2
        return du * du + vn * vn <= 1
    if shape == "triangle":  # apex up
        return (vn <= 1) & (au <= (vn + 1) / 2)
    if shape == "house":  # box with a roof
        body = (vn >= -0.2) & (vn <= 1) & (au <= 0.75)
        roof = (vn < -0.2) & (vn >= -1) & (au <= (vn + 1) * 1.2)
        return body | roof
    if shape == "person":  # head over a body with arms
        head = un * un + (vn + 0.75) ** 2 <= 0.0625
        body = (au <= 0.45) & (vn >= -0.5) & (vn <= 1)
        arms = (au <= 1) & (vn >= -0.45) & (vn <= -0.25)
        return head | body | arms
    if shape == "bottle":
        return ((au <= 0.5) & (vn >= -0.35) & (vn <= 1)) | ((au <= 0.22) & (vn >= -1) & (vn < -0.35))
    if shape == "cup":  # wider at the top, with a handle
        body = (av <= 1) & (au <= 0.75 - 0.2 * vn)
        handle = ((un - 0.8) ** 2 + vn * vn <= 0.16) & ((un - 0.8) ** 2 + vn * vn >= 0.04)
        return body | handle
    if shape == "semicircle":
        return (r2 <= 1) & (vn <= 0.1)
    if shape == "diamond":
        return au + av <= 1
    if shape == "octagon":
        return (au <= 1) & (av <= 1) & (au + av <= 1.45)
    if shape == "hull":  # wide at the top
        return (av <= 1) & (au <= 1 - 0.3 * (vn + 1))
    if shape == "star":  # five petals
        ang = np.arctan2(vn, un)
        return np.sqrt(r2) <= 0.62 + 0.38 * np.cos(5 * ang)
    raise ValueError(f"unknown shape {shape!r}")


def thing_mix(pattern: str, u: np.ndarray, v: np.ndarray, un: np.ndarray, vn: np.ndarray,
              period: float, phase: float, salt: int) -> np.ndarray:
    """The mix field of a thing's pattern; ``u, v`` are object-frame pixels, ``un, vn`` normalised."""
    tau = np.float32(2 * np.pi)
    if pattern == "shade-radial":
        m = np.clip(un * un + vn * vn, 0, 1) * 0.8 + 0.2 * (un + vn < -0.9)
    elif pattern == "shade-u":
        m = np.clip(0.5 - 0.9 * un, 0, 1)
    elif pattern == "stripes":
        m = (np.sin(tau * u / period + phase) > 0).astype(np.float32)
    elif pattern == "stripes-v":
        m = (np.sin(tau * v / period + phase) > 0).astype(np.float32)
    elif pattern == "diagonal":
        m = (np.sin(tau * (u + v) / (period * 1.414) + phase) > 0).astype(np.float32)
    elif pattern == "spots":
        pu = (u + phase) % period - period / 2
        pv = (v + 2 * phase) % period - period / 2
        m = (pu * pu + pv * pv <= (0.3 * period) ** 2).astype(np.float32)
    elif pattern == "checker":
        m = ((np.floor((u + phase) / period) + np.floor((v + phase) / period)) % 2).astype(np.float32)
    elif pattern == "windows":
        m = (((u + phase) % period < period / 2) & ((v + phase) % period < period / 2)).astype(np.float32)
    elif pattern == "speckle":
        m = (hash_uniform(np.floor(u), np.floor(v), salt) < 0.35).astype(np.float32)
    elif pattern == "band":
        m = (np.abs(vn) < 0.3).astype(np.float32)
    elif pattern == "two-tone":
        m = (vn > 0.35).astype(np.float32) + ((vn > -0.45) & (vn <= 0.35)) * np.float32(0.55)
    elif pattern == "sectors":
        m = ((np.floor((np.arctan2(vn, un) + phase) / (np.pi / 4))) % 2).astype(np.float32)
    elif pattern == "rings":
        r = np.sqrt(un * un + vn * vn)
        m = ((r > 0.82) | (r < 0.12) | ((np.abs(un) < 0.06) & (vn < 0) & (vn > -0.6))).astype(np.float32)
    elif pattern == "centre":
        m = (un * un + vn * vn < 0.12).astype(np.float32)
    else:
        raise ValueError(f"unknown thing pattern {pattern!r}")
    return m.astype(np.float32)
