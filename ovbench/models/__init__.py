"""Models: the parts methods and baselines compose (CLIP wrapper, prompt templates, ...)."""
