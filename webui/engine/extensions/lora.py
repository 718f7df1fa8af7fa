"""LoRA files from models/Lora: finding them by the name a prompt uses, their A1111 hashes, a
check that a file fits the loaded model, and the set of adapters loaded into one pipeline.

A `<lora:name:weight>` tag names a file by its stem (or its path inside models/Lora without the
extension, for files in subfolders). Files may be kohya (`lora_unet_...lora_down/lora_up/alpha`,
`lora_te_...`, `lora_te1_/te2_` for SDXL) or diffusers/peft (`unet.<module>.lora_A/lora_B`);
diffusers' own loader converts the kohya layout.

Adapters stay loaded in the pipeline under names of their own (cheap: an adapter that is not
active costs no compute), and each request activates exactly its own set with its weights --
or turns LoRA off entirely -- so one request's LoRA never shows in the next one.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from ...errors import UserError
from ...models.model_files import lookup, scan
from ...prompts.prompt_parser import extract_loras
from ..fast import unfuse_qkv
from .base import Extension

log = logging.getLogger(__name__)

LORA_EXTS = (".safetensors", ".pt", ".ckpt", ".bin")
MAX_LOADED = 8  # adapters kept per pipeline; the least recently used one goes first


@dataclass(frozen=True)
class LoraFile:
    name: str   # the stem: what `<lora:name>` uses
    rel: str    # path inside models/Lora without the extension ("people/faceDetail")
    path: Path

    @property
    def stamp(self) -> tuple[int, int]:
        st = self.path.stat()
        return st.st_size, st.st_mtime_ns


def weights_hash(path: Path) -> str:
    """SHA-256 as A1111 computes it for LoRAs: of the tensor data only for .safetensors (the
    8-byte header length and the JSON header skipped, so editing metadata keeps the hash;
    Civitai's "AutoV3"), of the whole file otherwise."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if path.suffix.lower() == ".safetensors":
            header_len = int.from_bytes(f.read(8), "little")
            f.seek(8 + header_len)
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class LoraLibrary:
    """What is in models/Lora. Listing re-reads the folder (files come and go while the app runs)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._hashes: dict[tuple[str, tuple[int, int]], str] = {}
        self._lock = threading.Lock()

    def list(self) -> list[LoraFile]:
        """LoRA files in models/Lora and its subfolders; nothing that links outside the folder."""
        return [LoraFile(m.stem, m.rel_stem, m.path) for m in scan(self.folder, LORA_EXTS)]

    def find(self, name: str) -> LoraFile | None:
        """The file a prompt's `<lora:name>` means, or None. A name that is a path raises
        UserError (nothing outside models/Lora is ever opened)."""
        m = lookup(self.folder, name, LORA_EXTS, what="LoRA", field="prompt")
        return LoraFile(m.stem, m.rel_stem, m.path) if m else None

    def short_hash(self, f: LoraFile) -> str:
        """12 hex digits, as `Lora hashes` records them."""
        key = (str(f.path), f.stamp)
        with self._lock:
            hit = self._hashes.get(key)
        if hit is None:
            hit = weights_hash(f.path)
            with self._lock:
                self._hashes[key] = hit
        return hit[:12]


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a LoRA file; pickled files load without running code."""
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path), device="cpu")
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or hostile file: one message, never a crash
        raise UserError(f"LoRA file {path.name} could not be read: {e}") from e
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UserError(f"{path.name} is not a LoRA file (no tensors in it)")
    return data


# ---- does a LoRA fit the model? ------------------------------------------------------------------

_DOWN = r"(?:lora_down|lora_A|lora\.down|down)\.weight$"
_CROSS_KV = re.compile(r"attn2[._](?:processor[._])?to_[kv](?:_lora)?[._].*" + _DOWN)
_TE2 = re.compile(r"^(?:lora_te2_|text_encoder_2\.|te2\.)")
_TE1 = re.compile(r"^(?:lora_te1?_|text_encoder\.|te1?\.)(?:.*)(?:q_proj|k_proj|v_proj|out_proj|fc1)[._].*"
                  + _DOWN)
_FAMILY_BY_CONTEXT = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL"}


def family_mismatch(sd: dict[str, torch.Tensor], unet_context_dim: int, te_widths: list[int],
                    is_sdxl: bool) -> str | None:
    """Why this LoRA cannot work on the loaded model, judged from key names and shapes, or None.

    The UNet's cross-attention input width (768 SD1, 1024 SD2, 2048 SDXL) is in every LoRA that
    touches attention; an SDXL LoRA also has a second text encoder part.
    """
    context = {int(v.shape[1]) for k, v in sd.items() if v.ndim >= 2 and _CROSS_KV.search(k)}
    made_for = next((_FAMILY_BY_CONTEXT[c] for c in context if c in _FAMILY_BY_CONTEXT), None)
    has_te2 = any(_TE2.match(k) for k in sd)
    if has_te2 and not is_sdxl:
        return f"it is made for {made_for or 'SDXL'} (it has a second text encoder part) and this model is not SDXL"
    if context and context != {unet_context_dim}:
        what = made_for or f"a model with {sorted(context)[0]}-wide text features"
        return f"it is made for {what}, but this model's UNet takes {unet_context_dim}-wide text features"
    te_in = {int(v.shape[1]) for k, v in sd.items() if v.ndim >= 2 and _TE1.match(k) and not _TE2.match(k)}
    if te_in and te_widths and te_in != {te_widths[0]}:
        return f"its text-encoder part is {sorted(te_in)[0]} wide, this model's text encoder is {te_widths[0]}"
    return None


# ---- the adapters loaded into one pipeline -----------------------------------------------------------


class AdapterSet:
    """LoRAs loaded into one pipeline (UNet and text encoders), by file and modification time.

    Not thread-safe on its own: the engine calls it under its device lock, so one request's
    activation cannot interleave with another's denoising.
    """

    def __init__(self, pipe, limit: int = MAX_LOADED):
        self.pipe = pipe
        self.limit = limit
        self._loaded: OrderedDict[tuple, str] = OrderedDict()  # (path, stamp) -> adapter name
        self._counter = 0
        self.active: list[tuple[str, float]] = []
        self.wanted: list[tuple[LoraFile, float]] = []  # what is active, as asked (to switch back to)
        self._wanted: tuple | None = None  # what the last activate() was asked for...
        self._notes: list[str] = []        # ...and what it warned (said again to each request)

    def _key(self, f: LoraFile) -> tuple:
        return (str(f.path), f.stamp)

    def _evict(self, keep: set[tuple]) -> None:
        while len(self._loaded) > self.limit:
            victim = next((k for k in self._loaded if k not in keep), None)
            if victim is None:
                return
            self._delete(self._loaded.pop(victim))

    def _delete(self, adapter: str) -> None:
        try:
            self.pipe.delete_adapters([adapter])
        except Exception:  # a half-loaded adapter may be missing from some parts
            log.debug("could not delete adapter %s", adapter, exc_info=True)

    def _model_shape(self) -> tuple[int, list[int], bool]:
        pipe = self.pipe
        widths = [m.config.hidden_size for m in (getattr(pipe, "text_encoder", None),
                                                 getattr(pipe, "text_encoder_2", None)) if m is not None]
        return int(pipe.unet.config.cross_attention_dim), widths, getattr(pipe, "text_encoder_2", None) is not None

    def load(self, f: LoraFile) -> str:
        """The adapter name of `f`, loading it on first use. UserError if it does not fit."""
        key = self._key(f)
        if key in self._loaded:
            self._loaded.move_to_end(key)
            return self._loaded[key]
        sd = read_state_dict(f.path)
        why = family_mismatch(sd, *self._model_shape())
        if why:
            raise UserError(f"LoRA {f.name} does not fit the loaded model: {why}; it was not applied")
        unfuse_qkv(self.pipe.unet)  # fast mode's fused q/k/v would bypass the LoRA's q/k/v
        self._counter += 1
        adapter = f"lora{self._counter}"  # peft adapter names become module keys: no dots
        try:
            # A .safetensors goes by path: diffusers then also reads the alpha a diffusers-format
            # file keeps in its metadata (a state dict alone would silently drop it).
            source = str(f.path) if f.path.suffix.lower() == ".safetensors" else sd
            self.pipe.load_lora_weights(source, adapter_name=adapter)
        except Exception as e:  # unknown layouts (LyCORIS LoKr, other model families...)
            self._delete(adapter)
            raise UserError(f"LoRA {f.name} could not be applied to this model: {e}") from e
        parts = [p for p, names in self.pipe.get_list_adapters().items() if adapter in names]
        if not parts:
            raise UserError(f"LoRA {f.name} has no weights this model can use; it was not applied")
        self._loaded[key] = adapter
        return adapter

    def activate(self, wanted: list[tuple[LoraFile, float]]) -> list[str]:
        """Make exactly `wanted` active with its weights (nothing: LoRA off). Returns warnings;
        a LoRA that cannot be used is left out and named in a warning. Asking again for the
        set that is active costs nothing (the face pass may switch sets and back)."""
        wanted_key = tuple((self._key(f), w) for f, w in wanted)
        if wanted_key == self._wanted:
            return list(self._notes)
        warnings: list[str] = []
        names: list[str] = []
        weights: list[float] = []
        keep = {self._key(f) for f, _ in wanted}
        for f, weight in wanted:
            try:
                names.append(self.load(f))
                weights.append(weight)
            except UserError as e:
                warnings.append(str(e))
        self._evict(keep)
        if names:
            self.pipe.enable_lora()
            self.pipe.set_adapters(names, weights)
            self._scales_as_tensors()
        elif self._loaded:
            self.pipe.disable_lora()
        self.active = list(zip(names, weights))
        self._wanted, self._notes, self.wanted = wanted_key, list(warnings), list(wanted)
        return warnings

    def _scales_as_tensors(self) -> None:
        """Hold every LoRA layer's scale in a 0-dim tensor on its device, one per layer and
        adapter, refilled in place. peft keeps the scale as a Python float, which torch.compile
        bakes into the graph: each new <lora:name:weight> would recompile the UNet (a minute
        on a GPU). As a tensor it is an input of the compiled graph, like the latents."""
        from peft.tuners.lora import LoraLayer

        for part in (getattr(self.pipe, n, None) for n in ("unet", "text_encoder", "text_encoder_2")):
            for module in part.modules() if part is not None else ():
                if not isinstance(module, LoraLayer):
                    continue
                held = module.__dict__.setdefault("_scale_tensors", {})
                for gone in set(held) - set(module.scaling):  # adapters deleted since
                    del held[gone]
                for adapter, value in module.scaling.items():
                    if isinstance(value, torch.Tensor):
                        continue
                    t = held.get(adapter)
                    if t is None:
                        device = module.get_base_layer().weight.device
                        if device.type == "meta":  # sequential offload: weights arrive per call
                            device = torch.device("cpu")
                        t = held[adapter] = torch.tensor(float(value), dtype=torch.float32, device=device)
                    else:
                        t.fill_(float(value))
                    module.scaling[adapter] = t

    def adapter_of(self, f: LoraFile) -> str | None:
        return self._loaded.get(self._key(f))

    def loaded_count(self) -> int:
        return len(self._loaded)


def merge_tags(tags: list[tuple[str, float]]) -> tuple[list[tuple[str, float]], list[str]]:
    """One weight per LoRA: a name given twice keeps its last weight (with a warning)."""
    out: dict[str, float] = {}
    warnings = []
    for name, w in tags:
        if name in out and out[name] != w:
            warnings.append(f"LoRA {name} is named twice in the prompt; using the last weight {w:g}")
        out[name] = w
    return list(out.items()), warnings


def prompt_tags(prompt: str) -> tuple[tuple[str, float], ...]:
    """The LoRA set a prompt asks for, one weight per name."""
    return tuple(merge_tags(extract_loras(prompt)[1])[0])


class Lora(Extension):
    """Exactly the `<lora:...>` set of the pass's prompt, active while the pass runs (none:
    LoRA off). Unknown or unusable LoRAs are warnings, as in A1111; a name that points outside
    models/Lora is refused (UserError)."""

    def __init__(self, prompt: str, negative: str):
        self.prompt, self.negative = prompt, negative
        self.tags = prompt_tags(prompt)
        self.wanted: list[tuple[LoraFile, float]] = []
        self.hashes: dict[str, str] = {}

    def batch_key(self) -> tuple:
        return tuple(sorted(self.tags))

    def prepare(self, ctx) -> None:
        _, tags, _ = extract_loras(self.prompt)  # syntax warnings come from the prompt encoder
        ctx.note(*merge_tags(tags)[1])
        if extract_loras(self.negative)[1]:
            ctx.note("LoRA tags in the negative prompt have no effect (as in A1111); they were removed from its "
                     "text. Use a negative weight in the prompt, e.g. <lora:name:-0.5>.")
        library = ctx.engine.loras
        self.wanted = []
        for name, weight in self.tags:
            f = library.find(name)
            if f is None:
                ctx.note(f"LoRA {name!r} was not found in {library.folder.name}/; it was ignored")
                continue
            self.wanted.append((f, weight))
        self._activate(ctx)  # before any prompt is encoded: text-encoder LoRAs change the embeddings
        applied = {a for a, _ in ctx.model.adapters.active} if ctx.model.adapters else set()
        self.hashes = {f.name: library.short_hash(f) for f, _ in self.wanted
                       if ctx.model.adapters.adapter_of(f) in applied}

    def _activate(self, ctx) -> None:
        model = ctx.model
        if model.adapters is None:
            if not self.wanted:
                return  # nothing ever loaded into this model: nothing to turn off
            model.adapters = AdapterSet(model.pipe)
        ctx.note(*model.adapters.activate(self.wanted))

    def around_call(self, ctx, spec, pipe):
        self._activate(ctx)  # a no-op unless another pass switched sets
        return super().around_call(ctx, spec, pipe)

    def infotext(self, ctx) -> dict:
        return {"Lora hashes": dict(self.hashes)} if self.hashes else {}

    def for_subpass(self, ctx, prompt: str, negative: str) -> "Lora":
        if prompt_tags(prompt) == self.tags:
            return self
        sub = Lora(prompt, negative)
        sub.prepare(ctx)
        return sub
