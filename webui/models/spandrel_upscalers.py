"""Upscalers from model files in ``<models>/ESRGAN``: the files are read with weights-only
loaders (``torch.load(weights_only=True)`` or safetensors, never plain pickle) and built by
the ``spandrel`` library (imported lazily, without needing torchvision), which recognises
ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, SPAN, ... files. Loaded models are kept in a small
cache; large images are upscaled in tiles.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from collections import OrderedDict
from enum import Enum
from pathlib import Path
from typing import Any

from PIL import Image

from webui.errors import UserError
from webui.models.upscaler_base import UPSCALER_SUBDIR, ProgressFn, check_scale, scaled_size


def _torchvision_stub() -> dict[str, types.ModuleType]:
    """Stand-ins for the torchvision names spandrel imports at start-up.

    spandrel imports torchvision only for two architectures (LaMa inpainting and
    RestoreFormer face restoration), neither an upscaler we accept. Calling a stub raises.
    """

    def _missing(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("this model architecture needs torchvision, which is not installed")

    class InterpolationMode(Enum):
        NEAREST = "nearest"
        NEAREST_EXACT = "nearest-exact"
        BILINEAR = "bilinear"
        BICUBIC = "bicubic"
        BOX = "box"
        HAMMING = "hamming"
        LANCZOS = "lanczos"

    tv = types.ModuleType("torchvision")
    tr = types.ModuleType("torchvision.transforms")
    fn = types.ModuleType("torchvision.transforms.functional")
    fn.InterpolationMode = InterpolationMode  # type: ignore[attr-defined]
    fn.rotate = _missing  # type: ignore[attr-defined]
    fn.normalize = _missing  # type: ignore[attr-defined]
    fn.__getattr__ = lambda name: _missing  # type: ignore[attr-defined]
    tr.functional = fn  # type: ignore[attr-defined]
    tv.transforms = tr  # type: ignore[attr-defined]
    return {"torchvision": tv, "torchvision.transforms": tr, "torchvision.transforms.functional": fn}


_spandrel_lock = threading.Lock()
_spandrel: Any = None


def _import_spandrel() -> Any:
    """Import spandrel; without a working torchvision, import it against a temporary stub.

    The stub is removed from ``sys.modules`` right after, so other code still sees that
    torchvision is absent.
    """
    global _spandrel
    with _spandrel_lock:
        if _spandrel is not None:
            return _spandrel
        try:
            _spandrel = importlib.import_module("spandrel")
            return _spandrel
        except ModuleNotFoundError as e:
            if not (e.name or "").startswith("torchvision"):
                raise
        except (ImportError, RuntimeError, OSError):
            pass  # a broken torchvision install (e.g. built for another torch)
        for key in [k for k in sys.modules if k == "spandrel" or k.startswith("spandrel.") or k.startswith("torchvision")]:
            del sys.modules[key]
        stubs = _torchvision_stub()
        sys.modules.update(stubs)
        try:
            _spandrel = importlib.import_module("spandrel")
        finally:
            for key in stubs:
                if sys.modules.get(key) is stubs[key]:
                    del sys.modules[key]
        return _spandrel


# --------------------------------------------------------------------------- loading model files


def _load_state_dict(path: Path) -> dict[str, Any]:
    """Read a model file without running pickle code."""
    ext = path.suffix.lower()
    try:
        if ext == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path), device="cpu")
        elif ext == ".pth":
            import torch

            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        else:
            raise UserError(f"{path.name}: upscaler models must be .pth or .safetensors files.")
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - every read failure means an unusable user file
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"{path.name} in models/{UPSCALER_SUBDIR} is not a model file that can be loaded safely ({msg[:200]}). "
            "Use a .safetensors file or a .pth that contains only weights."
        ) from None
    if not isinstance(sd, dict):
        raise UserError(f"{path.name} in models/{UPSCALER_SUBDIR} does not contain a state dict of weights.")
    return sd


def _build_descriptor(path: Path, device: str, half: bool | None) -> Any:
    import torch

    spandrel = _import_spandrel()
    sd = spandrel.canonicalize_state_dict(_load_state_dict(path))
    sd = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise UserError(f"{path.name} in models/{UPSCALER_SUBDIR} contains no weights.")
    try:
        desc = spandrel.ModelLoader(device="cpu").load_from_state_dict(sd)
    except spandrel.UnsupportedModelError:
        raise UserError(
            f"{path.name} in models/{UPSCALER_SUBDIR} is not an upscaler model of a known architecture "
            "(ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, SPAN, ...)."
        ) from None
    except Exception as e:  # noqa: BLE001 - malformed weights for a detected architecture
        raise UserError(f"{path.name} in models/{UPSCALER_SUBDIR} could not be built as a model ({e}).") from None
    if not isinstance(desc, spandrel.ImageModelDescriptor) or desc.purpose not in ("SR", "Restoration"):
        raise UserError(
            f"{path.name} is a {getattr(desc, 'purpose', 'non-image')} model ({desc.architecture.name}), "
            f"not an upscaler; remove it from models/{UPSCALER_SUBDIR}."
        )
    if desc.input_channels not in (1, 3, 4):
        raise UserError(f"{path.name}: models with {desc.input_channels} input channels are not supported.")
    desc.eval()
    desc.model.requires_grad_(False)
    dev = torch.device(device)
    if half is None:
        half = dev.type == "cuda"
    desc.to(dev)
    if half and desc.supports_half:
        desc.half()
    return desc


_cache_lock = threading.Lock()
_model_cache: "OrderedDict[tuple, Any]" = OrderedDict()
_CACHE_SIZE = 2


def clear_model_cache() -> None:
    with _cache_lock:
        _model_cache.clear()


def _load_descriptor(path: Path, device: str, half: bool | None) -> Any:
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, str(device), half)
    with _cache_lock:
        if key in _model_cache:
            _model_cache.move_to_end(key)
            return _model_cache[key]
    desc = _build_descriptor(path, device, half)
    with _cache_lock:
        _model_cache[key] = desc
        while len(_model_cache) > _CACHE_SIZE:
            _model_cache.popitem(last=False)
    return desc


class SpandrelUpscaler:
    """A model-file upscaler (ESRGAN family and others spandrel knows).

    The image goes through the model in tiles of ``tile_size`` pixels; each tile is fed with
    ``tile_overlap`` extra context pixels on every side and only its centre is kept, so the
    result matches an untiled run when the overlap covers the model's receptive field, with
    no seams and bounded memory. ``tile_size`` 0 disables tiling. The model runs at its
    native scale (repeatedly, when a larger factor is asked for), then the result is resized
    to the requested factor with Lanczos. ``half`` None = float16 on CUDA when the model
    supports it, float32 otherwise.
    """

    def __init__(
        self,
        path: str | Path,
        device: str = "cpu",
        tile_size: int = 256,
        tile_overlap: int = 32,
        half: bool | None = None,
        max_passes: int = 3,
    ):
        import torch

        self.path = Path(path)
        self.name = self.path.stem
        if tile_size < 0 or tile_overlap < 0:
            raise UserError("Upscaler tile size and overlap must be 0 or more.")
        self.tile_size = int(tile_size)
        self.tile_overlap = int(tile_overlap)
        self.device = torch.device(device)
        self.max_passes = max(1, int(max_passes))
        self.descriptor = _load_descriptor(self.path, str(self.device), half)
        self.dtype = self.descriptor.dtype

    @property
    def native_scale(self) -> int:
        return int(self.descriptor.scale)

    # -- tensor helpers
    def _to_tensor(self, image: Image.Image) -> Any:
        import numpy as np
        import torch

        mode = {1: "L", 3: "RGB", 4: "RGBA"}[self.descriptor.input_channels]
        arr = np.asarray(image.convert(mode), dtype=np.float32) / 255.0
        if arr.ndim == 2:
            arr = arr[..., None]
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]

    @staticmethod
    def _to_image(t: Any) -> Image.Image:
        import numpy as np

        arr = t[0].float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
        c = arr.shape[2]
        if c == 1:
            return Image.fromarray(np.ascontiguousarray(arr[..., 0]), "L").convert("RGB")
        return Image.fromarray(np.ascontiguousarray(arr[..., :4] if c >= 4 else arr[..., :3]), "RGBA" if c >= 4 else "RGB")

    def _run_model(self, x: Any) -> Any:
        return self.descriptor(x.to(self.device, self.dtype)).float().cpu()

    def _tiled(self, x: Any, progress: ProgressFn | None) -> Any:
        """One pass at native scale. ``x`` is (1, C, H, W) float32 on the CPU."""
        import torch

        spandrel = _import_spandrel()
        _, _, H, W = x.shape
        s = self.native_scale
        t, ov = self.tile_size, self.tile_overlap
        internal = self.descriptor.tiling == spandrel.ModelTiling.INTERNAL
        if t <= 0 or internal or (H <= t and W <= t):
            out = self._run_model(x)
            if progress:
                progress(1, 1)
            return out
        ys, xs = list(range(0, H, t)), list(range(0, W, t))
        total, done = len(ys) * len(xs), 0
        out = torch.empty((1, self.descriptor.output_channels, H * s, W * s), dtype=torch.float32)
        for ty in ys:
            for tx in xs:
                cx0, cy0 = max(0, tx - ov), max(0, ty - ov)
                cx1, cy1 = min(W, tx + t + ov), min(H, ty + t + ov)
                y = self._run_model(x[:, :, cy0:cy1, cx0:cx1])
                ey, ex = min(H, ty + t), min(W, tx + t)
                out[:, :, ty * s : ey * s, tx * s : ex * s] = y[
                    :, :, (ty - cy0) * s : (ey - cy0) * s, (tx - cx0) * s : (ex - cx0) * s
                ]
                done += 1
                if progress:
                    progress(done, total)
        return out

    def upscale(self, image: Image.Image, scale: float, progress: ProgressFn | None = None) -> Image.Image:
        """Upscale by ``scale`` (output size ``round(w*scale) x round(h*scale)``)."""
        import torch

        scale = check_scale(scale)
        target = scaled_size(image.size, scale)
        if target == image.size and self.native_scale > 1:
            return image.convert("RGBA" if image.mode == "RGBA" else "RGB")
        x = self._to_tensor(image)
        reached = 1
        try:
            with torch.inference_mode():
                for _ in range(self.max_passes):
                    x = self._tiled(x, progress)
                    reached *= self.native_scale
                    if reached >= scale or self.native_scale <= 1:
                        break
                    if x.shape[1] != self.descriptor.input_channels:
                        break
        except torch.OutOfMemoryError:
            raise UserError(
                f"Out of memory while upscaling with {self.name}: lower the upscaler tile size "
                f"(now {self.tile_size}) or the image size."
            ) from None
        result = self._to_image(x)
        if result.size != target:
            result = result.resize(target, Image.Resampling.LANCZOS)
        return result
