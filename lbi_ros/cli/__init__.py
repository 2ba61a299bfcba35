"""Thin command-line entry points (``lbi ...``); each parses a few flags and calls the library."""
