"""Tiny random-weight Stable Diffusion models: the demo model and the test fixtures.

They have the real block layouts (so every code path that walks UNet blocks, LoRA targets or
text-encoder layers sees what a real model has) at a tiny width, and the real CLIP tokenizer,
so prompt handling is realistic. Each model is saved twice: as a diffusers folder and as an
original-layout single .safetensors file (the A1111 format), written by `to_original_layout`,
the inverse of diffusers' single-file conversion. Weights come from fixed seeds, so a rebuild
is bit-identical and the folder and the file always hold the same weights.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from . import checkpoint_configs as cc
from . import checkpoints as ck

TinyFamily = Literal["sd1", "sd1-inpaint", "sdxl", "sdxl-inpaint"]

# Architecture of each tiny model, applied over the shipped full-size config; attention heads
# then follow the same rule the loader uses (checkpoint_configs.derive_config).
_TINY_VAE = {"block_out_channels": [32, 32, 64, 64]}
_TINY_CLIP = {"hidden_size": 32, "num_hidden_layers": 4, "intermediate_size": 64}
_TINY_SD1 = {
    "unet": {"block_out_channels": [32, 32, 64, 64], "cross_attention_dim": 32},
    "vae": _TINY_VAE,
    "text_encoder": _TINY_CLIP,
}
TINY_ARCH: dict[str, dict[str, dict]] = {
    "sd1": _TINY_SD1,
    "sd1-inpaint": _TINY_SD1,
    "sdxl": {
        # SDXL layout: no attention at the first level, more transformer layers deeper down.
        # Cross-attention sees both encoders' hidden states side by side: 32 + 48.
        # The added embedding takes the pooled projection (32) plus 6 time ids x 8.
        "unet": {
            "block_out_channels": [32, 64, 64],
            "transformer_layers_per_block": [1, 2, 2],
            "cross_attention_dim": 80,
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 32 + 6 * 8,
        },
        "vae": _TINY_VAE,
        "text_encoder": _TINY_CLIP,
        # Different width from text_encoder and >= 10 layers: diffusers' single-file code tells
        # the two encoders apart by these, and would silently misload otherwise.
        "text_encoder_2": {"hidden_size": 48, "num_hidden_layers": 10, "intermediate_size": 96, "projection_dim": 32},
    },
}
TINY_ARCH["sdxl-inpaint"] = TINY_ARCH["sdxl"]  # the same, with the 9-channel UNet of its family
_SEED = 20240229


@dataclass(frozen=True)
class TinyModel:
    folder: Path  # diffusers folder
    file: Path  # original-layout single .safetensors


def build_tiny_pipeline(family: TinyFamily):
    """The tiny pipeline in memory, on the CPU, float32."""
    import diffusers
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    arch = TINY_ARCH[family]
    cfg = {name: cc.derive_config(family, name, a) for name, a in arch.items()}

    def seeded(offset, make):
        with torch.random.fork_rng(devices=[]):  # fixed weights without disturbing the caller's RNG
            torch.manual_seed(_SEED + offset)
            return make().eval()

    parts = {
        "unet": seeded(0, lambda: diffusers.UNet2DConditionModel.from_config(cfg["unet"])),
        "vae": seeded(1, lambda: diffusers.AutoencoderKL.from_config(cfg["vae"])),
        "text_encoder": seeded(2, lambda: CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"]))),
    }
    if "text_encoder_2" in cfg:
        parts["text_encoder_2"] = seeded(
            3, lambda: CLIPTextModelWithProjection(CLIPTextConfig(**cfg["text_encoder_2"]))
        )
    sched_cfg = cc.shipped_config(family, "scheduler")
    scheduler = getattr(diffusers, sched_cfg["_class_name"]).from_config(sched_cfg)
    return ck.pipeline_class(family)(
        **parts, scheduler=scheduler, **ck.tokenizers_for(family), **ck.no_safety_checker(family)
    )


# ---- diffusers -> original (A1111) layout ---------------------------------------------------

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
           "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
_UNET_FIXED = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
               "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
               "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _resnet(rest: str) -> str:
    head, tail = rest.split(".", 1)
    return f"{_RESNET[head]}.{tail}"


def _unet_key(key: str, cfg) -> str:
    n = cfg["layers_per_block"] + 1  # input/output blocks per level: resnets (+ a down/upsampler)
    if m := re.fullmatch(r"(.+)\.(weight|bias)", key):
        if m[1] in _UNET_FIXED:
            return f"{_UNET_FIXED[m[1]]}.{m[2]}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        i, j = int(m[1]), int(m[3])
        return f"input_blocks.{n * i + j + 1}." + (f"0.{_resnet(m[4])}" if m[2] == "resnets" else f"1.{m[4]}")
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{n * (int(m[1]) + 1)}.0.op.{m[2]}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        i, j = int(m[1]), int(m[3])
        return f"output_blocks.{n * i + j}." + (f"0.{_resnet(m[4])}" if m[2] == "resnets" else f"1.{m[4]}")
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        i = int(m[1])
        slot = 2 if cfg["up_block_types"][i].startswith("CrossAttn") else 1  # after the attention, if any
        return f"output_blocks.{n * i + n - 1}.{slot}.conv.{m[2]}"
    raise KeyError(f"no original-layout name for UNet tensor {key}")


_VAE_PLAIN = re.compile(  # names both layouts share
    r"(encoder|decoder)\.(conv_in|conv_out|norm_out)\.(weight|bias)|(post_)?quant_conv\.(weight|bias)"
)


def _vae_key(key: str, value: torch.Tensor, levels: int) -> tuple[str, torch.Tensor]:
    key = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"encoder.down.{m[1]}.block.{m[2]}.{m[3]}", value
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.+)", key):
        return f"encoder.down.{m[1]}.downsample.{m[2]}", value
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        # The original decoder numbers its levels from the lowest resolution up: reversed.
        return f"decoder.up.{levels - 1 - int(m[1])}.block.{m[2]}.{m[3]}", value
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)", key):
        return f"decoder.up.{levels - 1 - int(m[1])}.upsample.{m[2]}", value
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}", value
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)", key):
        if m[3] == "weight" and value.ndim == 2:
            value = value[:, :, None, None]  # the original attention uses 1x1 convolutions
        return f"{m[1]}.mid.attn_1.{_VAE_ATTN[m[2]]}.{m[3]}", value
    if _VAE_PLAIN.fullmatch(key):
        return key, value
    raise KeyError(f"no original-layout name for VAE tensor {key}")


def unet_to_original(unet) -> dict[str, torch.Tensor]:
    return {cc.UNET + _unet_key(k, unet.config): v for k, v in unet.state_dict().items()}


def vae_to_original(vae) -> dict[str, torch.Tensor]:
    levels = len(vae.config.block_out_channels)
    out = {}
    for k, v in vae.state_dict().items():
        name, value = _vae_key(k, v, levels)
        out[cc.VAE + name] = value
    return out


def clip_to_original(text_encoder, prefix: str) -> dict[str, torch.Tensor]:
    """transformers layout, always with the `text_model.` level that original files have."""
    sd = text_encoder.state_dict()
    return {prefix + "text_model." + k.removeprefix("text_model."): v for k, v in sd.items()
            if not k.endswith("position_ids")}


def open_clip_to_original(text_encoder, prefix: str) -> dict[str, torch.Tensor]:
    """OpenCLIP layout: fused q/k/v (`in_proj_*`), `resblocks`, transposed `text_projection`."""
    sd = {k.removeprefix("text_model."): v for k, v in text_encoder.state_dict().items()}
    sd.pop("embeddings.position_ids", None)
    out = {
        "token_embedding.weight": sd.pop("embeddings.token_embedding.weight"),
        "positional_embedding": sd.pop("embeddings.position_embedding.weight"),
        "ln_final.weight": sd.pop("final_layer_norm.weight"),
        "ln_final.bias": sd.pop("final_layer_norm.bias"),
    }
    if "text_projection.weight" in sd:
        out["text_projection"] = sd.pop("text_projection.weight").T  # OpenCLIP computes x @ proj
    names = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
             "self_attn.out_proj": "attn.out_proj"}
    for i in range(text_encoder.config.num_hidden_layers):
        src, dst = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat([sd.pop(f"{src}self_attn.{p}_proj.{kind}") for p in "qkv"])
            for old, new in names.items():
                out[f"{dst}{new}.{kind}"] = sd.pop(f"{src}{old}.{kind}")
    if sd:
        raise KeyError(f"no OpenCLIP name for {sorted(sd)[:3]}")
    return {prefix + k: v for k, v in out.items()}


def to_original_layout(pipe) -> dict[str, torch.Tensor]:
    """An SD1 or SDXL pipeline's weights under original (A1111 / ldm / sgm) checkpoint names.

    (SD2 cannot be exported faithfully: its original text encoder has a last block that the
    diffusers format drops.)
    """
    out = {**unet_to_original(pipe.unet), **vae_to_original(pipe.vae)}
    if getattr(pipe, "text_encoder_2", None) is not None:
        out.update(clip_to_original(pipe.text_encoder, cc.CLIP_XL))
        out.update(open_clip_to_original(pipe.text_encoder_2, cc.OPENCLIP_XL))
    else:
        out.update(clip_to_original(pipe.text_encoder, cc.CLIP_SD1))
    return {k: v.detach().contiguous() for k, v in out.items()}


# ---- files on disk ----------------------------------------------------------------------------


def _save_file_atomically(tensors: dict[str, torch.Tensor], target: Path) -> None:
    from safetensors.torch import save_file

    target.parent.mkdir(parents=True, exist_ok=True)
    # A hidden name with another suffix: model lists never show a half-written file.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    try:
        # One metadata entry only: safetensors writes several in random order, and a rebuild
        # should give the same bytes.
        save_file(tensors, tmp, metadata={"format": "pt"})
        os.chmod(tmp, 0o644)  # mkstemp makes it private (0600)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _save_folder_atomically(pipe, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        pipe.save_pretrained(tmp, safe_serialization=True)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private (0700)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "model_index.json").is_file():  # someone else finished first: fine
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_tiny_model(family: TinyFamily, out_dir: str | os.PathLike) -> TinyModel:
    """Build (or reuse) out_dir/tiny-<family>/ and out_dir/tiny-<family>.safetensors."""
    if family not in TINY_ARCH:
        raise ValueError(f"no tiny model for {family!r}; choose one of {sorted(TINY_ARCH)}")
    out_dir = Path(out_dir)
    model = TinyModel(folder=out_dir / f"tiny-{family}", file=out_dir / f"tiny-{family}.safetensors")
    have_folder, have_file = (model.folder / "model_index.json").is_file(), model.file.is_file()
    if have_folder and have_file:
        return model
    pipe = build_tiny_pipeline(family)  # seeded: identical to what may already be on disk
    if not have_folder:
        _save_folder_atomically(pipe, model.folder)
    if not have_file:
        _save_file_atomically(to_original_layout(pipe), model.file)
    return model


def build_tiny_controlnet(family: TinyFamily):
    """A random ControlNet for the tiny `family` UNet (ControlNetModel.from_unet, fixed seed).
    from_unet zero-initialises the output convolutions, and with default init the map's signal
    fades over the embedding's convolutions: both get weights, so a unit visibly steers the
    picture and another map gives another picture."""
    import diffusers

    unet = build_tiny_pipeline(family).unet
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        net = diffusers.ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16, 32))
        for m in list(net.controlnet_down_blocks) + [net.controlnet_mid_block]:
            torch.nn.init.normal_(m.weight, std=0.5)
        for conv in net.controlnet_cond_embedding.modules():
            if isinstance(conv, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(conv.weight)
    return net


def ensure_demo_model(models_dir: str | os.PathLike) -> Path:
    """models_dir/Stable-diffusion/demo-tiny-sd15.safetensors, built once (single file only:
    loading it needs nothing but the config folders shipped with the package), and a matching
    ControlNet in models_dir/ControlNet, so the ControlNet accordions can be tried offline."""
    target = Path(models_dir) / "Stable-diffusion" / "demo-tiny-sd15.safetensors"
    if not target.is_file():
        _save_file_atomically(to_original_layout(build_tiny_pipeline("sd1")), target)
    control = Path(models_dir) / "ControlNet" / "demo-tiny-controlnet.safetensors"
    if not control.is_file():
        net = build_tiny_controlnet("sd1")
        _save_file_atomically({k: v.contiguous() for k, v in net.state_dict().items()}, control)
    return target
