"""Vocabulary tools: WordNet synonym tables per protocol and GKC's CLIP plausibility filter.

- :mod:`ovbench.vocab.wordnet`: candidate synonyms of a class name (WordNet 3.0 noun lemmas);
- :mod:`ovbench.vocab.tables`: the versioned per-protocol tables (``ovbench/vocab/tables/*.json``);
- :mod:`ovbench.vocab.filter`: per-segment CLIP probabilities of those candidates.
"""
