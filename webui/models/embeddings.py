"""Textual-inversion embeddings (A1111 ``.pt``, ``.safetensors``, diffusers ``.bin``, SDXL).

An :class:`Embedding` only holds vectors; nothing here touches a tokenizer or text encoder. The
prompt encoder splices the vectors in at encode time, so the shared models are never changed.

Supported files:

* A1111 ``.pt``: a dict with ``string_to_param`` = ``{'*': tensor[n, dim]}`` (loaded with
  ``torch.load(weights_only=True)``; a file that needs to run pickled code is refused).
* ``.safetensors`` with ``emb_params`` (or one single tensor of any name).
* SDXL embeddings (``.safetensors`` or ``.pt``) with ``clip_l`` [n, 768] and ``clip_g`` [n, 1280].
* diffusers ``learned_embeds.bin``-style ``{token: tensor}`` dicts with one tensor.

Vectors are keyed by encoder: ``"clip"`` for single-encoder models (SD1.x/SD2.x), ``"clip_l"`` and
``"clip_g"`` for the two SDXL encoders.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from webui.errors import UserError
from webui.models.model_files import scan
from webui.prompts.prompt_parser import parse_prompt

__all__ = [
    "EMBEDDING_EXTENSIONS",
    "Embedding",
    "file_sha256",
    "load_embedding",
    "EmbeddingLibrary",
    "embedding_pattern",
    "names_in_prompts",
    "load_embeddings_dir",
]

EMBEDDING_EXTENSIONS = (".pt", ".safetensors", ".bin")

#: Keys of :attr:`Embedding.vectors`.
SINGLE_KEY = "clip"
SDXL_KEYS = ("clip_l", "clip_g")


@dataclass(frozen=True)
class Embedding:
    """A loaded textual-inversion embedding.

    ``name``: the word that triggers it in a prompt (the file name without extension).
    ``vectors``: ``{"clip": [n, dim]}`` or ``{"clip_l": [n, 768], "clip_g": [n, 1280]}``, float32 on
    the CPU. ``sha256_12``: the first 12 hex digits of the file's SHA-256 (A1111's ``TI hashes``).
    """

    name: str
    vectors: dict[str, torch.Tensor]
    sha256_12: str
    path: str | None = field(default=None, compare=False)

    @property
    def num_vectors(self) -> int:
        """How many token slots the embedding takes in a prompt."""
        return int(next(iter(self.vectors.values())).shape[0])

    @property
    def is_sdxl(self) -> bool:
        return all(k in self.vectors for k in SDXL_KEYS)

    def describe_sizes(self) -> str:
        """E.g. ``'768'`` or ``'clip_l 768 / clip_g 1280'`` for messages."""
        if len(self.vectors) == 1:
            return str(int(next(iter(self.vectors.values())).shape[-1]))
        return " / ".join(f"{k} {int(v.shape[-1])}" for k, v in self.vectors.items())


def file_sha256(path: str | os.PathLike) -> str:
    """Full SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _as_matrix(value, path: Path) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise UserError(f"Embedding '{path.name}' does not contain a tensor where one was expected.")
    tensor = value.detach().to(device="cpu", dtype=torch.float32)
    if tensor.ndim == 1:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 2 or tensor.shape[0] == 0 or tensor.shape[1] == 0:
        raise UserError(
            f"Embedding '{path.name}' has vectors of shape {tuple(value.shape)}; expected [count, size]."
        )
    return tensor.contiguous()


def _vectors_from_dict(data: dict, path: Path) -> dict[str, torch.Tensor]:
    """Find the embedding vectors in a loaded state dict (any of the supported layouts)."""
    if all(k in data for k in SDXL_KEYS):
        vectors = {k: _as_matrix(data[k], path) for k in SDXL_KEYS}
        if vectors["clip_l"].shape[0] != vectors["clip_g"].shape[0]:
            raise UserError(
                f"Embedding '{path.name}' has {vectors['clip_l'].shape[0]} clip_l vectors but "
                f"{vectors['clip_g'].shape[0]} clip_g vectors."
            )
        return vectors
    if "string_to_param" in data:
        params = data["string_to_param"]
        try:
            values = list(params.values())
        except AttributeError:
            raise UserError(f"Embedding '{path.name}' has an unreadable 'string_to_param' entry.") from None
        if len(values) != 1:
            raise UserError(
                f"Embedding '{path.name}' holds {len(values)} tokens in 'string_to_param'; only one is supported."
            )
        return {SINGLE_KEY: _as_matrix(values[0], path)}
    if "emb_params" in data:
        return {SINGLE_KEY: _as_matrix(data["emb_params"], path)}
    tensors = [v for v in data.values() if isinstance(v, torch.Tensor)]
    if len(tensors) == 1:
        return {SINGLE_KEY: _as_matrix(tensors[0], path)}
    raise UserError(
        f"'{path.name}' is not a textual-inversion embedding (no 'string_to_param', 'emb_params' or "
        f"'clip_l'/'clip_g' entries)."
    )


def _load_pickle(path: Path) -> dict:
    # ParameterDict is a plain torch container some older .pt embeddings use; nothing else that
    # would run code is allowed.
    try:
        with torch.serialization.safe_globals([torch.nn.ParameterDict]):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(
            f"Embedding '{path.name}' contains pickled Python code and was refused for safety. "
            f"Use a .safetensors version of it."
        ) from exc
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise UserError(f"Embedding '{path.name}' could not be read: {exc}") from exc
    if isinstance(data, torch.Tensor):
        return {"emb_params": data}
    if not isinstance(data, dict):
        raise UserError(f"'{path.name}' is not a textual-inversion embedding.")
    return data


def _load_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"Embedding '{path.name}' could not be read: {exc}") from exc


def load_embedding(path: str | os.PathLike, name: str | None = None) -> Embedding:
    """Load one embedding file; raises :class:`UserError` for files that cannot be used.

    ``name`` defaults to the file stem (``EasyNegative.safetensors`` -> ``EasyNegative``).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in EMBEDDING_EXTENSIONS:
        raise UserError(
            f"'{path.name}' is not an embedding file (expected one of {', '.join(EMBEDDING_EXTENSIONS)})."
        )
    if not path.is_file():
        raise UserError(f"Embedding file '{path.name}' does not exist.")
    try:
        data = _load_safetensors(path) if suffix == ".safetensors" else _load_pickle(path)
        vectors = _vectors_from_dict(data, path)
        digest = file_sha256(path)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 -- a damaged .pt also fails with struct.error, KeyError, ...
        raise UserError(f"Embedding '{path.name}' could not be read: {type(exc).__name__}: {exc}") from exc
    return Embedding(name=name or path.stem, vectors=vectors, sha256_12=digest[:12], path=str(path))


def embedding_pattern(names) -> re.Pattern[str] | None:
    """Whole-word, case-sensitive matcher for embedding names (longest name first), as A1111
    matches them: ``art`` is found in "art, oil" but not in "artist", "heart" or "party"."""
    return _pattern(tuple(sorted({n for n in names if n}, key=lambda n: (-len(n), n))))


@functools.lru_cache(maxsize=8)
def _pattern(names: tuple[str, ...]) -> re.Pattern[str] | None:
    if not names:
        return None
    return re.compile(r"(?<![\w-])(" + "|".join(re.escape(n) for n in names) + r")(?![\w-])")


def names_in_prompts(texts, names) -> set[str]:
    """The `names` the prompts `texts` use: the same matcher the prompt encoder substitutes with,
    on the same text (LoRA tags and emphasis syntax taken out), so an embedding is loaded exactly
    when the encoder will use it."""
    pattern = embedding_pattern(names)
    if pattern is None:
        return set()
    return {m.group(1) for text in texts if text for segment, _ in parse_prompt(text).segments
            for m in pattern.finditer(segment)}


def load_embeddings_dir(folder: str | os.PathLike) -> tuple[dict[str, Embedding], list[str]]:
    """Load every embedding file under ``folder`` (recursively).

    Returns ``({name: Embedding}, warnings)``: files that cannot be used, links out of the folder
    and duplicate names are skipped with a warning (the first file in sorted path order wins).
    """
    folder = Path(folder)
    found: dict[str, Embedding] = {}
    refused: list[str] = []
    items = scan(folder, EMBEDDING_EXTENSIONS, refused=refused)
    warnings = [f"Skipping embedding '{rel}': it links to a file outside {folder.name}/; copy the file into the "
                "folder instead." for rel in refused]
    for item in items:
        try:
            emb = load_embedding(item.path)
        except UserError as exc:
            warnings.append(str(exc))
            continue
        if emb.name in found:
            kept = Path(found[emb.name].path or "").relative_to(folder)
            warnings.append(f"Two embeddings are named '{emb.name}'; using '{kept}' and skipping '{item.rel}'.")
            continue
        found[emb.name] = emb
    return found, warnings


class EmbeddingLibrary:
    """Embeddings in one or more folders, loaded on first use and kept until the file changes.

    A1111 keeps them in ``embeddings/`` at its root, other UIs in ``models/embeddings``; the
    first folder wins when two hold the same name. Only embeddings whose name a prompt uses as a
    word are loaded, so a large collection costs a folder listing per request.
    """

    def __init__(self, folders: list[str | os.PathLike]):
        self.folders = [Path(f) for f in dict.fromkeys(str(f) for f in folders)]
        self._cache: dict[str, tuple[tuple[int, int], Embedding]] = {}
        self._lock = threading.Lock()

    def files(self) -> dict[str, Path]:
        """name -> file, over all folders (first folder, then sorted path order, wins); nothing
        that links outside its folder."""
        found: dict[str, Path] = {}
        for folder in self.folders:
            for item in scan(folder, EMBEDDING_EXTENSIONS):
                found.setdefault(item.stem, item.path)
        return found

    def get(self, name: str, path: Path) -> Embedding:
        """The embedding in `path`, from the cache while the file is unchanged. UserError for a
        file that cannot be used."""
        try:
            st = path.stat()
        except OSError as exc:
            raise UserError(f"Embedding '{path.name}' could not be read: {exc}") from exc
        stamp = (st.st_size, st.st_mtime_ns)
        with self._lock:
            hit = self._cache.get(str(path))
        if hit and hit[0] == stamp:
            return hit[1]
        emb = load_embedding(path, name)
        with self._lock:
            self._cache[str(path)] = (stamp, emb)
        return emb

    def for_texts(self, texts: list[str]) -> tuple[dict[str, Embedding], list[str]]:
        """The embeddings the prompts `texts` use (whole words, see :func:`names_in_prompts`), and
        a warning naming each used file that cannot be read (the word then stays plain text)."""
        files = self.files()
        out: dict[str, Embedding] = {}
        warnings: list[str] = []
        for name in sorted(names_in_prompts(texts, files)):
            try:
                out[name] = self.get(name, files[name])
            except UserError as exc:
                warnings.append(f"{exc} It was read as plain text.")
        return out, warnings
