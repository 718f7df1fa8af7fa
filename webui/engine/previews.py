"""Live previews of a generation in progress.

Two ways to turn latents into a picture while the sampler runs, both far cheaper than the VAE:

- `approx`: each latent pixel times a 4x3 matrix plus a bias. Always available; an 8x smaller,
  blurry but colour-true picture. SD1.x and SD2.x share one VAE latent space, SDXL's VAE has
  another, so each has its own factors (LATENT_RGB below; `fit_latent_rgb` derives them for
  any VAE).
- `taesd`: a tiny autoencoder (diffusers AutoencoderTiny; "taesd" for SD1/SD2, "taesdxl" for
  SDXL) when its weights are in models/VAE-approx/: a diffusers folder (`taesd/`,
  `taesdxl/`) or a decoder file (`taesd_decoder.safetensors|.pth`, `taesdxl_decoder...`, in
  the original layout or diffusers keys). Sharp previews for a few ms per decode on a GPU.

Previews show the sampler's denoised estimate when the scheduler keeps one (DPM++ and UniPC
keep their x0 predictions), else the current noisy latents.
"""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..models import model_files

log = logging.getLogger(__name__)

# Latent (scaled, as the pipeline holds it) -> RGB in 0..1:  rgb = latent @ W + b.
# SD1/SD2: the least-squares factors published by Kevin Turner (keturn, 2022, "Decoding latents
#   to RGB without upscaling"), given there for -1..1 output and halved here for 0..1.
# SDXL: the factors of the diffusers documentation ("Pipeline callbacks", latents_to_rgb), given
#   there for 0..255 output and divided by 255 here.
LATENT_RGB = {
    "sd1": (
        np.array([[0.298, 0.207, 0.208],
                  [0.187, 0.286, 0.173],
                  [-0.158, 0.189, 0.264],
                  [-0.184, -0.271, -0.473]]) / 2,
        np.array([0.5, 0.5, 0.5]),
    ),
    "sdxl": (
        np.array([[60, 60, 60],
                  [-60, -5, 10],
                  [25, 15, -5],
                  [-70, -50, -35]]) / 255,
        np.array([150, 140, 130]) / 255,
    ),
}
MAX_PREVIEW_SIDE = 512
MODES = ("auto", "approx", "taesd", "off")


def latent_space(family: str) -> str:
    """Which VAE latent space a checkpoint family uses: 'sd1' (SD1.x and SD2.x) or 'sdxl'."""
    return "sdxl" if family.startswith("sdxl") else "sd1"


def denoised_estimate(pipe, latents: torch.Tensor) -> torch.Tensor | None:
    """The scheduler's current x0 prediction, when it keeps one with the latents' shape."""
    sched = getattr(pipe, "scheduler", None)
    outputs = getattr(sched, "model_outputs", None)
    if not outputs or outputs[-1] is None:
        return None
    cfg = sched.config
    algo = cfg.get("algorithm_type")
    keeps_x0 = algo in ("dpmsolver++", "sde-dpmsolver++") or (algo is None and cfg.get("predict_x0", False))
    x0 = outputs[-1]
    if not keeps_x0 or not isinstance(x0, torch.Tensor) or x0.shape != latents.shape:
        return None
    return x0


class DeferredImage:
    """A preview on its way from the GPU. Reading pixels back is a device sync that would stall
    the generating thread until the queued steps drain (every few steps, at fast-mode speeds a
    measurable cost), so the copy is only queued here and the first reader waits for it."""

    def __init__(self, rgb_hwc: torch.Tensor):
        self._host = torch.empty(rgb_hwc.shape, dtype=torch.uint8, pin_memory=True)
        self._host.copy_(rgb_hwc, non_blocking=True)
        self._ready = torch.cuda.Event()
        self._ready.record()
        self._image: Image.Image | None = None

    def image(self) -> Image.Image:
        if self._image is None:
            self._ready.synchronize()
            self._image = Image.fromarray(self._host.numpy())
        return self._image


def _to_image(rgb01: torch.Tensor) -> Image.Image | DeferredImage:
    """(B, 3, H, W) in 0..1 -> one picture, the batch side by side (deferred on CUDA)."""
    rgb = rgb01.clamp(0, 1).mul(255).round().to(torch.uint8)
    row = torch.cat(list(rgb), dim=2).permute(1, 2, 0)  # (H, B*W, 3)
    if row.is_cuda:
        return DeferredImage(row.contiguous())
    return Image.fromarray(row.contiguous().numpy())


@functools.lru_cache(maxsize=8)
def _factors(space: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # Made once per device: copying a Python list to the GPU waits for all queued work, which
    # at every preview would stall the denoising loop.
    weights, bias = LATENT_RGB[space]
    return (torch.as_tensor(weights, dtype=torch.float32, device=device),
            torch.as_tensor(bias, dtype=torch.float32, device=device))


def approx_rgb(latents: torch.Tensor, space: str) -> torch.Tensor:
    w, b = _factors(space, latents.device)
    lat = latents[:, :4].float()
    return torch.einsum("bchw,cr->brhw", lat, w) + b.view(1, 3, 1, 1)


def fit_latent_rgb(vae, latents: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares 4x3 factors and bias for `vae`: decode `latents` (scaled, as pipelines hold
    them), shrink the pictures to latent size, and solve rgb = latent @ W + b. How the factors
    in LATENT_RGB are made; run it on a real VAE with a few hundred real latents."""
    with torch.no_grad():
        img = vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0]
    target = torch.nn.functional.adaptive_avg_pool2d((img.float() + 1) / 2, latents.shape[-2:])
    x = latents[:, :4].float().permute(0, 2, 3, 1).reshape(-1, 4)
    y = target.permute(0, 2, 3, 1).reshape(-1, 3)
    x1 = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    sol = torch.linalg.lstsq(x1, y).solution
    return sol[:4].numpy(), sol[4].numpy()


# ---- TAESD --------------------------------------------------------------------------------

TAESD_NAMES = {"sd1": "taesd", "sdxl": "taesdxl"}


def find_taesd(approx_dir: Path, space: str) -> Path | None:
    """The TAESD decoder for `space` in models/VAE-approx: a diffusers folder, or a decoder file."""
    name = TAESD_NAMES[space]
    items = {m.rel: m for m in model_files.scan(approx_dir, (".safetensors", ".pth", ".pt"), marker="config.json",
                                                recursive=False)}
    wanted = [name] + [f"{stem}{ext}" for stem in (f"{name}_decoder", name) for ext in (".safetensors", ".pth", ".pt")]
    return next((items[rel].path for rel in wanted if rel in items), None)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    # weights_only: a pickled file must not be able to run code.
    return torch.load(str(path), map_location="cpu", weights_only=True)


def load_taesd(path: Path):
    """An AutoencoderTiny from a diffusers folder, or from a decoder-only file in the original
    TAESD layout (keys "1.weight", "3.conv.0.weight", ... of an nn.Sequential whose first
    entry is a parameter-free clamp) or with diffusers keys ("decoder.layers.0.weight")."""
    from diffusers import AutoencoderTiny

    if path.is_dir():
        return AutoencoderTiny.from_pretrained(str(path), local_files_only=True)
    state = _read_state_dict(path)
    decoder: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("decoder.layers."):
            decoder[key[len("decoder."):]] = value
        elif key.split(".", 1)[0].isdigit():
            index, rest = key.split(".", 1)
            decoder[f"layers.{int(index) - 1}.{rest}"] = value
    if not decoder:
        raise ValueError(f"{path.name} has no TAESD decoder weights")
    model = AutoencoderTiny()  # the published TAESD/TAESDXL shape
    model.decoder.load_state_dict(decoder, strict=True)
    return model


class Previewer:
    """Turns latents into preview pictures; one per manager. TAESD models load on first use
    and stay (about 5 MB each)."""

    def __init__(self, models_dir: Path, mode: str = "auto", device: torch.device | None = None,
                 dtype: torch.dtype = torch.float32):
        self.approx_dir = Path(models_dir) / "VAE-approx"
        self.mode = mode if mode in MODES else "auto"
        self.device = device or torch.device("cpu")
        self.dtype = dtype
        self._taesd: dict[str, object] = {}
        self._lock = threading.Lock()

    def kind(self, family: str) -> str | None:
        """What a preview of this family is made with now: 'taesd', 'approx' or None (off)."""
        if self.mode == "off":
            return None
        if self.mode in ("auto", "taesd") and self._taesd_model(latent_space(family)) is not None:
            return "taesd"
        return "approx"

    def _taesd_model(self, space: str):
        with self._lock:
            if space in self._taesd:
                return self._taesd[space]
            path = find_taesd(self.approx_dir, space)
            model = None
            if path is not None:
                try:
                    model = load_taesd(path).to(self.device, self.dtype).eval()
                    log.info("live previews use %s", path.name)
                except Exception as e:  # noqa: BLE001 - a bad preview model must not stop generation
                    log.warning("could not load %s for previews (%s); using the approximation", path, e)
            elif self.mode == "taesd":
                log.warning("--preview taesd: no %s in %s; using the approximation",
                            TAESD_NAMES[space], self.approx_dir)
            self._taesd[space] = model
            return model

    @torch.no_grad()
    def render(self, latents: torch.Tensor, family: str,
               size: tuple[int, int] | None = None) -> Image.Image | DeferredImage | None:
        """A preview of `latents` (B, C, h, w), the batch side by side, each image scaled to
        `size` (width, height) or at most MAX_PREVIEW_SIDE."""
        kind = self.kind(family)
        if kind is None:
            return None
        latents = latents[:4, :4]  # at most four pictures; inpaint UNets' extra channels are not image
        space = latent_space(family)
        if kind == "taesd":
            taesd = self._taesd_model(space)
            rgb = (taesd.decode(latents.to(self.device, self.dtype), return_dict=False)[0].float() + 1) / 2
        else:
            rgb = approx_rgb(latents, space)
        h0, w0 = rgb.shape[-2:]
        w, h = size or (w0, h0)
        scale = min(1.0, MAX_PREVIEW_SIDE / max(w, h))
        target = (max(1, round(h * scale)), max(1, round(w * scale)))
        if (h0, w0) != target:  # scaled where the pixels are, so a GPU preview stays on the GPU
            rgb = torch.nn.functional.interpolate(rgb.float(), size=target, mode="bilinear", align_corners=False)
        return _to_image(rgb)
