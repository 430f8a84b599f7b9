"""Deciding genres: the canonical vocabulary, the broad source, abstaining, multi-label thresholds, album mode."""
