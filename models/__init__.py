"""Tokenometer's GUI-free core: everything done to a model (find, fetch, fit, benchmark, keep, report)."""

__version__ = "0.1.0"
