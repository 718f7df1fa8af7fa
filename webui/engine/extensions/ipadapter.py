"""IP-Adapter: reference images that carry a face or a style into the generation.

Adapters are files in ``models/ipadapter`` (``.safetensors`` with ``image_proj.*`` and
``ip_adapter.*`` keys, or the original ``.bin``). Their image projection says which variant
they are and what they read from the CLIP image encoder:

* ip-adapter_sd15 / _sdxl (and light): a linear projection of the pooled image embedding;
* ip-adapter-plus / plus-face (SD 1.5 and SDXL): the Resampler, on the encoder's penultimate
  hidden states;
* ip-adapter-full-face_sd15: an MLP on those hidden states.

Face ID adapters need insightface face embeddings and are refused by name.

The image encoder is a diffusers folder: ``models/ipadapter/<adapter name>_image_encoder``,
``models/ipadapter/image_encoder``, any other folder in ``models/ipadapter``, or the encoders
of h94/IP-Adapter in the local Hub cache -- the first whose width fits what the adapter reads
(ViT-H for SD 1.5 and the "vit-h" SDXL adapters, ViT-bigG for the other SDXL ones).

The adapter is loaded into the shared UNet for one pass only and the UNet's attention
processors are put back afterwards, so a request without reference images runs the plain
UNet and costs nothing extra.
"""

from __future__ import annotations

import contextlib
import json
from collections import OrderedDict
from pathlib import Path

import torch

from ...errors import UserError
from ...models import model_files
from ...request.ipadapter import (  # noqa: F401 - the reference type and its options, re-exported
    DEFAULT_WEIGHT, FIELD, MAX_ADAPTERS, IPAdapterRef, parse_adapters,
)
from .base import Extension

# Image encoders of the h94/IP-Adapter repository, used when they are in the local Hub cache.
HUB_ENCODERS = (("h94/IP-Adapter", "models/image_encoder"), ("h94/IP-Adapter", "sdxl_models/image_encoder"))


def adapter_dir(models_dir: Path) -> Path:
    return Path(models_dir) / "ipadapter"


ADAPTER_EXTS = (".safetensors", ".bin")


def list_adapters(models_dir: Path) -> list[str]:
    return sorted(m.stem for m in model_files.scan(adapter_dir(models_dir), ADAPTER_EXTS, recursive=False))


def _find(models_dir: Path, name: str) -> Path:
    folder = adapter_dir(models_dir)
    m = model_files.lookup(folder, name, ADAPTER_EXTS, what="IP-Adapter", field=FIELD, recursive=False)
    if m is None:
        raise UserError(f"IP-Adapter {name!r} not found: put its .safetensors (or .bin) in {folder}", field=FIELD)
    return m.path


def read_state_dict(path: Path) -> dict:
    """{"image_proj": {...}, "ip_adapter": {...}} from either file format."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            flat = load_file(str(path))
            sd: dict = {"image_proj": {}, "ip_adapter": {}}
            for k, v in flat.items():
                head, _, rest = k.partition(".")
                if head in sd:
                    sd[head][rest] = v
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's file
        raise UserError(f"IP-Adapter {path.name} cannot be read ({str(e)[:200]})", field=FIELD) from None
    if not isinstance(sd, dict) or not sd.get("image_proj") or not sd.get("ip_adapter"):
        raise UserError(f"{path.name} is not an IP-Adapter (no image_proj / ip_adapter weights)", field=FIELD)
    return sd


def check_family(name: str, sd: dict, unet_config) -> None:
    k = sd["ip_adapter"].get("1.to_k_ip.weight")
    cross = unet_config.get("cross_attention_dim")
    if k is not None and k.shape[1] != cross:
        raise UserError(f"IP-Adapter {name} is for a model with text width {k.shape[1]}, but this checkpoint's is "
                        f"{cross} (SD 1.x: 768, SDXL: 2048); choose an IP-Adapter for this checkpoint's family",
                        field=FIELD)


class IPAdapterCache:
    """Adapter state dicts and image encoders, kept on the device once loaded."""

    def __init__(self, models_dir: Path, device: torch.device, dtype: torch.dtype, size: int = 4):
        self.models_dir, self.device, self.dtype, self.size = Path(models_dir), device, dtype, size
        self._items: OrderedDict[str, object] = OrderedDict()

    def _keep(self, key: str, value):
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value

    def adapter(self, name: str) -> tuple[dict, Path]:
        path = _find(self.models_dir, name)
        key = f"adapter:{path}"
        if key not in self._items:
            sd = read_state_dict(path)
            sd = {part: {k: v.to(self.device, self.dtype) for k, v in d.items()} for part, d in sd.items()}
            self._keep(key, sd)
        self._items.move_to_end(key)
        return self._items[key], path

    def encoder(self, adapter_path: Path, sd: dict):
        from transformers import CLIPVisionModelWithProjection

        attr, width = image_input(adapter_path.stem, sd)
        enc_dir = find_encoder(adapter_dir(self.models_dir), adapter_path.stem, attr, width)
        key = f"encoder:{enc_dir}"
        if key not in self._items:
            try:
                enc = CLIPVisionModelWithProjection.from_pretrained(str(enc_dir), dtype=self.dtype)
            except (OSError, ValueError) as e:
                raise UserError(f"could not load the image encoder in {enc_dir}: {str(e)[:200]}", field=FIELD) from e
            self._keep(key, enc.to(self.device).eval())
        self._items.move_to_end(key)
        return self._items[key]


def image_input(name: str, sd: dict) -> tuple[str, int]:
    """What the adapter's image projection reads from the encoder: ("projection_dim", n) for
    the pooled image embedding, ("hidden_size", n) for the penultimate hidden states."""
    proj = sd["image_proj"]
    if "perceiver_resampler.proj_in.weight" in proj or ("norm.weight" in proj and "proj.0.weight" in proj):
        raise UserError(f"IP-Adapter {name} is a Face ID adapter, which needs insightface face embeddings; use "
                        "ip-adapter-plus-face or ip-adapter-full-face instead", field=FIELD)
    if "proj.weight" in proj:  # base / light: linear + norm
        return "projection_dim", proj["proj.weight"].shape[1]
    if "proj.0.weight" in proj and "proj.3.weight" in proj:  # full-face: MLP
        return "hidden_size", proj["proj.0.weight"].shape[1]
    if "latents" in proj and "proj_in.weight" in proj:  # plus / plus-face: Resampler
        return "hidden_size", proj["proj_in.weight"].shape[1]
    raise UserError(f"IP-Adapter {name} has an image projection of a kind this app does not know", field=FIELD)


def _encoder_candidates(folder: Path, stem: str) -> list[Path]:
    local = {m.stem: m.path for m in model_files.scan(folder, (), marker="config.json", recursive=False)}
    first = [local.pop(n) for n in (f"{stem}_image_encoder", "image_encoder") if n in local]
    found = first + list(local.values())  # only folders that stay inside models/ipadapter
    from huggingface_hub import try_to_load_from_cache

    for repo, sub in HUB_ENCODERS:
        cached = try_to_load_from_cache(repo, f"{sub}/config.json")
        if isinstance(cached, str):
            found.append(Path(cached).parent)
    return [p for p in found if (p / "config.json").is_file()]


def find_encoder(folder: Path, stem: str, attr: str, width: int) -> Path:
    """The first image encoder folder whose config has `attr` == `width`."""
    seen = []
    for candidate in _encoder_candidates(folder, stem):
        try:
            value = json.loads((candidate / "config.json").read_text()).get(attr)
        except (OSError, ValueError):
            continue
        if value == width:
            return candidate
        seen.append(f"{candidate.name} ({attr} {value})")
    what = "image embedding size" if attr == "projection_dim" else "hidden size"
    have = f"; found {', '.join(seen)}" if seen else ""
    raise UserError(f"IP-Adapter {stem} needs a CLIP image encoder with {what} {width} (ViT-H: h94/IP-Adapter "
                    "models/image_encoder for SD 1.5 and 'vit-h' SDXL adapters; ViT-bigG: sdxl_models/image_encoder "
                    f"for the other SDXL ones): put its diffusers folder (config.json + weights) at "
                    f"{folder / 'image_encoder'} or {folder / (stem + '_image_encoder')}{have}", field=FIELD)


class IPAdapter(Extension):
    """Reference images. The adapters are loaded into the pipeline's (shared) UNet for one pass
    and the UNet is put back as it was afterwards, whatever happens; they apply in the hires
    and face passes too, so the face fix keeps the identity the reference gives."""
    batchable = False  # per-request adapters and images

    def __init__(self, refs):
        self.refs = refs
        self.loaded: list[tuple[dict, Path]] = []
        self.encoder = None

    def prepare(self, ctx) -> None:
        """Load and check everything first: a bad adapter fails before any pass runs."""
        cache = ctx.engine.ipadapters
        self.loaded = [cache.adapter(r.model) for r in self.refs]
        for r, (sd, _) in zip(self.refs, self.loaded):
            check_family(r.model, sd, ctx.model.pipe.unet.config)
        encoders = {id(e): e for e in (cache.encoder(path, sd) for sd, path in self.loaded)}
        if len(encoders) > 1:
            raise UserError("these IP-Adapters need different image encoders; use adapters that share one",
                            field=FIELD)
        self.encoder = next(iter(encoders.values()))

    @contextlib.contextmanager
    def around_call(self, ctx, spec, pipe):
        from transformers import CLIPImageProcessor

        refs, unet = self.refs, pipe.unet
        saved_procs = dict(unet.attn_processors)
        saved_proj, saved_type = unet.encoder_hid_proj, unet.config.encoder_hid_dim_type
        size = self.encoder.config.image_size
        pipe.register_modules(image_encoder=self.encoder,
                              feature_extractor=CLIPImageProcessor(size={"shortest_edge": size},
                                                                   crop_size={"height": size, "width": size}))
        try:
            try:
                pipe.load_ip_adapter([sd for sd, _ in self.loaded], subfolder=[""] * len(refs),
                                     weight_name=[""] * len(refs), image_encoder_folder=None)
            except (RuntimeError, KeyError, ValueError) as e:
                raise UserError(f"IP-Adapter does not fit this checkpoint or its image encoder: {str(e)[:200]}",
                                field=FIELD) from e
            # Each weight goes into its adapter's value projection (the attention output is linear
            # in V) and the processors' own scale stays 1: that scale is a float a compiled UNet
            # bakes in, so every new weight would recompile it (a minute on a GPU).
            pipe.set_ip_adapter_scale([1.0] * len(refs))
            for proc in unet.attn_processors.values():
                for layer, r in zip(getattr(proc, "to_v_ip", ()), refs):
                    layer.weight.data = layer.weight.data * r.weight  # a new tensor: cached weights stay
                    if layer.bias is not None:
                        layer.bias.data = layer.bias.data * r.weight
            unet.to(ctx.engine.ipadapters.device)
            yield
        finally:
            # The projection first: a Resampler holds attention layers of its own, which
            # set_attn_processor would otherwise count among the UNet's.
            unet.encoder_hid_proj = saved_proj
            unet.config.encoder_hid_dim_type = saved_type
            unet.set_attn_processor(saved_procs)

    def call_kwargs(self, ctx, spec, pipe) -> dict:
        return {"ip_adapter_image": [r.image.convert("RGB") for r in self.refs]}

    def infotext(self, ctx) -> dict:
        return {f"IP-Adapter {n}": r.infotext() for n, r in enumerate(self.refs)}
