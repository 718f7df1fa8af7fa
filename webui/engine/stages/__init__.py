"""Passes after the first image: hires fix and face detailer."""
