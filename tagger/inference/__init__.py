"""Backends and what they hear: the plugin protocol, input kinds, the per-file analysis step, model files and cards,
batched prediction."""
