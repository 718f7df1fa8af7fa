"""Prompts to token chunks, the A1111 way (steps 2-4 of ``prompt_encoder.py``'s list): each
weighted segment is tokenized without special tokens, textual-inversion names become
placeholder slots, and the tokens are packed into chunks of 75 (``BREAK`` closes a chunk, a
full chunk splits after a late comma, an embedding never straddles two), each then
``BOS + 75 + EOS`` padded to 77. :class:`Encoder` describes one tokenizer + text encoder pair.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from webui.models.embeddings import SINGLE_KEY, Embedding
from webui.prompts.prompt_parser import is_break, parse_prompt

CHUNK_TOKENS = 75  #: prompt tokens per chunk
CHUNK_LENGTH = CHUNK_TOKENS + 2  #: with BOS and EOS
COMMA_BACKTRACK = 20  #: how far back from a full chunk's end a comma may be to split there


def text_model_of(model: torch.nn.Module) -> torch.nn.Module:
    """The module holding ``embeddings``, ``encoder`` and ``final_layer_norm``.

    transformers 5 folds the text transformer into ``CLIPTextModel`` itself, while
    ``CLIPTextModelWithProjection`` (and older releases) keep it under ``.text_model``.
    """
    inner = getattr(model, "text_model", None)
    if inner is not None and hasattr(inner, "encoder"):
        return inner
    if hasattr(model, "embeddings") and hasattr(model, "encoder"):
        return model
    raise TypeError(f"{type(model).__name__} is not a CLIP text encoder")


class Encoder:
    """One tokenizer + text encoder pair and what the chunker needs to know about it."""

    def __init__(self, tokenizer, model: torch.nn.Module | None = None, vector_key: str = SINGLE_KEY):
        self.tokenizer = tokenizer
        self.model = model
        self.vector_key = vector_key
        if model is not None:
            self.text_model = text_model_of(model)
            self.token_embedding = self.text_model.embeddings.token_embedding
            self.hidden_size = int(self.token_embedding.embedding_dim)
            self.num_layers = len(self.text_model.encoder.layers)
        self.bos = tokenizer.bos_token_id
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos
        comma = tokenizer.convert_tokens_to_ids(",</w>")
        self.comma = None if comma is None or comma == tokenizer.unk_token_id else comma
        # A slot an embedding vector replaces: any id that is neither EOS nor the largest id
        # (CLIP pools at the first EOS, or at the argmax id in old configs).
        self.placeholder = 0 if self.eos != 0 else 1

    def empty_chunk(self) -> Chunk:
        ids = (self.bos, self.eos) + (self.pad,) * CHUNK_TOKENS
        return Chunk(ids, (1.0,) * CHUNK_LENGTH, ())


@dataclass(frozen=True)
class Chunk:
    ids: tuple[int, ...]  # CHUNK_LENGTH ids
    weights: tuple[float, ...]  # CHUNK_LENGTH emphasis weights
    fixes: tuple[tuple[int, str], ...]  # (position in ids, embedding name)

    @property
    def key(self):
        return self.ids, self.fixes


@dataclass
class _Builder:
    """Packs tokens into chunks (the chunking rules in the module docstring)."""

    encoder: Encoder
    chunks: list[Chunk] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    fixes: list[tuple[int, str]] = field(default_factory=list)
    last_comma: int = -1

    def close(self) -> None:
        enc = self.encoder
        n = len(self.ids)
        ids = (enc.bos, *self.ids, enc.eos) + (enc.pad,) * (CHUNK_TOKENS - n)
        weights = (1.0, *self.weights) + (1.0,) * (CHUNK_TOKENS - n + 1)
        fixes = tuple((pos + 1, name) for pos, name in self.fixes)  # +1 for BOS
        self.chunks.append(Chunk(ids, weights, fixes))
        self.ids, self.weights, self.fixes, self.last_comma = [], [], [], -1

    def add_token(self, token: int, weight: float) -> None:
        if len(self.ids) == CHUNK_TOKENS:
            if self.last_comma != -1 and CHUNK_TOKENS - self.last_comma <= COMMA_BACKTRACK:
                cut = self.last_comma + 1
                moved_ids, moved_weights = self.ids[cut:], self.weights[cut:]
                moved_fixes = [(pos - cut, name) for pos, name in self.fixes if pos >= cut]
                self.ids, self.weights = self.ids[:cut], self.weights[:cut]
                self.fixes = [f for f in self.fixes if f[0] < cut]
                self.close()
                self.ids, self.weights, self.fixes = moved_ids, moved_weights, moved_fixes
            else:
                self.close()
        if token == self.encoder.comma:
            self.last_comma = len(self.ids)
        self.ids.append(token)
        self.weights.append(weight)

    def add_embedding(self, name: str, count: int, weight: float) -> None:
        if len(self.ids) + count > CHUNK_TOKENS:
            self.close()
        self.fixes.append((len(self.ids), name))
        self.ids.extend([self.encoder.placeholder] * count)
        self.weights.extend([weight] * count)

    def finish(self) -> list[Chunk]:
        if self.ids or not self.chunks:
            self.close()
        return self.chunks


def tokenize_segments(
    encoder: Encoder,
    segments: list[tuple[str, float]],
    pattern: re.Pattern[str] | None,
    usable: dict[str, Embedding],
    used: set[str],
    skipped: set[str],
) -> list[Chunk]:
    """Segments -> chunks for one encoder."""
    # Split segment text at embedding names; tokenize all plain pieces in one tokenizer call.
    items: list[tuple] = []  # ("text", piece, weight) | ("emb", name, weight) | ("break",)
    for text, weight in segments:
        if is_break((text, weight)):
            items.append(("break",))
            continue
        pos = 0
        for m in pattern.finditer(text) if pattern is not None else ():
            name = m.group(1)
            if name not in usable:
                skipped.add(name)
                continue
            items.append(("text", text[pos : m.start()], weight))
            items.append(("emb", name, weight))
            pos = m.end()
        items.append(("text", text[pos:], weight))

    pieces = [item[1] for item in items if item[0] == "text" and item[1].strip()]
    token_lists = iter(
        encoder.tokenizer(pieces, add_special_tokens=False, truncation=False, verbose=False).input_ids
        if pieces
        else []
    )

    builder = _Builder(encoder)
    for item in items:
        if item[0] == "break":
            builder.close()
        elif item[0] == "emb":
            vectors = usable[item[1]].vectors[encoder.vector_key]
            builder.add_embedding(item[1], min(int(vectors.shape[0]), CHUNK_TOKENS), item[2])
            used.add(item[1])
        elif item[1].strip():
            for token in next(token_lists):
                builder.add_token(token, item[2])
    return builder.finish()


def tokenize_prompt(tokenizer, prompt: str) -> tuple[list[list[int]], list[list[float]]]:
    """Chunked ids and weights of one prompt (each chunk 77 long); for tests and token counters.

    Embeddings are not looked up here.
    """
    encoder = Encoder(tokenizer)
    chunks = tokenize_segments(encoder, parse_prompt(prompt).segments, None, {}, set(), set())
    return [list(c.ids) for c in chunks], [list(c.weights) for c in chunks]
