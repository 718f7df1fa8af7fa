"""Model configs from a checkpoint's tensor shapes: the architecture each component's shapes
imply (UNet, VAE, CLIP and OpenCLIP text towers), the shipped full-size config of each family
(webui/configs/<family>), a derived config where the shapes differ from it, and a json-only
config folder to hand to diffusers' `from_single_file`. The rules this follows (attention
heads, where derived folders are written) are in `checkpoints.py`'s docstring.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from ..errors import UserError

CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"

# Key prefixes of the original (A1111/ldm/sgm) checkpoint layout.
UNET = "model.diffusion_model."
VAE = "first_stage_model."
CLIP_SD1 = "cond_stage_model.transformer."
OPENCLIP_SD2 = "cond_stage_model.model."
CLIP_XL = "conditioner.embedders.0.transformer."
OPENCLIP_XL = "conditioner.embedders.1.model."


def attention_heads(width: int, head_size: int = 64) -> int:
    """Heads for a width under the head-size-64 convention (see the module docstring)."""
    heads = max(1, width // head_size)
    while width % heads:
        heads -= 1
    return heads


def _count(shapes: dict, prefix: str) -> int:
    """How many numbered children `prefix<N>.` exist (0 when none)."""
    ids = {k[len(prefix):].split(".", 1)[0] for k in shapes if k.startswith(prefix)}
    return max((int(i) + 1 for i in ids if i.isdigit()), default=0)


def _unet_arch(s: dict, te2_projection: int | None) -> dict:
    in_blocks = _count(s, UNET + "input_blocks.")
    levels = 1 + sum(UNET + f"input_blocks.{i}.0.op.weight" in s for i in range(in_blocks))
    per_level = (in_blocks - 1 - (levels - 1)) // levels  # resnets per level; level i+1 starts after a downsampler
    first = [UNET + f"input_blocks.{(per_level + 1) * i + 1}." for i in range(levels)]
    down_layers = [_count(s, p + "1.transformer_blocks.") for p in first]
    up_layers = [_count(s, UNET + f"output_blocks.{(per_level + 1) * i}.1.transformer_blocks.") for i in range(levels)]
    attn = first[next(i for i, n in enumerate(down_layers) if n)] + "1."
    arch = {
        "in_channels": s[UNET + "input_blocks.0.0.weight"][1],
        "out_channels": s[UNET + "out.2.weight"][0],
        "block_out_channels": [s[p + "0.out_layers.3.weight"][0] for p in first],
        "layers_per_block": per_level,
        "down_block_types": ["CrossAttnDownBlock2D" if n else "DownBlock2D" for n in down_layers],
        "up_block_types": ["CrossAttnUpBlock2D" if n else "UpBlock2D" for n in up_layers],
        "cross_attention_dim": s[attn + "transformer_blocks.0.attn2.to_k.weight"][1],
        "use_linear_projection": len(s[attn + "proj_in.weight"]) == 2,
    }
    # Levels without attention count as 1, as in the published SDXL config ([1, 2, 10]).
    layers = [n or 1 for n in down_layers]
    arch["transformer_layers_per_block"] = 1 if set(layers) == {1} else layers
    if UNET + "label_emb.0.0.weight" in s and te2_projection:
        # SDXL: the pooled text embedding plus 6 time ids (size, crop, target size) embedded.
        arch["projection_class_embeddings_input_dim"] = n_in = s[UNET + "label_emb.0.0.weight"][1]
        arch["addition_time_embed_dim"] = (n_in - te2_projection) // 6
    return arch


def _vae_arch(s: dict) -> dict:
    enc = VAE + "encoder."
    levels = _count(s, enc + "down.")
    return {
        "in_channels": s[enc + "conv_in.weight"][1],
        "out_channels": s[VAE + "decoder.conv_out.weight"][0],
        "latent_channels": s[enc + "conv_out.weight"][0] // 2,  # the encoder outputs mean and logvar
        "block_out_channels": [s[enc + f"down.{i}.block.0.conv1.weight"][0] for i in range(levels)],
        "layers_per_block": _count(s, enc + "down.0.block."),
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
    }


def _clip_arch(s: dict, prefix: str) -> dict:
    """A transformers-layout CLIP text model (SD1, SDXL's first encoder)."""
    if any(k.startswith(prefix + "text_model.") for k in s):
        prefix += "text_model."
    vocab, hidden = s[prefix + "embeddings.token_embedding.weight"]
    return {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "max_position_embeddings": s[prefix + "embeddings.position_embedding.weight"][0],
        "num_hidden_layers": _count(s, prefix + "encoder.layers."),
        "intermediate_size": s[prefix + "encoder.layers.0.mlp.fc1.weight"][0],
    }


def _open_clip_arch(s: dict, prefix: str, sd2: bool) -> dict:
    """An OpenCLIP-layout text model (SD2, SDXL's second encoder)."""
    vocab, hidden = s[prefix + "token_embedding.weight"]
    arch = {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "max_position_embeddings": s[prefix + "positional_embedding"][0],
        # SD2 uses the penultimate layer, so diffusers' SD2 text encoder drops the last block.
        "num_hidden_layers": _count(s, prefix + "transformer.resblocks.") - (1 if sd2 else 0),
        "intermediate_size": s[prefix + "transformer.resblocks.0.mlp.c_fc.weight"][0],
    }
    if not sd2:
        arch["projection_dim"] = s[prefix + "text_projection"][1]
    return arch


def shipped_config(family: str, component: str) -> dict:
    name = "scheduler/scheduler_config.json" if component == "scheduler" else f"{component}/config.json"
    return json.loads((CONFIGS_DIR / family / name).read_text())


# Values a config may leave out, with diffusers' defaults, so absent == default compares equal.
_DEFAULTS = {"transformer_layers_per_block": 1, "use_linear_projection": False}


def derive_config(family: str, component: str, arch: dict) -> dict:
    """The shipped config of `component` with `arch` applied, heads following the rules above."""
    cfg = shipped_config(family, component)
    changed = {k: v for k, v in arch.items() if cfg.get(k, _DEFAULTS.get(k)) != v}
    cfg.update(changed)
    if component == "unet" and "block_out_channels" in changed and not family.startswith("sd1"):
        cfg["attention_head_dim"] = [attention_heads(c) for c in cfg["block_out_channels"]]
    if component.startswith("text_encoder") and "hidden_size" in changed:
        cfg["num_attention_heads"] = attention_heads(cfg["hidden_size"])
    return cfg


def infer_configs(shapes: dict, family: str) -> dict[str, dict]:
    """Component -> full config for the components whose architecture differs from the shipped one."""
    s = shapes
    try:
        if family.startswith("sdxl"):
            te = {"text_encoder": _clip_arch(s, CLIP_XL), "text_encoder_2": _open_clip_arch(s, OPENCLIP_XL, sd2=False)}
        elif family.startswith("sd2"):
            te = {"text_encoder": _open_clip_arch(s, OPENCLIP_SD2, sd2=True)}
        else:
            te = {"text_encoder": _clip_arch(s, CLIP_SD1)}
        te2_projection = te.get("text_encoder_2", {}).get("projection_dim")
        archs = {"unet": _unet_arch(s, te2_projection), "vae": _vae_arch(s), **te}
    except (KeyError, StopIteration, ValueError, IndexError) as exc:
        name = getattr(shapes, "source", "this file")
        raise UserError(
            f"{name}: unexpected {family} layout (missing or odd tensor {exc}); the file may be damaged"
        ) from exc
    derived = {}
    for component, arch in archs.items():
        cfg = derive_config(family, component, arch)
        if cfg != shipped_config(family, component):
            derived[component] = cfg
    return derived


@contextlib.contextmanager
def config_folder(family: str, derived: dict[str, dict], cache_dir: str | os.PathLike | None = None) -> Iterator[Path]:
    """The config folder to hand to from_single_file: the shipped one, or a derived copy."""
    shipped = CONFIGS_DIR / family
    if not derived:
        yield shipped
        return

    def write(target: Path) -> None:
        shutil.copytree(shipped, target)
        for component, cfg in derived.items():
            (target / component / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))

    if cache_dir is None:
        with tempfile.TemporaryDirectory(prefix="sd-config-") as tmp:
            write(Path(tmp) / family)
            yield Path(tmp) / family
        return
    digest = hashlib.sha256(json.dumps(derived, sort_keys=True).encode()).hexdigest()[:16]
    target = Path(cache_dir) / f"{family}-{digest}"
    if not (target / "model_index.json").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=target.parent))
        write(tmp / "c")
        try:
            os.replace(tmp / "c", target)  # atomic: a folder there is always complete
        except OSError:
            if not (target / "model_index.json").is_file():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    yield target
