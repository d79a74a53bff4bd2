"""The synthetic open-vocabulary world (protocol ``synth-ov``): images, videos, COCO instances
and image-caption pairs, generated deterministically from a seed."""
from ovbench.synth.generate import GENERATOR_VERSION, WorldSizes, generate_world, read_world

__all__ = ["GENERATOR_VERSION", "WorldSizes", "generate_world", "read_world"]
