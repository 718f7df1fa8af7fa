"""Image upscalers for hires fix and the extras tab.

Names are the ones the A1111 web UI shows: ``"None"``, ``"Lanczos"``, ``"Nearest"``, the
``"Latent ..."`` modes (done on latents by the pipeline code, see :data:`LATENT_UPSCALE_MODES`),
plus one entry per model file in ``<models>/ESRGAN`` (``*.pth`` / ``*.safetensors``, named by
file stem). Model files are read with weights-only loaders (``torch.load(weights_only=True)``
or safetensors, never plain pickle) and built by the ``spandrel`` library, which recognises
ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, SPAN, ... files.

This module names the upscalers and picks one; the protocol and the PIL resamplers are in
``upscaler_base.py``, the model-file upscalers in ``spandrel_upscalers.py``.
"""

from __future__ import annotations

from pathlib import Path

from webui.models import model_files
from webui.errors import UserError
from webui.models.spandrel_upscalers import SpandrelUpscaler
from webui.models.upscaler_base import UPSCALER_SUBDIR, LanczosUpscaler, NearestUpscaler, Upscaler

__all__ = [
    "MODEL_EXTENSIONS",
    "BUILTIN_UPSCALERS",
    "LATENT_UPSCALE_MODES",
    "list_upscalers",
    "get_upscaler",
    "is_latent_upscaler",
    "resolve_model_file",
]

MODEL_EXTENSIONS = (".safetensors", ".pth")  # preference order when both exist

#: Latent upscale names -> (torch.nn.functional.interpolate mode, antialias). The pipeline
#: upscales the latents itself for these; this module only lists them.
LATENT_UPSCALE_MODES: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
BUILTIN_UPSCALERS = ("None", "Lanczos", "Nearest")


def is_latent_upscaler(name: str | None) -> bool:
    return name in LATENT_UPSCALE_MODES


def _upscaler_dir(models_dir: str | Path) -> Path:
    return Path(models_dir) / UPSCALER_SUBDIR


def _model_files(models_dir: str | Path) -> dict[str, Path]:
    """Stem -> file for the loadable files directly in the folder (links only when they stay
    inside it). ``.safetensors`` wins over ``.pth`` for the same stem."""
    found: dict[str, Path] = {}
    for m in model_files.scan(_upscaler_dir(models_dir), MODEL_EXTENSIONS, recursive=False):
        prev = found.get(m.stem)
        if prev is None or MODEL_EXTENSIONS.index(m.path.suffix.lower()) < MODEL_EXTENSIONS.index(prev.suffix.lower()):
            found[m.stem] = m.path
    return found


def list_upscalers(models_dir: str | Path, include_latent: bool = True) -> list[str]:
    """Names for the upscaler dropdown: None, Lanczos, Nearest, the Latent modes (unless
    ``include_latent`` is False, e.g. for the extras tab) and the model file stems, sorted."""
    names = list(BUILTIN_UPSCALERS)
    if include_latent:
        names += list(LATENT_UPSCALE_MODES)
    reserved = set(BUILTIN_UPSCALERS) | set(LATENT_UPSCALE_MODES)
    names += sorted((s for s in _model_files(models_dir) if s not in reserved), key=str.lower)
    return names


def resolve_model_file(name: str, models_dir: str | Path) -> Path:
    """The model file for an upscaler name, guaranteed to be inside ``<models>/ESRGAN``.

    The name is a file stem (an extension ``.pth``/``.safetensors`` is accepted too), matched
    against :func:`list_upscalers`' files only: a path, or a file linking out of the folder, is
    refused with :class:`UserError`.
    """
    m = model_files.lookup(_upscaler_dir(models_dir), name, MODEL_EXTENSIONS, what="upscaler", recursive=False)
    if m is None:
        available = list_upscalers(models_dir, include_latent=False)
        raise UserError(
            f"Upscaler {name!r} not found. Put the model file ({name}.pth or {name}.safetensors) into "
            f"models/{UPSCALER_SUBDIR}/, or choose one of: {', '.join(available)}."
        )
    return m.path


def get_upscaler(
    name: str | None,
    models_dir: str | Path,
    device: str = "cpu",
    tile_size: int = 256,
    tile_overlap: int = 32,
    half: bool | None = None,
) -> Upscaler | None:
    """The upscaler for a name from :func:`list_upscalers`.

    ``"None"`` (or None/"") returns None: no upscaler, the caller resizes plainly or skips.
    Latent names raise ValueError: the pipeline handles them (check :func:`is_latent_upscaler`
    first). Model files are cached (the two most recently used stay loaded).
    """
    if name is None or name == "" or name == "None":
        return None
    if name == "Lanczos":
        return LanczosUpscaler()
    if name == "Nearest":
        return NearestUpscaler()
    if is_latent_upscaler(name):
        raise ValueError(f"{name!r} is a latent upscale mode; the pipeline handles it, not get_upscaler")
    path = resolve_model_file(name, models_dir)
    return SpandrelUpscaler(path, device=device, tile_size=tile_size, tile_overlap=tile_overlap, half=half)
