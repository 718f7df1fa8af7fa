"""Loading Stable Diffusion checkpoints: single files (A1111/original layout), diffusers folders
and Hub repo ids already in the local Hugging Face cache.

Single files go through diffusers' own `from_single_file` with a config folder we ship
(webui/configs/<family>), so nothing is fetched from the Hub. The config describes the full-size
architecture; when a file's tensor shapes say otherwise (tiny test models, unusual fine-tunes)
we derive a json-only config folder from the shapes and pass that instead. Real full-size
checkpoints match the shipped configs exactly, so for them nothing is overridden.

Rules chosen here (kept in one place so the tiny-model builder follows them too):

* Attention heads are not stored in any tensor shape. When a width differs from the shipped
  config we keep the family's convention: SD1 UNets use 8 heads at every level; SD2/SDXL UNets
  and every CLIP/OpenCLIP text tower use a head size of 64, i.e. width // 64 heads (at least 1,
  reduced until it divides the width).
* SD2 prediction type cannot be read from shapes either. Default: the shipped sd2 config is
  SD 2.1-768, v-prediction; sd2-inpaint and all others are epsilon. Overrides, strongest
  first: the `prediction_type` argument, a sidecar `<checkpoint>.yaml` next to the file (the
  A1111 convention: `parameterization: "v"` means v-prediction, a yaml without it epsilon), a
  `v_pred` key inside the file (v-prediction fine-tunes of SD1/SDXL mark themselves this way).
  The sidecar and key rules apply to single files; diffusers folders carry their own
  scheduler config, which is kept unless the argument is given.
* Derived config folders: by default written to a temporary folder that is removed once the
  pipeline is built (the json is read at load time only, and users often keep models on
  read-only or shared disks, so we never write next to their checkpoints). Pass `cache_dir`
  to keep them; they are named by a hash of their content, so a cached folder is never stale.

Deriving configs from shapes and writing config folders live in `checkpoint_configs.py`.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import torch

from ..errors import UserError
from .checkpoint_configs import (
    CLIP_SD1,
    CONFIGS_DIR,
    OPENCLIP_SD2,
    OPENCLIP_XL,
    UNET,
    VAE,
    config_folder,
    infer_configs,
)
from .model_files import is_inside

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

Family = Literal["sd1", "sd1-inpaint", "sd2", "sd2-inpaint", "sdxl", "sdxl-inpaint"]
FAMILIES: tuple[str, ...] = get_args(Family)

TOKENIZER_DIR = CONFIGS_DIR / "clip_tokenizer"
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")

# SD1 pads prompts with <|endoftext|>; SD2 and SDXL's OpenCLIP tokenizer pad with "!" (id 0).
PAD_EOS, PAD_ZERO = "<|endoftext|>", "!"


class Shapes(dict):
    """Tensor name -> shape; remembers which file it came from for error messages."""

    source: str = "this file"


def _refuse(path: Path, why: str) -> UserError:
    return UserError(f"{path.name}: {why}")


def read_shapes(path: str | os.PathLike) -> Shapes:
    """Tensor names and shapes of a checkpoint file, without reading the tensor data."""
    path = Path(path)
    shapes = Shapes()
    shapes.source = path.name
    if not path.is_file():
        raise UserError(f"{path.name}: no such checkpoint file")
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                for name in f.keys():
                    shapes[name] = tuple(f.get_slice(name).get_shape())
        except Exception as exc:  # the Rust reader raises its own error types
            raise _refuse(path, f"not a readable .safetensors file (corrupt or incomplete download?): {exc}") from exc
        return shapes
    if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
        raise _refuse(path, f"unsupported checkpoint type; use one of {', '.join(SINGLE_FILE_SUFFIXES)}")
    state = _torch_load(path)
    for name, value in state.items():
        if isinstance(value, torch.Tensor):
            shapes[name] = tuple(value.shape)
    return shapes


def _torch_load(path: Path) -> dict:
    """torch.load that never runs code from the file (weights_only=True)."""
    try:
        # mmap keeps the tensor data on disk; only the zip-based format supports it.
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        # torch's own message explains how to load the file unsafely; name only the culprit.
        culprit = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        raise _refuse(
            path,
            "this file needs Python code to load"
            + (f" ({culprit[1]})" if culprit else "")
            + ", and running code from a model file is unsafe, so it was refused. Use a .safetensors "
            "version of the model (most model sites offer one).",
        ) from exc
    except Exception as exc:
        detail = str(exc).split(". ")[0][:200]
        raise _refuse(path, f"not a readable PyTorch checkpoint (corrupt or incomplete download?): {detail}") from exc
    while isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # Lightning-style checkpoints wrap the weights
    if not isinstance(state, dict):
        raise _refuse(path, "does not contain a state dict of tensors")
    return state


# Recognisable non-checkpoint files, so the message can say where they belong.
_OTHER_KINDS = (
    (("lora_unet_", "lora_te", ".lora_down.", ".lora_A.", "lora_up"), "a LoRA (put it in models/Lora)"),
    (("string_to_param", "emb_params", "clip_l", "clip_g"), "a textual-inversion embedding (put it in embeddings/)"),
    (("control_model.", "controlnet_cond_embedding"), "a ControlNet"),
    (("encoder.conv_in.weight", "decoder.conv_in.weight"), "a VAE (put it in models/VAE)"),
    (("down_blocks.", "conv_in.weight"), "a diffusers-format UNet without the rest of the model"),
)


def detect_family(shapes: dict[str, tuple[int, ...]], name: str | None = None) -> Family:
    """Which Stable Diffusion family a checkpoint belongs to, judged by its tensor names."""
    name = name or getattr(shapes, "source", "this file")
    conv_in = shapes.get(UNET + "input_blocks.0.0.weight")
    if conv_in is None or len(conv_in) != 4:
        kind = next((what for marks, what in _OTHER_KINDS if any(m in k for k in shapes for m in marks)), None)
        raise UserError(
            f"{name} is not a Stable Diffusion checkpoint"
            + (f": it looks like {kind}" if kind else " (no UNet weights found)")
        )
    if any(k.startswith(OPENCLIP_XL) for k in shapes):
        base = "sdxl"
    elif any(k.startswith(OPENCLIP_SD2) for k in shapes):
        base = "sd2"
    elif any(k.startswith(CLIP_SD1) for k in shapes):
        base = "sd1"
    elif any(k.startswith("conditioner.embedders.0.model.") for k in shapes):
        raise UserError(f"{name} is an SDXL refiner; only base SDXL checkpoints can be loaded")
    else:
        raise UserError(f"{name} has UNet weights but no text encoder we recognise, so it cannot be loaded on its own")
    if not any(k.startswith(VAE) for k in shapes):
        raise UserError(f"{name} has no VAE baked in; use a checkpoint that includes one")
    inpaint = conv_in[1] == 9
    return f"{base}-inpaint" if inpaint else base  # type: ignore[return-value]


# ---- building pipelines --------------------------------------------------------------------


def make_tokenizer(pad_token: str = PAD_EOS):
    """A fresh CLIP tokenizer from the shipped vocabulary (fresh: textual inversion adds tokens)."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer(
        str(TOKENIZER_DIR / "vocab.json"), str(TOKENIZER_DIR / "merges.txt"), pad_token=pad_token, model_max_length=77
    )


def pipeline_class(family: str):
    import diffusers

    xl = family.startswith("sdxl")
    if family.endswith("-inpaint"):
        return diffusers.StableDiffusionXLInpaintPipeline if xl else diffusers.StableDiffusionInpaintPipeline
    return diffusers.StableDiffusionXLPipeline if xl else diffusers.StableDiffusionPipeline


def tokenizers_for(family: str) -> dict:
    if family.startswith("sdxl"):
        return {"tokenizer": make_tokenizer(PAD_EOS), "tokenizer_2": make_tokenizer(PAD_ZERO)}
    return {"tokenizer": make_tokenizer(PAD_ZERO if family.startswith("sd2") else PAD_EOS)}


def no_safety_checker(family: str) -> dict:
    if family.startswith("sdxl"):
        return {}
    return {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}


def _prediction_type(path: Path, shapes: dict) -> str | None:
    """v-prediction or epsilon for a single file when it differs from the shipped scheduler."""
    sidecar = path.with_suffix(".yaml")
    if sidecar.is_file() and is_inside(path.parent, sidecar):  # a sidecar linking elsewhere is not read
        text = sidecar.read_text(errors="replace")
        return "v_prediction" if re.search(r"^\s*parameterization:\s*[\"']?v[\"']?\s*$", text, re.M) else "epsilon"
    if "v_pred" in shapes:
        return "v_prediction"
    return None  # keep the shipped config: v-prediction for sd2, epsilon otherwise


def _set_prediction_type(pipe, prediction_type: str | None) -> None:
    if prediction_type and pipe.scheduler.config.get("prediction_type") != prediction_type:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, prediction_type=prediction_type)


def _folder_family(folder: Path) -> Family:
    try:
        index = json.loads((folder / "model_index.json").read_text())
        unet = json.loads((folder / "unet" / "config.json").read_text())
        if "text_encoder_2" in index:
            base = "sdxl"
        else:
            te = json.loads((folder / "text_encoder" / "config.json").read_text())
            base = "sd2" if te.get("hidden_act") == "gelu" else "sd1"  # OpenCLIP vs OpenAI CLIP
    except (OSError, ValueError) as exc:
        raise UserError(f"{folder.name} is not a Stable Diffusion 1.x/2.x/XL diffusers folder ({exc})") from exc
    return f"{base}-inpaint" if unet.get("in_channels") == 9 else base  # type: ignore[return-value]


def _load_folder(folder: Path, torch_dtype, label: str):
    family = _folder_family(folder)
    try:
        pipe = pipeline_class(family).from_pretrained(
            str(folder), dtype=torch_dtype, local_files_only=True, **no_safety_checker(family)
        )
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"could not load {label}: {type(exc).__name__}: {exc}") from exc
    return pipe, family


def _hub_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception as exc:
        raise UserError(
            f"{repo_id} is not in the local Hugging Face cache. Download it first "
            f"(`hf download {repo_id}`), or put the model file into models/Stable-diffusion/"
        ) from exc


def load_single_file(path: Path, torch_dtype=torch.float32, cache_dir=None, prediction_type: str | None = None):
    """A single .safetensors/.ckpt file through diffusers' from_single_file with our config folder."""
    shapes = read_shapes(path)
    family = detect_family(shapes)
    derived = infer_configs(shapes, family)
    prediction_type = prediction_type or _prediction_type(path, shapes)
    try:
        with config_folder(family, derived, cache_dir) as config:
            pipe = pipeline_class(family).from_single_file(
                str(path),
                config=str(config),
                local_files_only=True,
                dtype=torch_dtype,
                **tokenizers_for(family),
                **no_safety_checker(family),
            )
    except UserError:
        raise
    except Exception as exc:  # diffusers reports damaged files with assorted exception types
        raise UserError(f"could not load {path.name} as {family}: {type(exc).__name__}: {exc}") from exc
    _set_prediction_type(pipe, prediction_type)
    return pipe, family


_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")  # owner/name


def load_pipeline(
    source: str | os.PathLike,
    torch_dtype=torch.float32,
    *,
    cache_dir: str | os.PathLike | None = None,
    prediction_type: Literal["epsilon", "v_prediction"] | None = None,
) -> tuple["DiffusionPipeline", Family]:
    """Load a checkpoint file, diffusers folder or cached Hub repo; returns (pipeline on the CPU, family).

    The safety checker is off. `cache_dir` keeps derived config folders (see the module
    docstring); `prediction_type` forces epsilon / v-prediction for any source, otherwise
    single files follow the rules above and folders keep their own scheduler config.
    """
    path = Path(source).expanduser()
    if path.is_file():
        return load_single_file(path, torch_dtype, cache_dir, prediction_type)
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise UserError(f"{path.name} is a folder but not a diffusers model (it has no model_index.json)")
        pipe, family = _load_folder(path, torch_dtype, path.name)
    elif isinstance(source, str) and _REPO_ID.fullmatch(source) and not source.endswith(SINGLE_FILE_SUFFIXES):
        pipe, family = _load_folder(_hub_snapshot(source), torch_dtype, source)
    else:
        raise UserError(f"{source}: no such checkpoint file, diffusers folder or Hub repo id")
    _set_prediction_type(pipe, prediction_type)
    return pipe, family
