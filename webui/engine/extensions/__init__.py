"""Features that plug into every pass: one module per feature, each an `Extension` (base.py).

`for_request` is the one place that knows which features exist: to add one, write its module
and add one line here. The queue's batch key and the later passes' extension lists are derived
from what it returns.
"""

from __future__ import annotations

from .base import Extension
from .controlnet import ControlNet
from .ipadapter import IPAdapter
from .lora import Lora
from .progress import Progress
from .regions import Regions
from .vae import Vae


def for_request(req, jobs: list) -> list[Extension]:
    """The extensions of a run of `req` (the first of merged requests) for `jobs`, in the
    order they are prepared: the VAE first, so a bad VAE name fails before anything loads."""
    exts: list[Extension] = [Vae(req.sd_vae), Lora(req.prompt, req.negative_prompt)]
    if req.controlnet_units:
        exts.append(ControlNet(req.controlnet_units))
    if req.ip_adapters:
        exts.append(IPAdapter(req.ip_adapters))
    if req.regions is not None:
        exts.append(Regions(req.regions))
    exts.append(Progress(jobs))
    return exts


def batch_key(req) -> tuple | None:
    """What the extensions need equal among requests that share one UNet batch; None when one
    of them cannot be batched."""
    exts = for_request(req, [])
    if not all(e.batchable for e in exts):
        return None
    return tuple((type(e).__name__, e.batch_key()) for e in exts)
