"""Preset menu, styles multi-select and the Chinese-prompt translation preview of a tab.

Picking a preset fills the tab's controls (every control named like a field the preset sets:
sampler, schedule, steps, CFG, size for the active model's family, negative prompt, styles,
hires settings where the tab has them); the artist can change any of them afterwards. At
generation the service wraps the prompt in the preset's template and applies the styles, so
the infotext shows what the model read.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from ..errors import UserError
from ..i18n import t
from ..prompts.translate import has_cjk
from . import translation_view as view
from .common import PRIVATE

NO_PRESET = "None"


@dataclass
class PromptExtras:
    preset: gr.Dropdown
    styles: gr.Dropdown
    preset_info: gr.Markdown
    translated_prompt: gr.Textbox
    translated_negative_prompt: gr.Textbox
    translated_from: gr.State  # {"prompt": ..., "negative": ...} the preview was made for
    translation_box: gr.Group
    translation_status: gr.Markdown  # the MarianMT download, while there is one
    marks: gr.HighlightedText  # the prompt's English with the words still in Chinese highlighted
    negative_marks: gr.HighlightedText


def preset_choices(service) -> list:
    return [(t("preset_none"), NO_PRESET)] + [(p.label, p.name) for p in service.presets.values()]


def style_choices(service) -> list:
    return [(s.label, s.name) for s in service.styles]


def build_selectors(service, tab: str) -> tuple[gr.Dropdown, gr.Dropdown, gr.Markdown]:
    with gr.Row():
        preset = gr.Dropdown(preset_choices(service), value=NO_PRESET, label=t("presets"), elem_id=f"{tab}_preset",
                             scale=1)
        styles = gr.Dropdown(style_choices(service), value=[], multiselect=True, label=t("styles"),
                             info=t("styles_info"), elem_id=f"{tab}_styles", scale=2)
    info = gr.Markdown("", elem_id=f"{tab}_preset_info")
    return preset, styles, info


def build_translation(tab: str) -> tuple[gr.Group, gr.Textbox, gr.Textbox, gr.State, tuple]:
    # Hidden until the prompt has Chinese in it; then it shows the English the model will read,
    # the words left in Chinese highlighted beside each box, and the translation model's download.
    with gr.Group(visible=False, elem_id=f"{tab}_translation") as box:
        status = view.build_status(tab)
        translated = gr.Textbox("", label=t("translated_prompt"), lines=2, max_lines=8, interactive=True,
                                elem_id=f"{tab}_translated_prompt")
        marks = view.build_marks(tab, "translated_prompt")
        translated_neg = gr.Textbox("", label=t("translated_negative_prompt"), lines=1, max_lines=6, interactive=True,
                                    elem_id=f"{tab}_translated_neg_prompt")
        neg_marks = view.build_marks(tab, "translated_neg_prompt")
    made_for = gr.State(None)
    return box, translated, translated_neg, made_for, (status, marks, neg_marks)


def preset_updates(service, name: str | None, controls: dict) -> dict:
    """Component -> new value for every control the preset sets (controls: field name -> component)."""
    preset = service.preset(name)
    if preset is None:
        return {}
    fields = preset.to_request_fields(service.family())
    fd = preset.face_detail
    if fd is not None:  # the face detail pass's controls use the ADetailer-style field names
        fields.update(face_detail=fd.enabled, face_detail_prompt=fd.prompt,
                      face_detail_negative_prompt=fd.negative_prompt,
                      face_detail_denoising_strength=fd.denoising_strength, face_detail_confidence=fd.confidence,
                      face_detail_padding=fd.padding, face_detail_blur=fd.mask_blur)
    out = {}
    for key, value in fields.items():
        comp = controls.get(key)
        if comp is not None:
            out[comp] = value
    return out


def describe(service, name: str | None) -> str:
    preset = service.preset(name)
    if preset is None:
        return ""
    lines = [f"**{preset.label}**", "", preset.description_zh, "", preset.description]
    rec = preset.recommended
    if rec.checkpoints or rec.loras:
        lines += ["", "Recommended / 推荐: " + ", ".join(rec.checkpoints + rec.loras)]
    return "\n".join(line for line in lines if line is not None)


def wire(service, tab: str, extras: PromptExtras, prompt: gr.Textbox, negative: gr.Textbox,
         controls: dict) -> None:
    """controls: A1111 field name -> component of this tab (negative_prompt, steps, width ...)."""
    controls = dict(controls, styles=extras.styles, negative_prompt=negative)
    targets = list(dict.fromkeys(controls.values()))

    def pick(name):
        try:
            values = preset_updates(service, name, controls)
            info = describe(service, name)
        except UserError as e:
            gr.Warning(str(e))
            values, info = {}, ""
        return [values.get(c, gr.skip()) for c in targets] + [info]

    extras.preset.input(pick, extras.preset, targets + [extras.preset_info], **PRIVATE)

    def preview(text, neg):
        show = has_cjk(text or "") or has_cjk(neg or "")
        if not show:
            return gr.Group(visible=False), "", "", None, ""
        eng, warn = service.translate(text)
        eng_neg, warn_neg = service.translate(neg)
        for w in dict.fromkeys(warn + warn_neg):
            gr.Warning(w)
        return (gr.Group(visible=True), eng, eng_neg, {"prompt": text or "", "negative": neg or ""},
                view.status_text(service))

    outs = [extras.translation_box, extras.translated_prompt, extras.translated_negative_prompt,
            extras.translated_from, extras.translation_status]
    for box in (prompt, negative):
        box.change(preview, [prompt, negative], outs, trigger_mode="always_last", show_progress="hidden",
                   **PRIVATE)
    view.watch_download(service, extras.translation_status)
    # The translation and the artist's edits: the highlight follows what will be encoded.
    for english, marked in ((extras.translated_prompt, extras.marks),
                            (extras.translated_negative_prompt, extras.negative_marks)):
        english.change(view.marks, english, marked, trigger_mode="always_last", show_progress="hidden",
                       **PRIVATE)


def translation_fields(prompt: str, negative: str, translated: str | None, translated_neg: str | None,
                       made_for: dict | None) -> dict:
    """The artist's English, only where it was made for the prompt that is being generated."""
    made_for = made_for or {}
    fields = {}
    if translated and made_for.get("prompt") == (prompt or "") and has_cjk(prompt or ""):
        fields["translated_prompt"] = translated
    if translated_neg and made_for.get("negative") == (negative or "") and has_cjk(negative or ""):
        fields["translated_negative_prompt"] = translated_neg
    return fields


def build(service, tab: str) -> PromptExtras:
    """The preset/styles row; call right under the prompt row, then wire() once controls exist."""
    box, translated, translated_neg, made_for, (status, marks, neg_marks) = build_translation(tab)
    preset, styles, info = build_selectors(service, tab)
    return PromptExtras(preset, styles, info, translated, translated_neg, made_for, box, status, marks, neg_marks)
