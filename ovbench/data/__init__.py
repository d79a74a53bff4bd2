"""Data readers: where each protocol's ground truth and images live, and how labels decode."""
