"""Tokenometer's PySide6 desktop app. Importing this package loads no Qt; desktop.app does."""
