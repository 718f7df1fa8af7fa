"""Peak memory per generation stage, for results and the GPU benchmark.

On CUDA a stage records ``torch.cuda.max_memory_allocated`` over the stage (the counter is
reset when the stage starts). On other devices there is no resettable peak counter, so a
stage records the process's resident set size (RSS) at its end, whichever is larger of
start and end. Values are MiB.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch


def _rss_mib() -> float:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


@contextmanager
def stage_peak(device: torch.device, record: dict | None, name: str):
    """Record the stage's peak memory (MiB) under ``record[name]`` (max over repeats).

    ``record`` None measures nothing: stages must not nest (a reset would cut the outer
    stage's window short), so work running inside a measured stage passes None.
    """
    if record is None:
        yield
        return
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = 0.0
    else:
        start = _rss_mib()
    try:
        yield
    finally:
        if cuda:
            peak = torch.cuda.max_memory_allocated(device) / 2**20
        else:
            peak = max(start, _rss_mib())
        record[name] = round(max(record.get(name, 0.0), peak), 1)
