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
}


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    auth: tuple[tuple[str, str], ...] = ()
    models_dir: Path = Path("models")
    outputs_dir: Path = Path("outputs")
    model: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    demo: bool = False
    api: bool = True
    # How many checkpoints stay loaded: on the device, and more in (pinned) CPU memory.
    device_cache: int = 1
    cpu_cache: int = 1
    limits: Limits = field(default_factory=Limits)

    @property
    def checkpoints_dir(self) -> Path:
        return self.models_dir / "Stable-diffusion"


def _env(name: str, default=None):
    return os.environ.get(f"WEBUI_{name}", default)


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
    p.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="address to listen on (0.0.0.0 for the LAN)")
    p.add_argument("--port", type=int, default=int(_env("PORT", 7860)))
    p.add_argument("--share", action="store_true", help="create a public gradio.live link (use with --auth)")
    p.add_argument("--auth", default=_env("AUTH"), help="user:pass[,user2:pass2] or a file with one pair per line")
    p.add_argument("--models-dir", default=_env("MODELS_DIR", "models"), help="A1111-layout models folder")
    p.add_argument("--outputs-dir", default=_env("OUTPUTS_DIR", "outputs"))
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
    for name, (flag, help_text) in LIMIT_FLAGS.items():
        default = getattr(Limits, name)
        env = flag[2:].replace("-", "_").upper()
        # A string default goes through `type` too, so a bad WEBUI_ value fails like a bad flag.
        p.add_argument(flag, dest=name, type=_positive_int, default=str(_env(env, default)),
                       help=f"{help_text} (default {default}; env WEBUI_{env})")
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
    return Settings(
        host=a.host, port=a.port, share=a.share, auth=parse_auth(a.auth),
        models_dir=Path(a.models_dir), outputs_dir=Path(a.outputs_dir), model=a.model,
        device=a.device, dtype=a.dtype, demo=a.demo, api=not a.no_api,
        device_cache=max(1, a.device_cache), cpu_cache=max(0, a.cpu_cache), limits=limits,
    )
