"""Start-up settings: command-line flags, with environment variables as defaults (Spaces)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; enforced once, at the request edge (build_request and
    upload decoding), with the same messages for the UI and the API."""

    max_width: int = 2048
    max_height: int = 2048
    max_pixels: int = 2048 * 2048
    max_steps: int = 150
    max_batch_size: int = 8
    max_n_iter: int = 16
    max_prompt_chars: int = 10_000
    max_upload_bytes: int = 50 * 1024 * 1024
    max_upload_pixels: int = 4096 * 4096
    # Server memory one request may hold (memory_budget.py): uploads, working copies and every
    # result. 1 GiB: 1024x1024 at batch size 8 x count 16 (0.4 GiB) and inpainting a 12 MP
    # photo fit; a 4096x4096 inpaint at batch size 8 (1.4 GiB) does not.
    max_request_bytes: int = 1 << 30


# Limits field -> (flag, help). Each flag also reads WEBUI_<FLAG> (e.g. WEBUI_MAX_STEPS) for Spaces.
LIMIT_FLAGS = {
    "max_width": ("--max-width", "largest width in pixels"),
    "max_height": ("--max-height", "largest height in pixels"),
    "max_pixels": ("--max-pixels", "largest width x height of one image"),
    "max_steps": ("--max-steps", "most sampling steps (also hires steps)"),
    "max_batch_size": ("--max-batch-size", "most images per batch"),
    "max_n_iter": ("--max-batch-count", "most batches per request (n_iter)"),
    "max_prompt_chars": ("--max-prompt-chars", "longest prompt or negative prompt, in characters"),
    "max_upload_bytes": ("--max-upload-bytes", "largest uploaded file in bytes (also Gradio's max_file_size)"),
    "max_upload_pixels": ("--max-upload-pixels", "largest uploaded image, width x height in pixels"),
    "max_request_bytes": ("--max-request-bytes", "most server memory one request may hold (uploads, results), in bytes"),
}


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    auth: tuple[tuple[str, str], ...] = ()
    models_dir: Path = Path("models")
    outputs_dir: Path = Path("outputs")
    characters_dir: Path = Path("characters")  # saved characters, one folder each
    embeddings_dir: Path | None = None  # None: A1111's embeddings/ next to the models folder, and models/embeddings
    model: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    demo: bool = False
    api: bool = True
    # How many checkpoints stay loaded: on the device, and more in (pinned) CPU memory.
    device_cache: int = 1
    cpu_cache: int = 1
    # Chinese prompt translation: auto, glossary, marian, off, or a MarianMT model folder.
    translator: str = "auto"
    # With translator auto and no cached MarianMT model: fetch it once in the background.
    translator_download: bool = True
    limits: Limits = field(default_factory=Limits)
    # Live previews: "auto" (TAESD when its weights are in models/VAE-approx, else the linear
    # approximation), "approx", "taesd" or "off"; one preview every N steps (0 = none).
    preview: str = "auto"
    preview_every: int = 4
    # Public deployments: jobs per minute per client (0 = unlimited), counted per IP or session.
    rate_limit: int = 0
    rate_limit_by: str = "ip"
    # Proxies whose X-Forwarded-For is believed (comma-separated addresses or networks; "" = none).
    forwarded_allow_ips: str = ""
    # Every client arrives through one proxy that is not named above (Hugging Face Spaces): the
    # connection's address then identifies nobody.
    behind_proxy: bool = False
    safety_filter: bool = False
    # Speed and memory (webui/engine/fast.py): compiled fast path, cross-user batching, offload.
    fast: bool = False
    warmup: bool = False
    compile_mode: str = "reduce-overhead"
    compile_cache_dir: Path | None = None
    batching: bool = True
    offload: str = "auto"  # auto, none, model, sequential
    vae_tiling: bool = False

    @property
    def checkpoints_dir(self) -> Path:
        return self.models_dir / "Stable-diffusion"

    @property
    def embedding_dirs(self) -> list[Path]:
        if self.embeddings_dir is not None:
            return [self.embeddings_dir]
        return [self.models_dir.parent / "embeddings", self.models_dir / "embeddings"]


def _env(name: str, default=None):
    return os.environ.get(f"WEBUI_{name}", default)


def _env_flag(name: str) -> bool:
    return (_env(name) or "").strip().lower() in ("1", "true", "yes", "on")


def parse_auth(value: str | None) -> tuple[tuple[str, str], ...]:
    """`user:pass`, several separated by commas, or the path of a file with one pair per line."""
    if not value:
        return ()
    if os.path.isfile(value):
        with open(value, encoding="utf-8") as f:
            value = ",".join(line.strip() for line in f if line.strip() and not line.startswith("#"))
    pairs = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            raise SystemExit(f"--auth expects user:password pairs, got {item!r}")
        pairs.append((user, password))
    return tuple(pairs)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Portrait-focused Stable Diffusion web UI")
    # Spaces (and Docker images) tell Gradio where to listen through GRADIO_SERVER_NAME.
    p.add_argument("--host", default=_env("HOST", os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")),
                   help="address to listen on (0.0.0.0 for the LAN)")
    p.add_argument("--port", type=int, default=int(_env("PORT", 7860)))
    p.add_argument("--share", action="store_true", help="create a public gradio.live link (use with --auth)")
    p.add_argument("--auth", default=_env("AUTH"), help="user:pass[,user2:pass2] or a file with one pair per line")
    p.add_argument("--models-dir", default=_env("MODELS_DIR", "models"), help="A1111-layout models folder")
    p.add_argument("--outputs-dir", default=_env("OUTPUTS_DIR", "outputs"))
    p.add_argument("--characters-dir", default=_env("CHARACTERS_DIR", "characters"),
                   help="saved characters (one folder each)")
    p.add_argument("--embeddings-dir", default=_env("EMBEDDINGS_DIR"),
                   help="textual-inversion embeddings (default: embeddings/ next to the models folder, "
                        "and models/embeddings)")
    p.add_argument("--model", default=_env("MODEL"), help="checkpoint to load first: file, diffusers folder or Hub id")
    p.add_argument("--device", default=_env("DEVICE", "auto"), help="auto, cuda, cuda:1, mps or cpu")
    p.add_argument("--dtype", default=_env("DTYPE", "auto"), choices=["auto", "fp16", "bf16", "fp32"])
    p.add_argument("--demo", action="store_true", default=bool(_env("DEMO")),
                   help="offline demo: a tiny random-weight model that draws noise")
    p.add_argument("--no-api", action="store_true", help="turn off the /sdapi/v1 REST routes")
    p.add_argument("--device-cache", type=int, default=int(_env("DEVICE_CACHE", 1)),
                   help="checkpoints kept on the GPU")
    p.add_argument("--cpu-cache", type=int, default=int(_env("CPU_CACHE", 1)),
                   help="further checkpoints kept in (pinned) CPU memory")
    p.add_argument("--translator", default=_env("TRANSLATOR", "auto"),
                   help="Chinese prompts: auto (MarianMT if cached, else glossary), glossary, marian, off, "
                        "or a MarianMT model folder")
    p.add_argument("--no-translator-download", dest="translator_download", action="store_false",
                   default=(_env("TRANSLATOR_DOWNLOAD") or "1").strip().lower() not in ("0", "false", "no", "off"),
                   help="with --translator auto, never download the MarianMT model in the background "
                        "(env WEBUI_TRANSLATOR_DOWNLOAD=0)")
    for name, (flag, help_text) in LIMIT_FLAGS.items():
        default = getattr(Limits, name)
        env = flag[2:].replace("-", "_").upper()
        # A string default goes through `type` too, so a bad WEBUI_ value fails like a bad flag.
        p.add_argument(flag, dest=name, type=_positive_int, default=str(_env(env, default)),
                       help=f"{help_text} (default {default}; env WEBUI_{env})")
    p.add_argument("--preview", default=_env("PREVIEW", "auto"), choices=["auto", "approx", "taesd", "off"],
                   help="live preview: TAESD from models/VAE-approx when present, else a cheap approximation")
    p.add_argument("--preview-every", type=int, default=int(_env("PREVIEW_EVERY", 4)),
                   help="show a preview every N sampling steps (0 = none)")
    p.add_argument("--rate-limit", type=int, default=int(_env("RATE_LIMIT", 0)),
                   help="most generations per minute per client for public deployments (0 = no limit)")
    p.add_argument("--rate-limit-by", default=_env("RATE_LIMIT_BY", "ip"), choices=["ip", "session"],
                   help="count the rate limit per IP address or per browser session")
    p.add_argument("--forwarded-allow-ips", default=_env("FORWARDED_ALLOW_IPS", ""),
                   help="proxies (addresses or networks, comma-separated) whose X-Forwarded-For header is "
                        "believed; by default none is, so the header cannot dodge the rate limit")
    p.add_argument("--safety-filter", action="store_true", default=_env_flag("SAFETY_FILTER"),
                   help="hide images an NSFW classifier flags (weights in models/safety_checker)")
    p.add_argument("--fast", action="store_true", default=bool(_env("FAST")),
                   help="CUDA fast mode: channels_last, fused QKV, torch.compile with CUDA graphs")
    p.add_argument("--warmup", action="store_true", default=bool(_env("WARMUP")),
                   help="with --fast: compile the common sizes at start-up instead of on first use")
    p.add_argument("--compile-mode", default=_env("COMPILE_MODE", "reduce-overhead"),
                   choices=["reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs", "default"])
    p.add_argument("--compile-cache-dir", default=_env("COMPILE_CACHE_DIR"),
                   help="where compiled kernels are kept between restarts (default: models/.compile-cache)")
    p.add_argument("--no-batching", action="store_true", help="never merge different users' requests")
    p.add_argument("--offload", default=_env("OFFLOAD", "auto"), choices=["auto", "none", "model", "sequential"],
                   help="keep weights in CPU memory for small GPUs (auto: chosen from free VRAM)")
    p.add_argument("--lowvram", action="store_true", help="same as --offload sequential --vae-tiling")
    p.add_argument("--medvram", action="store_true", help="same as --offload model --vae-tiling")
    p.add_argument("--vae-tiling", action="store_true", help="decode large images in tiles")
    return p


def _positive_int(value) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {n}")
    return n


def settings_from_args(argv: list[str] | None = None) -> Settings:
    a = build_parser().parse_args(argv)
    limits = Limits(**{name: getattr(a, name) for name in LIMIT_FLAGS})
    offload = "sequential" if a.lowvram else "model" if a.medvram else a.offload
    return Settings(
        host=a.host, port=a.port, share=a.share, auth=parse_auth(a.auth),
        models_dir=Path(a.models_dir), outputs_dir=Path(a.outputs_dir), characters_dir=Path(a.characters_dir), model=a.model,
        embeddings_dir=Path(a.embeddings_dir) if a.embeddings_dir else None,
        device=a.device, dtype=a.dtype, demo=a.demo, api=not a.no_api,
        device_cache=max(1, a.device_cache), cpu_cache=max(0, a.cpu_cache), limits=limits,
        preview=a.preview, preview_every=max(0, a.preview_every), rate_limit=max(0, a.rate_limit),
        rate_limit_by=a.rate_limit_by, forwarded_allow_ips=a.forwarded_allow_ips.strip(),
        behind_proxy=bool(os.environ.get("SPACE_ID")), safety_filter=a.safety_filter, translator=a.translator,
        translator_download=a.translator_download,
        fast=a.fast, warmup=a.warmup, compile_mode=a.compile_mode,
        compile_cache_dir=Path(a.compile_cache_dir) if a.compile_cache_dir else None,
        batching=not a.no_batching, offload=offload, vae_tiling=a.vae_tiling or a.lowvram or a.medvram,
    )
