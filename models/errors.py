"""The core's error types: one base class so callers can catch everything Tokenometer raises on purpose."""

from __future__ import annotations


class TokenometerError(Exception):
    """Base of every error the core raises deliberately; its message is meant for the user."""


class ModelFileError(TokenometerError):
    """A model file is missing, unreadable, not GGUF, truncated or malformed."""


class BenchmarkError(TokenometerError):
    """A benchmark could not be run as asked (bad parameters, worker failure, cancel)."""


class HubError(TokenometerError):
    """The Hugging Face Hub (or a mirror) answered with an error or something unusable."""


class DownloadError(TokenometerError):
    """A download failed, was cut off, or did not verify."""


class StoreError(TokenometerError):
    """The results store cannot be opened, migrated or written."""


class ReportError(TokenometerError):
    """A report cannot be written, or a report file cannot be read back."""
