"""Reference implementations of the methods ovbench reproduces (GKC, EZSD). Importing the package
registers their training methods with ``ovbench train``."""
from methods.ezsd import method as ezsd_method
from methods.gkc import training as gkc_training

__all__ = ["ezsd_method", "gkc_training"]
