"""A folding panel under a tab's prompt that lists the LoRAs in models/Lora and the
textual-inversion embeddings; a click adds `<lora:name:1>` (or the embedding's name) to the
prompt, a second click on the same item takes it out again, as in A1111."""

from __future__ import annotations

import re

import gradio as gr
from ..i18n import t

from .common import PRIVATE


def _join(prompt: str, piece: str) -> str:
    prompt = (prompt or "").rstrip()
    if not prompt:
        return piece
    return f"{prompt}{'' if prompt.endswith(',') else ','} {piece}"


def _remove(prompt: str, pattern: str) -> tuple[str, bool]:
    new, n = re.subn(r"[ \t]*" + pattern, "", prompt or "", count=1)
    if not n:
        return prompt, False
    new = re.sub(r"[ \t]*,[ \t]*(?:,[ \t]*)+", ", ", new)  # the comma it leaves behind
    new = re.sub(r"[ \t]{2,}", " ", new).strip(" ,")
    return new, True


def toggle_lora(prompt: str, name: str, weight: float = 1.0) -> str:
    """Add `<lora:name:weight>` to the prompt, or remove this LoRA's tag if it is there."""
    new, removed = _remove(prompt, r"<(?:lora|lyco):" + re.escape(name) + r"(?::[^<>]*)?>")
    return new if removed else _join(prompt, f"<lora:{name}:{weight:g}>")


def toggle_word(prompt: str, word: str) -> str:
    """Add an embedding's trigger word, or remove it if it is already a word of the prompt."""
    new, removed = _remove(prompt, r"(?<![\w-])" + re.escape(word) + r"(?![\w-])")
    return new if removed else _join(prompt, word)


def _lora_samples(service, text: str = "") -> list[list[str]]:
    text = (text or "").lower()
    return [[f.rel] for f in service.lora_files() if text in f.rel.lower()] or [[""]]


def _embedding_samples(service, text: str = "") -> list[list[str]]:
    text = (text or "").lower()
    return [[n] for n in service.embedding_names() if text in n.lower()] or [[""]]


def build(service, prompt: gr.Textbox, negative: gr.Textbox, tab: str) -> None:
    with gr.Accordion(t("networks_title"), open=False, elem_id=f"{tab}_networks"):
        with gr.Row(equal_height=True):
            search = gr.Textbox(label=t("networks_search"), placeholder=t("networks_search_placeholder"), scale=4, elem_id=f"{tab}_networks_search")
            target = gr.Radio(["Prompt", "Negative prompt"], value="Prompt", label=t("networks_target"), scale=3,
                              elem_id=f"{tab}_networks_target")
            refresh = gr.Button("🔄", scale=0, min_width=48, elem_id=f"{tab}_networks_refresh")
        loras = gr.Dataset(components=["textbox"], samples=_lora_samples(service), label=t("networks_lora"),
                           samples_per_page=40, elem_id=f"{tab}_lora_list")
        embeddings = gr.Dataset(components=["textbox"], samples=_embedding_samples(service),
                                label=t("networks_textual_inversion"), samples_per_page=40, elem_id=f"{tab}_embedding_list")

    def relist(text):
        return gr.Dataset(samples=_lora_samples(service, text)), gr.Dataset(samples=_embedding_samples(service, text))

    search.change(relist, search, [loras, embeddings], **PRIVATE)
    refresh.click(relist, search, [loras, embeddings], **PRIVATE)

    def add_lora(sample, where, p, n):
        name = (sample or [""])[0]
        if not name:
            return p, n
        return (toggle_lora(p, name), n) if where == "Prompt" else (p, toggle_lora(n, name))

    def add_embedding(sample, where, p, n):
        name = (sample or [""])[0]
        if not name:
            return p, n
        return (toggle_word(p, name), n) if where == "Prompt" else (p, toggle_word(n, name))

    loras.click(add_lora, [loras, target, prompt, negative], [prompt, negative], **PRIVATE)
    embeddings.click(add_embedding, [embeddings, target, prompt, negative], [prompt, negative], **PRIVATE)
