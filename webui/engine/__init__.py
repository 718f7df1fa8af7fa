"""The engine: the pipeline manager, the denoise loop and the per-request state it reads."""
