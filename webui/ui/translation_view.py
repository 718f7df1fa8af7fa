"""What the artist sees beside the editable English: the words still in Chinese highlighted (the
model does not understand them), and the state of the translation model's background download."""

from __future__ import annotations

import re

import gradio as gr

from ..i18n import t, text
from ..prompts.cjk_text import CJK

UNTRANSLATED = "中文"  # the highlight's category: CLIP reads these characters as unknown tokens


def marks(english: str) -> list[tuple[str, str | None]]:
    """`english` cut into spans, the CJK runs labelled UNTRANSLATED, for a gr.HighlightedText."""
    spans: list[tuple[str, str | None]] = []
    last = 0
    for m in re.finditer(f"{CJK}+", english or ""):
        if m.start() > last:
            spans.append((english[last:m.start()], None))
        spans.append((m.group(0), UNTRANSLATED))
        last = m.end()
    if last < len(english or ""):
        spans.append((english[last:], None))
    return spans


def status_text(service) -> str:
    """One line about the MarianMT download, in both languages; "" when there is none."""
    state, percent = service.translation_status()
    if state == "downloading":
        return " · ".join(text("translation_downloading", lang).format(percent=percent) for lang in ("zh", "en"))
    if state == "failed":
        return " · ".join(text("translation_download_failed", lang) for lang in ("zh", "en"))
    return ""


def build_marks(tab: str, name: str) -> gr.HighlightedText:
    return gr.HighlightedText([], label=t("translation_marks"), color_map={UNTRANSLATED: "orange"},
                              combine_adjacent=True, show_legend=False,
                              elem_id=f"{tab}_{name}_marks")


def build_status(tab: str) -> gr.Markdown:
    return gr.Markdown("", elem_id=f"{tab}_translation_status")


def watch_download(service, status: gr.Markdown) -> None:
    """While the translation model downloads, refresh `status` every two seconds; then stop."""
    if service.translation_status()[0] != "downloading":
        return
    timer = gr.Timer(2.0)

    def tick():
        line = status_text(service)
        return line, gr.Timer(active=service.translation_status()[0] == "downloading")

    timer.tick(tick, None, [status, timer], show_progress="hidden", api_visibility="private")
