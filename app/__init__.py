"""Switchboard: run an office's AI work on hardware the office owns."""

__version__ = "0.1.0"
