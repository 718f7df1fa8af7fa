"""VAE files from models/VAE: listing, A1111 names and hashes, and loading one to decode with
instead of the checkpoint's own VAE.

Accepted: A1111/original-layout state dicts (`encoder.`/`decoder.`/`quant_conv.`..., optionally
under `first_stage_model.` or `vae.`, in .safetensors/.pt/.ckpt), diffusers-layout single files,
and diffusers AutoencoderKL folders (config.json + weights). A loaded VAE takes the checkpoint
VAE's config (scaling factor included), so a VAE file only replaces the weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .catalog import HashCache
from ..errors import UserError
from .model_files import check_name, pick, scan

VAE_EXTS = (".safetensors", ".pt", ".ckpt", ".bin")
AUTOMATIC = "Automatic"
_AUTOMATIC_ALIASES = {"", "automatic", "none"}  # A1111's "None" also means the checkpoint's own VAE


def is_automatic(name: str | None) -> bool:
    return name is None or name.strip().lower() in _AUTOMATIC_ALIASES


@dataclass(frozen=True)
class VaeFile:
    name: str    # A1111 shows the file name with its extension ("vae-ft-mse.safetensors")
    path: Path
    kind: str    # "file" or "folder"

    @property
    def stamp(self) -> tuple[int, int]:
        p = self.path if self.kind == "file" else self.path / "config.json"
        st = p.stat()
        return st.st_size, st.st_mtime_ns


class VaeLibrary:
    def __init__(self, folder: Path, hashes: HashCache | None = None):
        self.folder = Path(folder)
        self.hashes = hashes or HashCache(self.folder / ".hashes.json")

    def list(self) -> list[VaeFile]:
        """VAE files and diffusers VAE folders (config.json) in models/VAE and its subfolders;
        nothing that links outside the folder."""
        return [VaeFile(m.rel, m.path, "folder" if m.is_dir else "file")
                for m in scan(self.folder, VAE_EXTS, marker="config.json")]

    def names(self) -> list[str]:
        return [AUTOMATIC] + [v.name for v in self.list()]

    def find(self, name: str) -> VaeFile:
        """The VAE a request names: its file name, relative path, or stem. UserError if unknown
        or a path."""
        items = scan(self.folder, VAE_EXTS, marker="config.json")
        m = pick(items, check_name(self.folder, name, "VAE", "sd_vae"), VAE_EXTS)
        if m is None:
            available = ", ".join(i.rel for i in items) or "none (put VAE files in models/VAE)"
            raise UserError(f"unknown VAE {name!r}; choose Automatic or one of: {available}", field="sd_vae")
        return VaeFile(m.rel, m.path, "folder" if m.is_dir else "file")

    def short_hash(self, v: VaeFile) -> str | None:
        """A1111's `VAE hash`: the first 10 hex digits of the file's SHA-256 (files only)."""
        return self.hashes.sha256(v.path)[:10] if v.kind == "file" else None


def _read(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file
            data = load_file(str(path), device="cpu")
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated or pickled code: a message, never a crash
        raise UserError(f"VAE file {path.name} could not be read: {e}", field="sd_vae") from e
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise UserError(f"{path.name} is not a VAE file", field="sd_vae")
    return {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}


def vae_state_dict(path: Path, config) -> dict[str, torch.Tensor]:
    """Weights of a VAE file in diffusers AutoencoderKL names."""
    sd = _read(path)
    for prefix in ("first_stage_model.", "vae."):
        if any(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
            break
    sd = {k: v for k, v in sd.items() if not k.startswith(("loss.", "model_ema."))}  # training leftovers
    if any(k.startswith(("decoder.up_blocks.", "encoder.down_blocks.")) for k in sd):
        return sd  # already diffusers names
    if not any(k.startswith("decoder.") for k in sd):
        raise UserError(f"{path.name} is not a VAE (no decoder weights in it)", field="sd_vae")
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    try:
        return convert_ldm_vae_checkpoint(sd, dict(config))
    except (KeyError, IndexError, ValueError, RuntimeError) as e:
        raise UserError(f"{path.name} does not look like a Stable Diffusion VAE: {e}", field="sd_vae") from e


def load_vae(v: VaeFile, like) -> torch.nn.Module:
    """An AutoencoderKL with `like`'s config (the checkpoint's VAE) and `v`'s weights, float32 on
    the CPU. UserError if the file does not fit that architecture."""
    from diffusers import AutoencoderKL

    if v.kind == "folder":
        try:
            vae = AutoencoderKL.from_pretrained(v.path, local_files_only=True, torch_dtype=torch.float32)
        except Exception as e:
            raise UserError(f"VAE folder {v.name} could not be loaded: {e}", field="sd_vae") from e
        if vae.config.latent_channels != like.config.latent_channels:
            raise UserError(f"VAE {v.name} has {vae.config.latent_channels} latent channels; this model uses "
                            f"{like.config.latent_channels}", field="sd_vae")
        vae.register_to_config(scaling_factor=like.config.scaling_factor)
        return vae.eval()
    sd = vae_state_dict(v.path, like.config)
    vae = AutoencoderKL.from_config(like.config)
    try:
        missing, unexpected = vae.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatch: another architecture (e.g. a 16-channel VAE)
        raise UserError(f"VAE {v.name} does not fit this model: {str(e).splitlines()[0]}", field="sd_vae") from e
    if missing:
        raise UserError(f"VAE {v.name} does not fit this model: {len(missing)} weights missing "
                        f"(e.g. {missing[0]})", field="sd_vae")
    return vae.to(torch.float32).eval()
