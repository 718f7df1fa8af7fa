"""Prompts: parsing, encoding, styles, presets and translation."""
