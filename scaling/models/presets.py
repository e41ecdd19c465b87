"""Moved: the method presets are config data, :mod:`scaling.config.methods` (kept for code written against this
name; import ``scaling.config.methods``)."""

from scaling.config.methods import METHODS, PAPER_TABLE1_PARAMS

__all__ = ["METHODS", "PAPER_TABLE1_PARAMS"]
