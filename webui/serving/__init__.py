"""Serving: the Service front door, GPU queue, callers, limits and outputs."""
