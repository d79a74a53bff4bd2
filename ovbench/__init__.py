"""ovbench: benchmark and evaluation suite for open-vocabulary segmentation and detection."""

__version__ = "0.1.0"
