"""ControlNet units: what a unit is, where its model comes from, how its control image is made,
and the pipeline arguments it adds.

Models live in ``models/ControlNet``: a single ``.safetensors`` (diffusers or original layout;
an optional ``<name>.json`` next to it is its diffusers config) or a diffusers folder, or a
Hub id already in the local cache. A single file without a config gets one derived from the
active checkpoint's UNet plus what the file's tensor shapes say, so the SD1.x / SDXL choice
always follows the checkpoint -- and a ControlNet of the other family is refused by name.

A1111's three control modes map onto diffusers like this:

* "Balanced": the ControlNet guides both halves of classifier-free guidance (guess_mode off).
* "My prompt is more important": diffusers has no per-layer soft weights for this; it runs as
  Balanced and the result says so in a warning.
* "ControlNet is more important": guess_mode on -- the ControlNet guides only the prompt half
  and its residuals fade in from the shallow to the deep layers. diffusers applies guess_mode
  to all units of a request at once, so one such unit switches it on for all (also warned).
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from ...models import annotators, model_files
from ...errors import UserError
from ...imaging.poses import render_by_key
from ...request.controlnet import (  # noqa: F401 - the unit type and its options, re-exported
    CONTROL_MODES, FIELD, MAX_UNITS, MODULES, RESIZE_MODES, ControlUnit, module_kind, parse_units,
    units_from_alwayson,
)
from ..tasks import resize_image
from .base import Extension

log = logging.getLogger(__name__)

ANNOTATORS_SUBDIR = "annotators"


# ---- models ----------------------------------------------------------------------------------

def controlnet_dir(models_dir: Path) -> Path:
    return Path(models_dir) / "ControlNet"


def _local_models(models_dir: Path) -> list[model_files.ModelFile]:
    return model_files.scan(controlnet_dir(models_dir), (".safetensors",), marker="config.json", recursive=False)


def list_models(models_dir: Path) -> list[str]:
    """Names the UI offers: single files (stem) and diffusers folders."""
    return sorted((m.stem for m in _local_models(models_dir)), key=str.lower)


def find_model(models_dir: Path, name: str) -> tuple[str, Path]:
    """(display name, local file or folder) for a model name, "name [hash]" or file name: a
    listed model in models/ControlNet, else a Hub id `org/name` from the local Hugging Face cache."""
    folder = controlnet_dir(models_dir)
    wanted = model_files.check_name(folder, name, "ControlNet model", FIELD)
    m = model_files.pick(_local_models(models_dir), wanted, (".safetensors",))
    if m is not None:
        return m.stem, m.path
    snapshot = model_files.hub_snapshot(wanted)
    if snapshot is not None:
        return wanted, snapshot
    if model_files.is_hub_id(wanted):
        raise UserError(f"ControlNet {wanted!r} is not in the local Hugging Face cache: download it first "
                        f"(hf download {wanted}) or put the model in models/ControlNet", field=FIELD)
    raise UserError(f"ControlNet model {name!r} not found: put a .safetensors file or a diffusers folder in "
                    f"{folder}", field=FIELD)


def _strip(shapes: dict) -> dict:
    return {k.removeprefix("control_model."): v for k, v in shapes.items()}


def read_file_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return _strip({k: tuple(f.get_slice(k).get_shape()) for k in f.keys()})
    except Exception as e:  # noqa: BLE001 - any unreadable header is the user's file
        raise UserError(f"ControlNet {path.name} is not a readable .safetensors file ({e})", field=FIELD) from None


def _file_traits(shapes: dict) -> tuple[bool, int | None]:
    """(is SDXL, cross-attention width) from a ControlNet's tensor shapes (either layout)."""
    sdxl = "add_embedding.linear_1.weight" in shapes or "label_emb.0.0.weight" in shapes
    cross = next((s[1] for k, s in shapes.items() if k.endswith("attn2.to_k.weight")), None)
    return sdxl, cross


def check_family(label: str, sdxl: bool, cross: int | None, unet_config) -> None:
    base_sdxl = unet_config.get("addition_embed_type") == "text_time"
    base_cross = unet_config.get("cross_attention_dim")
    if sdxl != base_sdxl or (cross is not None and cross != base_cross):
        fam = "an SDXL" if sdxl else "an SD 1.x/2.x"
        base = "an SDXL" if base_sdxl else "an SD 1.x/2.x"
        raise UserError(f"ControlNet {label} is {fam} ControlNet (text width {cross}) but the checkpoint is "
                        f"{base} model (text width {base_cross}); choose a ControlNet made for this checkpoint's "
                        "family", field=FIELD)


_FROM_UNET = ("in_channels", "flip_sin_to_cos", "freq_shift", "down_block_types", "only_cross_attention",
              "block_out_channels", "layers_per_block", "downsample_padding", "mid_block_scale_factor", "act_fn",
              "norm_num_groups", "norm_eps", "cross_attention_dim", "attention_head_dim", "num_attention_heads",
              "use_linear_projection", "class_embed_type", "num_class_embeds", "upcast_attention",
              "resnet_time_scale_shift", "projection_class_embeddings_input_dim", "mid_block_type",
              "transformer_layers_per_block", "encoder_hid_dim", "encoder_hid_dim_type", "addition_embed_type",
              "addition_time_embed_dim")


def derive_config(shapes: dict, unet_config) -> dict:
    """A ControlNet config for a single file: the checkpoint UNet's architecture (what
    ControlNetModel.from_unet would build), corrected by what the file's shapes show."""
    cfg = {k: unet_config[k] for k in _FROM_UNET if k in unet_config}
    cfg["_class_name"] = "ControlNetModel"
    conv_in = shapes.get("conv_in.weight") or shapes.get("input_blocks.0.0.weight")
    if conv_in:
        cfg["in_channels"] = conv_in[1]
    if "controlnet_cond_embedding.conv_in.weight" in shapes:  # diffusers layout: exact channel list
        chans = [shapes["controlnet_cond_embedding.conv_in.weight"][0]]
        i = 1
        while f"controlnet_cond_embedding.blocks.{i}.weight" in shapes:
            chans.append(shapes[f"controlnet_cond_embedding.blocks.{i}.weight"][0])
            i += 2
        cfg["conditioning_embedding_out_channels"] = chans
        levels = len(cfg.get("block_out_channels", ()))
        layers = []
        for lvl in range(levels):
            n = len({k.split(".")[5] for k in shapes
                     if k.startswith(f"down_blocks.{lvl}.attentions.0.transformer_blocks.")})
            layers.append(n)
        if any(layers):  # SDXL small/mid ControlNets have fewer transformer layers than the UNet
            cfg["transformer_layers_per_block"] = [max(1, n) for n in layers]
    return cfg


def load_controlnet(source: Path, label: str, unet_config, dtype: torch.dtype):
    """A ControlNetModel on the CPU, checked against the checkpoint's family first."""
    import diffusers

    try:
        if source.is_dir():  # a diffusers folder, or a Hub snapshot in the local cache
            cfg = json.loads((source / "config.json").read_text())
            check_family(label, cfg.get("addition_embed_type") == "text_time", cfg.get("cross_attention_dim"),
                         unet_config)
            return diffusers.ControlNetModel.from_pretrained(source, torch_dtype=dtype, local_files_only=True)
        shapes = read_file_shapes(source)
        if not any(k.startswith(("controlnet_cond_embedding.", "input_hint_block.")) for k in shapes):
            raise UserError(f"{source.name} is not a ControlNet model (no control input layers)", field=FIELD)
        check_family(label, *_file_traits(shapes), unet_config)
        sidecar = source.with_suffix(".json")  # read only when it stays in the model's folder
        use_sidecar = sidecar.is_file() and model_files.is_inside(source.parent, sidecar)
        cfg = json.loads(sidecar.read_text()) if use_sidecar else derive_config(shapes, unet_config)
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:  # from_single_file reads its config from a folder
            (Path(tmp) / "config.json").write_text(json.dumps(cfg))
            return diffusers.ControlNetModel.from_single_file(str(source), config=tmp, torch_dtype=dtype,
                                                              local_files_only=True)
    except UserError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise UserError(f"could not load ControlNet {label}: {str(e)[:300]}", field=FIELD) from e


class ControlNetCache:
    """Loaded ControlNets on the device, least recently used dropped first. Keyed by source
    and the checkpoint family, since a single file's config follows the checkpoint."""

    def __init__(self, models_dir: Path, device: torch.device, dtype: torch.dtype, size: int = MAX_UNITS):
        self.models_dir, self.device, self.dtype, self.size = Path(models_dir), device, dtype, size
        self._items: OrderedDict[tuple, object] = OrderedDict()
        self.annotators = annotators.AnnotatorCache(controlnet_dir(models_dir) / ANNOTATORS_SUBDIR, device)

    def get(self, name: str, unet_config) -> tuple[object, str]:
        label, source = find_model(self.models_dir, name)
        key = (str(source), unet_config.get("cross_attention_dim"), unet_config.get("addition_embed_type"))
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key], label
        net = load_controlnet(source, label, unet_config, self.dtype).eval()
        if self.device.type == "cpu":  # own the memory rather than map the file (see engine._own_memory)
            for t in list(net.parameters()) + list(net.buffers()):
                t.data = t.data.clone(memory_format=torch.contiguous_format)
        else:
            net.to(self.device)
        self._items[key] = net
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return net, label

    def loaded(self) -> list[str]:
        return [k[0] for k in self._items]


# ---- control images --------------------------------------------------------------------------

def canny(img: Image.Image, low: float, high: float) -> Image.Image:
    edges = cv2.Canny(np.asarray(img.convert("L")), low, high)
    return Image.fromarray(edges).convert("RGB")


def control_image(unit: ControlUnit, width: int, height: int, annotator_cache: annotators.AnnotatorCache,
                  region: tuple[int, int, int, int] | None = None,
                  original_size: tuple[int, int] | None = None) -> Image.Image:
    """The map the ControlNet sees, at the pipeline's width x height. Inpaint (`region` of the
    `original_size` picture): the map covers the whole picture and the model sees the same
    part of it as of the picture -- with "only masked", the crop around the mask."""
    inpaint = region is not None and original_size is not None
    if unit.image is None:
        if not inpaint:
            return render_by_key(unit.pose, width, height)
        return render_by_key(unit.pose, *original_size).crop(region).resize((width, height), Image.LANCZOS)
    img = unit.image.convert("RGB")
    if inpaint:
        img = resize_image(img, *original_size, unit.resize_mode).crop(region)
    img = resize_image(img, width, height, unit.resize_mode)
    kind = module_kind(unit.module)
    if kind == "canny":
        return canny(img, unit.threshold_a, unit.threshold_b)
    if kind == "annotator":
        return annotators.run(annotator_cache, unit.module, img, unit.processor_res, (width, height))
    return img


# ---- pipeline arguments ----------------------------------------------------------------------

def pipeline_kwargs(cls_name: str, units, images: list[Image.Image], warnings: list[str]) -> dict:
    one = len(units) == 1
    # The plain text-to-image ControlNet pipelines take the map as `image`; the others as `control_image`.
    key = "image" if cls_name in ("StableDiffusionControlNetPipeline", "StableDiffusionXLControlNetPipeline") \
        else "control_image"
    if any(u.control_mode == 1 for u in units):
        note = "ControlNet control mode 'My prompt is more important' runs as 'Balanced' here"
        warnings.append(note) if note not in warnings else None
    guess = any(u.control_mode == 2 for u in units)
    if guess and len(units) > 1 and not all(u.control_mode == 2 for u in units):
        note = "ControlNet 'ControlNet is more important' applies to all units of a request at once"
        warnings.append(note) if note not in warnings else None
    return {
        key: images[0] if one else images,
        "controlnet_conditioning_scale": units[0].weight if one else [u.weight for u in units],
        "control_guidance_start": units[0].guidance_start if one else [u.guidance_start for u in units],
        "control_guidance_end": units[0].guidance_end if one else [u.guidance_end for u in units],
        "guess_mode": guess,
    }


# the same task with ControlNet units
CONTROLNET_CLASSES = {
    "StableDiffusionPipeline": "StableDiffusionControlNetPipeline",
    "StableDiffusionImg2ImgPipeline": "StableDiffusionControlNetImg2ImgPipeline",
    "StableDiffusionInpaintPipeline": "StableDiffusionControlNetInpaintPipeline",
    "StableDiffusionXLPipeline": "StableDiffusionXLControlNetPipeline",
    "StableDiffusionXLImg2ImgPipeline": "StableDiffusionXLControlNetImg2ImgPipeline",
    "StableDiffusionXLInpaintPipeline": "StableDiffusionXLControlNetInpaintPipeline",
}


class ControlNet(Extension):
    """The request's ControlNet units. Every pass gets each unit's map made again at its own
    size and of the part of the picture it sees (as the A1111 ControlNet extension does for
    the hires pass), so edges and skeletons stay sharp and the face pass sees the face's crop."""
    batchable = False  # per-request control maps

    def __init__(self, units):
        self.units = units
        self.nets: list = []
        self.params: dict[str, str] = {}
        self._maps: dict[tuple, list[Image.Image]] = {}

    def prepare(self, ctx) -> None:
        cache = ctx.engine.controlnets
        unet_config = ctx.model.pipe.unet.config
        self.nets, self.params, self._maps = [], {}, {}
        for n, unit in enumerate(self.units):
            net, label = cache.get(unit.model, unet_config)
            _, source = find_model(cache.models_dir, unit.model)
            if source.is_file():
                label = f"{label} [{ctx.engine.catalog.hashes.sha256(source)[:8]}]"
            self.nets.append(net)
            ctx.note(*annotators.notes(unit.module))
            self.params[f"ControlNet {n}"] = unit.infotext(label)

    def pipeline_class(self, name: str) -> str:
        return CONTROLNET_CLASSES[name]

    def components(self, ctx) -> dict:
        # a list becomes a MultiControlNetModel in the pipeline
        return {"controlnet": self.nets[0] if len(self.nets) == 1 else list(self.nets)}

    def maps(self, ctx, spec) -> list[Image.Image]:
        key = (spec.width, spec.height, spec.region, spec.source_size)
        if key not in self._maps:  # annotators are slow: once per size and crop
            self._maps[key] = [control_image(u, spec.width, spec.height, ctx.engine.controlnets.annotators,
                                             spec.region, spec.source_size) for u in self.units]
        return self._maps[key]

    def call_kwargs(self, ctx, spec, pipe) -> dict:
        notes: list[str] = []
        kwargs = pipeline_kwargs(pipe.__class__.__name__, self.units, self.maps(ctx, spec), notes)
        ctx.note(*notes)
        return kwargs

    def infotext(self, ctx) -> dict:
        return dict(self.params)
