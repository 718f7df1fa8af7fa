"""Fast mode and low-memory mode: how a loaded pipeline is prepared for the device.

Fast mode (--fast, CUDA): channels_last UNet/VAE, fused QKV projections (one matmul instead of
three per attention), PyTorch SDPA attention (diffusers' default processor) and torch.compile of
the UNet, VAE decoder and text encoders with static shapes (CUDA graphs in "reduce-overhead"
mode: the 20-step loop is bound by kernel launches, not arithmetic). What recompiles, once each,
then stays cached in memory and in the compile cache folder across restarts:
  - a new (batch, height, width) -- merged batches are padded to BATCH_BUCKETS so a handful of
    batch shapes covers every mix of requests; the text encoders' batches of 75-token chunks
    are padded the same way;
  - a newly loaded checkpoint (guards see new weights);
  - loading a LoRA into the UNet (new modules; the first LoRA also undoes the fused QKV, see
    unfuse_qkv). A LoRA's weight is a tensor, so new weights do not recompile (lora.py);
  - the first request with an IP-Adapter, and the first without one after it (other attention
    processors). Its weight is folded into the adapter's weights (ipadapter.py): no recompile.
Prompts, seeds, samplers, CFG and step counts change only tensor values: no recompile.

Low-memory mode (--offload model|sequential, --lowvram, --medvram): accelerate's CPU offload
hooks plus tiled VAE decoding, chosen from free VRAM at start-up when --offload auto.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

log = logging.getLogger(__name__)

BATCH_BUCKETS = (1, 2, 4, 8, 16)
# Common portrait/landscape sizes compiled by --warmup (w, h), per model family.
WARMUP_SIZES = {"sd": ((512, 512), (512, 768), (768, 512)), "sdxl": ((1024, 1024), (832, 1216), (1216, 832))}
GiB = 1024**3


def batch_bucket(n: int) -> int:
    """The batch size a merged batch of n images is padded to (n itself beyond the buckets)."""
    return next((b for b in BATCH_BUCKETS if b >= n), n)


def setup_compile_cache(folder: Path) -> Path:
    """Point inductor/triton at a persistent folder, so a restart reuses compiled kernels
    (must run before the first compile)."""
    folder = Path(folder).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(folder / "inductor"))
    os.environ.setdefault("TRITON_CACHE_DIR", str(folder / "triton"))
    try:
        import torch._inductor.config as inductor_config

        inductor_config.fx_graph_cache = True
        inductor_config.autotune_local_cache = True
    except Exception:  # noqa: BLE001 -- an older torch simply compiles again
        pass
    return folder


def optimize_pipeline(pipe, *, device: torch.device, compile_mode: str | None = "reduce-overhead",
                      backend: str | object = "inductor", fuse_qkv: bool = True,
                      compile_vae: bool = True) -> list[str]:
    """Apply fast mode to a pipeline in place; returns what was applied (for the log).

    `backend` is torch.compile's backend: "inductor" on GPUs; tests use a counting backend on
    the CPU. compile_mode None skips compilation (the layout changes alone).
    """
    applied = []
    unet, vae = pipe.unet, pipe.vae
    try:
        from diffusers.models.attention_processor import AttnProcessor2_0

        unet.set_attn_processor(AttnProcessor2_0())
        vae.set_attn_processor(AttnProcessor2_0())
        applied.append("sdpa")
    except Exception as e:  # noqa: BLE001
        log.info("SDPA processor not set: %s", e)
    if fuse_qkv:
        unet.fuse_qkv_projections()
        try:
            vae.fuse_qkv_projections()
        except Exception as e:  # noqa: BLE001 -- the UNet is where it pays
            log.info("VAE QKV not fused: %s", e)
        applied.append("fused-qkv")
    if device.type == "cuda":
        # Shapes are static per compiled bucket, so timing cuDNN's convolution algorithms once
        # per shape pays off on every later step.
        torch.backends.cudnn.benchmark = True
    unet.to(memory_format=torch.channels_last)
    vae.to(memory_format=torch.channels_last)
    applied.append("channels_last")
    if compile_mode is not None:
        from torch import _dynamo

        # One cache entry per (checkpoint, batch bucket, size): allow plenty before giving up.
        _dynamo.config.cache_size_limit = max(_dynamo.config.cache_size_limit, 64)
        _dynamo.config.accumulated_cache_size_limit = max(_dynamo.config.accumulated_cache_size_limit, 512)
        kwargs = {"backend": backend, "dynamic": False}
        if backend == "inductor":
            kwargs["mode"] = compile_mode
        compiled = torch.compile(unet.forward, **kwargs)

        def forward(sample, timestep, *args, **kw):
            # Samplers hand the UNet int64 or float timesteps (or Python numbers); one dtype means
            # one compiled graph for every sampler. The UNet casts them to float itself, so the
            # result is the same.
            timestep = torch.as_tensor(timestep, device=sample.device, dtype=torch.float32)
            return compiled(sample, timestep, *args, **kw)

        unet.forward = forward  # the pipeline keeps its UNet2DConditionModel (config, dtype...)
        applied.append(f"compile({compile_mode if backend == 'inductor' else backend})")
        if compile_vae:
            vae.decoder.forward = torch.compile(vae.decoder.forward, **kwargs)
            applied.append("compile(vae decoder)")
        for name in ("text_encoder", "text_encoder_2"):
            encoder = getattr(pipe, name, None)
            if encoder is not None:
                encoder.forward = _bucketed_rows(torch.compile(encoder.forward, **kwargs))
                applied.append(f"compile({name})")
    return applied


def _bucketed_rows(compiled):
    """A compiled text encoder's forward that pads its batch of 75-token chunks to a batch
    bucket (rows never mix in CLIP, so each row's output is unchanged) and returns copies of the
    real rows: a CUDA graph overwrites its outputs on the next replay, and prompt embeddings
    are kept in a cache. Eager, the encoder's ~200 small kernels cost more than its arithmetic;
    a graph replay brings CLIP-L from 6 ms to under 1 ms for a new prompt (H200)."""

    def forward(input_ids, *args, **kw):
        n = input_ids.shape[0]
        extra = batch_bucket(n) - n
        if extra:
            input_ids = torch.cat([input_ids, input_ids[-1:].expand(extra, -1)])
        return _rows(compiled(input_ids, *args, **kw), n)

    return forward


def _rows(value, n: int):
    """The first n rows of every tensor in a (nested) model output, copied."""
    if isinstance(value, torch.Tensor):
        return value[:n].clone()
    if isinstance(value, tuple):
        return tuple(_rows(v, n) for v in value)
    if isinstance(value, dict):  # transformers' ModelOutput is an ordered dict
        return type(value)(**{k: _rows(v, n) for k, v in value.items()})
    return value


def unfuse_qkv(unet) -> None:
    """Back to separate q/k/v projections before a LoRA is loaded: peft patches to_q/to_k/to_v,
    and the fused copy made at load time would run without the LoRA. The copies are freed
    (they doubled those weights); the pipeline stays unfused, and recompiles once."""
    if not getattr(unet, "original_attn_processors", None):
        return
    unet.unfuse_qkv_projections()
    unet.original_attn_processors = None
    for module in unet.modules():
        for name in ("to_qkv", "to_kv"):
            if isinstance(getattr(module, name, None), torch.nn.Module):
                delattr(module, name)
        if getattr(module, "fused_projections", False):
            module.fused_projections = False


def choose_offload(setting: str, device: torch.device) -> str:
    """auto -> none on big GPUs, 'model' under 12 GiB free (SDXL fits), 'sequential' under 6 GiB."""
    if setting != "auto":
        return setting
    if device.type != "cuda":
        return "none"
    free, _total = torch.cuda.mem_get_info(device)
    if free < 6 * GiB:
        return "sequential"
    if free < 12 * GiB:
        return "model"
    return "none"


def apply_offload(pipe, mode: str, device: torch.device, vae_tiling: bool) -> None:
    """Keep weights in CPU memory and move them in as needed (accelerate hooks)."""
    if mode == "model":
        pipe.enable_model_cpu_offload(device=device)  # one whole model at a time on the GPU
    elif mode == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)  # layer by layer: least VRAM, slowest
    if vae_tiling or mode != "none":
        pipe.vae.enable_tiling()
