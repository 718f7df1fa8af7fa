"""The request's VAE (`sd_vae`), as an extension: the pipeline encodes and decodes with it.

The checkpoint's own VAE is never modified; chosen VAEs are loaded next to it and kept on the
device (the last two), keyed by file, its modification stamp and the VAE architecture.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from ...models.vae import is_automatic, load_vae
from .base import Extension


class VaeCache:
    def __init__(self, vae_files, device: torch.device, dtype: torch.dtype, size: int = 2):
        self.vae_files, self.device, self.dtype, self.size = vae_files, device, dtype, size
        self._items: OrderedDict[tuple, torch.nn.Module] = OrderedDict()

    def get(self, name: str, like) -> tuple[torch.nn.Module, dict]:
        """The VAE named `name` for a checkpoint whose VAE is `like`, and its infotext keys."""
        vf = self.vae_files.find(name)
        key = (str(vf.path), vf.stamp, tuple(like.config.block_out_channels), like.config.latent_channels,
               like.config.scaling_factor)
        vae = self._items.get(key)
        if vae is None:
            vae = load_vae(vf, like).to(self.device, self.dtype)
            self._items[key] = vae
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        self._items.move_to_end(key)
        return vae, {"VAE hash": self.vae_files.short_hash(vf), "VAE": vf.name}

    def values(self) -> list[torch.nn.Module]:
        return list(self._items.values())


class Vae(Extension):
    def __init__(self, name: str):
        self.name = name
        self.vae = None
        self.info: dict = {}

    def batch_key(self) -> tuple:
        return (self.name,)

    def prepare(self, ctx) -> None:
        if not is_automatic(self.name):
            self.vae, self.info = ctx.engine.vae_cache.get(self.name, ctx.model.pipe.vae)

    def components(self, ctx) -> dict:
        return {"vae": self.vae} if self.vae is not None else {}

    def infotext(self, ctx) -> dict:
        return dict(self.info)
