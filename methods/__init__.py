"""Reference implementations of the methods ovbench reproduces (GKC, EZSD)."""
