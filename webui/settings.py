"""Start-up settings: command-line flags, with environment variables as defaults (Spaces)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; enforced once, when the request is built."""

    max_width: int = 2048
    max_height: int = 2048
    max_pixels: int = 2048 * 2048
    max_steps: int = 150
    max_batch_size: int = 8
    max_n_iter: int = 16
    max_prompt_chars: int = 10_000
    max_upload_pixels: int = 4096 * 4096


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
    # Speed and memory (webui/fast.py): compiled fast path, cross-user batching, offload.
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
    p.add_argument("--max-pixels", type=int, default=int(_env("MAX_PIXELS", Limits.max_pixels)))
    p.add_argument("--max-steps", type=int, default=int(_env("MAX_STEPS", Limits.max_steps)))
    p.add_argument("--max-batch-size", type=int, default=int(_env("MAX_BATCH_SIZE", Limits.max_batch_size)))
    return p


def settings_from_args(argv: list[str] | None = None) -> Settings:
    a = build_parser().parse_args(argv)
    limits = Limits(max_pixels=a.max_pixels, max_steps=a.max_steps, max_batch_size=a.max_batch_size)
    offload = "sequential" if a.lowvram else "model" if a.medvram else a.offload
    return Settings(
        host=a.host, port=a.port, share=a.share, auth=parse_auth(a.auth),
        models_dir=Path(a.models_dir), outputs_dir=Path(a.outputs_dir), model=a.model,
        device=a.device, dtype=a.dtype, demo=a.demo, api=not a.no_api,
        device_cache=max(1, a.device_cache), cpu_cache=max(0, a.cpu_cache), limits=limits,
        fast=a.fast, warmup=a.warmup, compile_mode=a.compile_mode,
        compile_cache_dir=Path(a.compile_cache_dir) if a.compile_cache_dir else None,
        batching=not a.no_batching, offload=offload, vae_tiling=a.vae_tiling or a.lowvram or a.medvram,
    )
