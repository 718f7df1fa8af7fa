"""Encode prompts the A1111 way into ``prompt_embeds`` for the diffusers pipelines.

What this does, per prompt (see :func:`encode_prompts`):

1. :func:`webui.prompts.prompt_parser.parse_prompt` splits it into weighted segments (LoRA tags dropped,
   ``BREAK`` markers kept).
2. Each segment is tokenized without special tokens; textual-inversion names (whole words,
   case-sensitive) become as many placeholder slots as the embedding has vectors.
3. Tokens are packed into chunks of 75. ``BREAK`` closes the current chunk. When a chunk is full
   and a comma is among its last 20 tokens, the tokens after that comma move on to the next chunk
   so a phrase is not cut in half. An embedding never straddles two chunks.
4. Every chunk becomes ``BOS + 75 tokens + EOS`` padded to 77 with the tokenizer's pad token (the
   same ids the tokenizer gives for a short prompt with ``padding="max_length"``).
5. Each chunk is encoded on its own (the text encoders are called with
   ``output_hidden_states=True``; with embeddings, the token embeddings are built here and run
   through the encoder layers directly, so the shared models are never modified).
6. "Original" emphasis per chunk and encoder: ``z *= weight``, then ``z *= mean_before / mean_after``.
7. Chunks are concatenated on the sequence axis; every prompt and negative prompt in the batch is
   padded with empty-prompt chunks to the same chunk count.

Clip skip uses A1111's numbering: 1 = last layer. SD1.x/SD2.x take ``hidden_states[-N]`` through
the final layer norm; SDXL takes ``hidden_states[-(N + 1)]`` of both encoders without the norm and
concatenates them on the feature axis, with the pooled embedding (text_encoder_2's projection) of
each prompt's first chunk.

Steps 2-4 (tokens into chunks, and the tokenizer/encoder pair they need) live in
``prompt_chunks.py``; this module runs the encoders (steps 1 and 5-7).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from webui.models.embeddings import SDXL_KEYS, SINGLE_KEY, Embedding, embedding_pattern
from webui.errors import UserError
from webui.prompts.prompt_chunks import CHUNK_TOKENS, Chunk, Encoder, tokenize_segments
from webui.prompts.prompt_parser import parse_prompt

__all__ = [
    "EncodedPrompts",
    "encode_prompts",
]

_ENCODE_BATCH = 16  #: chunks per text-encoder call


@dataclass
class EncodedPrompts:
    """Tensors for ``pipe(prompt_embeds=..., negative_prompt_embeds=..., ...)``.

    ``prompt_embeds``/``negative_prompt_embeds``: ``[batch, 77 * chunks, dim]`` on the text
    encoder's device and dtype (SDXL: ``dim`` = 768 + 1280 for the real models).
    ``pooled_prompt_embeds``/``negative_pooled_prompt_embeds``: ``[batch, projection_dim]`` for SDXL,
    else None. ``warnings``: messages for the user (prompt syntax, unusable embeddings), without
    duplicates. ``used_embeddings``: ``{name: sha256_12}`` of the embeddings that were applied (for
    the infotext ``TI hashes``). ``chunks``: chunk count of every row.
    """

    prompt_embeds: torch.Tensor
    negative_prompt_embeds: torch.Tensor
    pooled_prompt_embeds: torch.Tensor | None = None
    negative_pooled_prompt_embeds: torch.Tensor | None = None
    warnings: list[str] = field(default_factory=list)
    used_embeddings: dict[str, str] = field(default_factory=dict)
    chunks: int = 1


# --------------------------------------------------------------------------------------------
# Text encoder access
# --------------------------------------------------------------------------------------------


def _execution_device(model: torch.nn.Module) -> torch.device:
    try:
        from diffusers.utils.torch_utils import get_module_execution_device

        return get_module_execution_device(model)
    except Exception:  # pragma: no cover - older diffusers
        return next(model.parameters()).device


def _causal_mask(text_model: torch.nn.Module, hidden: torch.Tensor):
    """The attention mask CLIP's own forward builds (causal, no padding mask)."""
    try:
        from transformers.masking_utils import create_causal_mask
    except ImportError:  # pragma: no cover - transformers < 5
        create_causal_mask = None
    if create_causal_mask is not None:
        return create_causal_mask(
            config=text_model.config, inputs_embeds=hidden, attention_mask=None, past_key_values=None
        )
    seq = hidden.shape[1]  # pragma: no cover
    mask = torch.full((seq, seq), torch.finfo(hidden.dtype).min, device=hidden.device, dtype=hidden.dtype)
    return mask.triu(1)[None, None]  # pragma: no cover


# --------------------------------------------------------------------------------------------
# Running the text encoders
# --------------------------------------------------------------------------------------------


def _forward_plain(encoder: Encoder, ids: torch.Tensor, layer: int, final_norm: bool, pooled: bool):
    out = encoder.model(ids, output_hidden_states=True)
    if final_norm and layer == -1:
        z = out.last_hidden_state
    else:
        z = out.hidden_states[layer]
        if final_norm:
            z = encoder.text_model.final_layer_norm(z)
    pooled_out = None
    if pooled:
        pooled_out = getattr(out, "text_embeds", None)
        if pooled_out is None:
            pooled_out = out.pooler_output
    return z, pooled_out


def _forward_with_vectors(
    encoder: Encoder,
    ids: torch.Tensor,
    chunks: Sequence[Chunk],
    embeddings: dict[str, Embedding],
    layer: int,
    final_norm: bool,
    pooled: bool,
):
    """CLIP's forward with embedding vectors spliced into the token embeddings (models untouched)."""
    tm = encoder.text_model
    hook = getattr(encoder.model, "_hf_hook", None)
    if hook is not None and type(hook).__name__ == "CpuOffload":
        hook.pre_forward(encoder.model)  # model CPU offload: load the weights like forward() would
    inputs = encoder.token_embedding(ids)
    for row, chunk in enumerate(chunks):
        for pos, name in chunk.fixes:
            vectors = embeddings[name].vectors[encoder.vector_key][:CHUNK_TOKENS]
            inputs[row, pos : pos + vectors.shape[0]] = vectors.to(device=inputs.device, dtype=inputs.dtype)
    hidden = tm.embeddings(inputs_embeds=inputs)
    mask = _causal_mask(tm, hidden)
    total = encoder.num_layers + 1  # hidden_states entries: embeddings + one per layer
    wanted = total + layer  # absolute index of the requested hidden state
    run = encoder.num_layers if pooled else wanted
    states = [hidden]
    for block in tm.encoder.layers[:run]:
        hidden = block(hidden, mask, is_causal=True)
        if isinstance(hidden, tuple):  # pragma: no cover - older layer API
            hidden = hidden[0]
        states.append(hidden)
    z = states[wanted]
    if final_norm:
        z = tm.final_layer_norm(z)
    pooled_out = None
    if pooled:
        last = tm.final_layer_norm(states[-1])
        if getattr(tm, "eos_token_id", None) == 2:  # legacy configs pool at the largest id
            positions = ids.to(torch.int).argmax(dim=-1)
        else:
            positions = (ids == encoder.eos).to(torch.int).argmax(dim=-1)
        pooled_out = last[torch.arange(last.shape[0], device=last.device), positions]
        projection = getattr(encoder.model, "text_projection", None)
        if projection is not None:
            pooled_out = projection(pooled_out)
    return z, pooled_out


def _encode_chunks(
    encoder: Encoder,
    chunks: Sequence[Chunk],
    embeddings: dict[str, Embedding],
    layer: int,
    final_norm: bool,
    pooled: bool,
):
    """Hidden states (and pooled outputs) of unique chunks, batched."""
    device = _execution_device(encoder.model)
    zs, pools = [], []
    for start in range(0, len(chunks), _ENCODE_BATCH):
        part = chunks[start : start + _ENCODE_BATCH]
        ids = torch.tensor([c.ids for c in part], dtype=torch.long, device=device)
        if any(c.fixes for c in part):
            z, p = _forward_with_vectors(encoder, ids, part, embeddings, layer, final_norm, pooled)
        else:
            z, p = _forward_plain(encoder, ids, layer, final_norm, pooled)
        zs.append(z)
        pools.append(p)
    return torch.cat(zs), (torch.cat(pools) if pooled else None)


def _emphasis(z: torch.Tensor, weights: tuple[float, ...]) -> torch.Tensor:
    """A1111 "Original" emphasis for one chunk ``z`` [77, dim]: weight, then restore the mean."""
    if all(w == 1.0 for w in weights):
        return z
    w = torch.tensor(weights, dtype=torch.float32, device=z.device)
    zf = z.float()
    mean_before = zf.mean()
    zf = zf * w[:, None]
    mean_after = zf.mean()
    restored = zf * (mean_before / mean_after)
    # Mixed-sign weights can bring the mean near 0: restoring it would overflow (a black image).
    return (restored if torch.isfinite(restored.to(z.dtype)).all() else zf).to(z.dtype)


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def encode_prompts(
    tokenizers: list,
    text_encoders: list,
    prompts: list[str],
    negative_prompts: list[str],
    *,
    clip_skip: int = 1,
    embeddings: dict[str, Embedding] | None = None,
    sdxl: bool = False,
) -> EncodedPrompts:
    """Encode per-image ``prompts`` and ``negative_prompts`` (same length) the A1111 way.

    ``tokenizers``/``text_encoders``: ``[tokenizer], [text_encoder]`` for SD1.x/SD2.x;
    ``[tokenizer, tokenizer_2], [text_encoder, text_encoder_2]`` for SDXL (``sdxl=True``; a single
    pair with ``sdxl=True`` is the SDXL refiner's text_encoder_2). Identical prompts are encoded
    once. Runs under ``torch.no_grad()`` on the encoders' device and dtype; the models are not
    modified. Raises :class:`UserError` for a clip skip the model does not have.

        enc = encode_prompts([pipe.tokenizer], [pipe.text_encoder], ["a (red:1.2) hat"], [""])
        pipe(prompt_embeds=enc.prompt_embeds, negative_prompt_embeds=enc.negative_prompt_embeds)
    """
    if len(prompts) != len(negative_prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(negative_prompts)} negative prompts")
    if not prompts:
        raise ValueError("no prompts to encode")
    if len(tokenizers) != len(text_encoders) or not tokenizers:
        raise ValueError("need one tokenizer per text encoder")
    if sdxl:
        if len(text_encoders) > 2:
            raise ValueError("SDXL has at most two text encoders")
        keys = SDXL_KEYS if len(text_encoders) == 2 else SDXL_KEYS[1:]
    else:
        if len(text_encoders) != 1:
            raise ValueError("SD1.x/SD2.x have exactly one text encoder")
        keys = (SINGLE_KEY,)
    encoders = [Encoder(t, m, k) for t, m, k in zip(tokenizers, text_encoders, keys)]

    clip_skip = 1 if clip_skip is None else int(clip_skip)
    layer = -(clip_skip + 1) if sdxl else -clip_skip
    max_skip = min(e.num_layers for e in encoders) - (1 if sdxl else 0)
    if clip_skip < 1 or clip_skip > max_skip:
        raise UserError(f"Clip skip must be between 1 and {max_skip} for this model; got {clip_skip}.", "clip_skip")

    warnings: list[str] = []

    def warn(message: str) -> None:
        if message not in warnings:
            warnings.append(message)

    # Embeddings every encoder of this model can take.
    embeddings = embeddings or {}
    usable: dict[str, Embedding] = {}
    for name, emb in embeddings.items():
        vecs = [emb.vectors.get(e.vector_key) for e in encoders]
        if all(v is not None and int(v.shape[-1]) == e.hidden_size for v, e in zip(vecs, encoders)):
            usable[name] = emb
    pattern = embedding_pattern(embeddings)

    texts = list(dict.fromkeys([p or "" for p in prompts] + [n or "" for n in negative_prompts]))
    parsed = {}
    for text in texts:
        result = parse_prompt(text)
        for message in result.warnings:
            warn(message)
        parsed[text] = result.segments

    used: set[str] = set()
    skipped: set[str] = set()
    chunks: list[dict[str, list[Chunk]]] = []  # per encoder: text -> chunks
    for enc in encoders:
        chunks.append({t: tokenize_segments(enc, parsed[t], pattern, usable, used, skipped) for t in texts})
    for name in sorted(skipped):
        emb = embeddings[name]
        sizes = "/".join(str(e.hidden_size) for e in encoders)
        warn(
            f"Embedding '{name}' does not fit this model (its vectors are {emb.describe_sizes()} wide, "
            f"the text encoder{'s use' if len(encoders) > 1 else ' uses'} {sizes}); it was read as plain text."
        )
    for name in sorted(used):
        if embeddings[name].num_vectors > CHUNK_TOKENS:
            warn(f"Embedding '{name}' has {embeddings[name].num_vectors} vectors; only the first 75 were used.")

    # Pad every text to the same chunk count.
    count = max(len(c) for per_text in chunks for c in per_text.values())
    for enc, per_text in zip(encoders, chunks):
        for text, text_chunks in per_text.items():
            text_chunks.extend([enc.empty_chunk()] * (count - len(text_chunks)))

    final_norm = not sdxl
    with torch.no_grad():
        per_encoder_z: list[dict[str, torch.Tensor]] = []
        pooled_by_text: dict[str, torch.Tensor] = {}
        for index, (enc, per_text) in enumerate(zip(encoders, chunks)):
            want_pooled = sdxl and index == len(encoders) - 1
            unique = list({c.key: c for cs in per_text.values() for c in cs}.values())
            z, pooled = _encode_chunks(enc, unique, usable, layer, final_norm, want_pooled)
            row = {c.key: i for i, c in enumerate(unique)}
            encoded = {}
            for text, text_chunks in per_text.items():
                encoded[text] = torch.cat([_emphasis(z[row[c.key]], c.weights) for c in text_chunks])
                if want_pooled:
                    pooled_by_text[text] = pooled[row[text_chunks[0].key]]
            per_encoder_z.append(encoded)

        dtype = per_encoder_z[-1][texts[0]].dtype
        device = per_encoder_z[-1][texts[0]].device
        by_text = {
            t: torch.cat([enc_z[t].to(device=device, dtype=dtype) for enc_z in per_encoder_z], dim=-1) for t in texts
        }

        def stack(items: list[str]) -> torch.Tensor:
            return torch.stack([by_text[t or ""] for t in items])

        def stack_pooled(items: list[str]) -> torch.Tensor | None:
            if not sdxl:
                return None
            return torch.stack([pooled_by_text[t or ""] for t in items])

        return EncodedPrompts(
            prompt_embeds=stack(prompts),
            negative_prompt_embeds=stack(negative_prompts),
            pooled_prompt_embeds=stack_pooled(prompts),
            negative_pooled_prompt_embeds=stack_pooled(negative_prompts),
            warnings=warnings,
            used_embeddings={name: embeddings[name].sha256_12 for name in sorted(used)},
            chunks=count,
        )
