"""The version: its one source (the build reads it here)."""

__version__ = "0.3.0"
