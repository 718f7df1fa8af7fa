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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Literal, get_args

import torch

from ..errors import UserError
from .model_files import is_inside

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

Family = Literal["sd1", "sd1-inpaint", "sd2", "sd2-inpaint", "sdxl", "sdxl-inpaint"]
FAMILIES: tuple[str, ...] = get_args(Family)

CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"
TOKENIZER_DIR = CONFIGS_DIR / "clip_tokenizer"
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")

# Key prefixes of the original (A1111/ldm/sgm) checkpoint layout.
UNET = "model.diffusion_model."
VAE = "first_stage_model."
CLIP_SD1 = "cond_stage_model.transformer."
OPENCLIP_SD2 = "cond_stage_model.model."
CLIP_XL = "conditioner.embedders.0.transformer."
OPENCLIP_XL = "conditioner.embedders.1.model."

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


# ---- architecture from tensor shapes -------------------------------------------------------


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
