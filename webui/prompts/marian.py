"""The MarianMT Chinese -> English translator (e.g. Helsinki-NLP/opus-mt-zh-en) from a model
folder or the local Hugging Face cache: never downloads, loads on first use (transformers and
torch are imported only then), CPU, greedy decoding, a small result cache.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
import warnings as _warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from webui.errors import UserError

log = logging.getLogger(__name__)

MARIAN_REPO_ID = "Helsinki-NLP/opus-mt-zh-en"

_MARIAN_FILES = ("config.json", "source.spm", "target.spm", "vocab.json")
_MARIAN_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def _check_marian_dir(path: Path) -> None:
    if not path.is_dir():
        raise UserError(f"MarianMT model folder '{path}' does not exist.", field="translation")
    missing = [f for f in _MARIAN_FILES if not (path / f).is_file()]
    if not any((path / w).is_file() for w in _MARIAN_WEIGHTS):
        missing.append(" or ".join(_MARIAN_WEIGHTS))
    if missing:
        raise UserError(
            f"'{path.name}' is not a complete MarianMT model folder: missing {', '.join(missing)}.",
            field="translation",
        )


def _to_ascii(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = text.translate(str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-"}))
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if ch.isascii() and (ch.isprintable() or ch == " "))
    return re.sub(r"\s+", " ", text).strip()


class MarianTranslator:
    """zh->en with a MarianMT model in a local folder (``source.spm``, ``target.spm``,
    ``vocab.json``, ``config.json``, weights). Loaded on first use, CPU, greedy decoding,
    short outputs; results are plain ASCII. Thread-safe; small result cache."""

    def __init__(self, model_dir: str | Path, *, max_new_tokens: int = 96, cache_size: int = 512):
        self.model_dir = Path(model_dir)
        _check_marian_dir(self.model_dir)
        self.max_new_tokens = max_new_tokens
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._model = None
        self._tokenizer = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import MarianMTModel, MarianTokenizer

        with _warnings.catch_warnings():
            _warnings.filterwarnings("ignore", message=".*sacremoses.*")
            tokenizer = MarianTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
            model = MarianMTModel.from_pretrained(str(self.model_dir), local_files_only=True)
        model.eval()
        self._tokenizer, self._model = tokenizer, model
        log.info("loaded MarianMT translator from %s", self.model_dir)

    def translate(self, text: str) -> str:
        return self.translate_many([text])[0]

    def translate_many(self, texts: Sequence[str]) -> list[str]:
        texts = [t.strip() for t in texts]
        with self._lock:
            todo = [t for t in dict.fromkeys(texts) if t and t not in self._cache]
            if todo:
                self._load()
                import torch

                assert self._tokenizer is not None and self._model is not None
                batch = self._tokenizer(todo, return_tensors="pt", padding=True, truncation=True,
                                        max_length=128)
                limit = min(self.max_new_tokens, 8 + 3 * int(batch["input_ids"].shape[1]))
                with torch.inference_mode():
                    out = self._model.generate(**batch, num_beams=1, do_sample=False,
                                               max_new_tokens=limit)
                decoded = self._tokenizer.batch_decode(out, skip_special_tokens=True)
                for src, dst in zip(todo, decoded):
                    self._cache[src] = _to_ascii(dst)
                    self._cache.move_to_end(src)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            return [self._cache.get(t, "") if t else "" for t in texts]


def find_cached_marian(repo_id: str = MARIAN_REPO_ID, cache_dir: str | Path | None = None) -> Path | None:
    """The local Hugging Face cache folder of ``repo_id`` if it is complete; never downloads."""
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(repo_id, local_files_only=True, cache_dir=cache_dir))
    except Exception:
        return None
    try:
        _check_marian_dir(path)
    except UserError:
        return None
    return path


