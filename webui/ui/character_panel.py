"""The Character row of a generation tab: a multi-select of saved characters (the request's
`characters` field) and a create/edit section -- name, trigger words, LoRAs with weights,
reference images, IP-Adapter model and weight, prompt additions, notes; save, delete, export and
import a zip. The service expands the picked characters at generation (service_characters.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from ..engine.extensions.ipadapter import list_adapters
from ..errors import UserError
from ..i18n import t
from ..metadata.uploads import open_image
from .common import PRIVATE

NO_MODEL = "None"


def _names(service) -> list[str]:
    return list(service.characters())


def parse_loras(text: str) -> list[dict]:
    """"face:0.8, light" -> [{"name": "face", "weight": 0.8}, {"name": "light", "weight": 1.0}]."""
    out = []
    for part in (text or "").split(","):
        name, _, weight = part.strip().rpartition(":") if ":" in part else (part.strip(), "", "1")
        if not name.strip():
            continue
        try:
            out.append({"name": name.strip(), "weight": float(weight)})
        except ValueError:
            raise UserError(f"LoRA {part.strip()!r}: write name:weight, e.g. face:0.8", field="loras") from None
    return out


def _editor_values(service, name: str) -> dict:
    c = service.character(name)
    return {"name": c.name, "trigger_words": c.trigger_words, "prompt": c.prompt,
            "negative_prompt": c.negative_prompt, "notes": c.notes, "ip_adapter_weight": c.ip_adapter_weight,
            "ip_adapter_model": c.ip_adapter_model or NO_MODEL,
            "loras": ", ".join(f"{lo.name}:{lo.weight:g}" for lo in c.loras),
            "images": [str(p) for p in service.character_image_files(name)] or None}


def build(service, tab: str) -> gr.Dropdown:
    """The row and its editor; returns the dropdown (the tab's `characters` field)."""
    picker = gr.Dropdown(_names(service), value=[], multiselect=True, allow_custom_value=True, label=t("characters"),
                         info=t("characters_info"), elem_id=f"{tab}_characters")
    note = gr.Markdown("", elem_id=f"{tab}_character_note")
    adapters = list_adapters(service.settings.models_dir)
    with gr.Accordion(t("character_editor"), open=False, elem_id=f"{tab}_character_editor"):
        ed = {"name": gr.Textbox(label=t("character_name"), elem_id=f"{tab}_character_name"),
              "trigger_words": gr.Textbox(label=t("character_trigger_words"), elem_id=f"{tab}_character_trigger")}
        with gr.Row(equal_height=True):
            lora = gr.Dropdown([f.name for f in service.lora_files()], value=None, label=t("character_lora"),
                               scale=2, elem_id=f"{tab}_character_lora")
            lora_weight = gr.Slider(-2, 2, value=0.8, step=0.05, label=t("character_lora_weight"), scale=2)
            add = gr.Button(t("character_add_lora"), scale=1, elem_id=f"{tab}_character_add_lora")
        ed["loras"] = gr.Textbox(label=t("character_loras"), elem_id=f"{tab}_character_loras")
        ed["images"] = gr.File(file_count="multiple", file_types=["image"], type="filepath",
                               label=t("character_images"), elem_id=f"{tab}_character_images")
        with gr.Row():
            ed["ip_adapter_model"] = gr.Dropdown([NO_MODEL] + adapters, value=(adapters or [NO_MODEL])[0],
                                                 label=t("character_ip_model"), elem_id=f"{tab}_character_ip_model")
            ed["ip_adapter_weight"] = gr.Slider(0, 2, value=0.8, step=0.05, label=t("character_ip_weight"))
        ed["prompt"] = gr.Textbox(label=t("character_prompt"), elem_id=f"{tab}_character_prompt")
        ed["negative_prompt"] = gr.Textbox(label=t("character_negative_prompt"))
        ed["notes"] = gr.Textbox(label=t("character_notes"), lines=2)
        with gr.Row():
            save = gr.Button(t("character_save"), variant="primary", elem_id=f"{tab}_character_save")
            delete = gr.Button(t("character_delete"), variant="stop", elem_id=f"{tab}_character_delete")
            export = gr.Button(t("character_export"), elem_id=f"{tab}_character_export")
        with gr.Row():
            upload = gr.File(file_types=[".zip"], type="filepath", label=t("character_import"),
                             elem_id=f"{tab}_character_import")
            download = gr.File(label=t("character_file"), interactive=False, elem_id=f"{tab}_character_zip")
    _wire(service, picker, note, ed, (lora, lora_weight, add), (save, delete, export, upload, download))
    return picker


def _wire(service, picker, note, ed: dict, lora_row, buttons) -> None:
    lora, lora_weight, add = lora_row
    save, delete, export, upload, download = buttons
    fields = list(ed)

    def user_errors(fn):
        def run(*args):
            try:
                return fn(*args)
            except UserError as e:
                raise gr.Error(str(e)) from None
        return run

    def choices(value=None):
        names = _names(service)
        return gr.Dropdown(choices=names, value=[v for v in (value or []) if v in names])

    picker.focus(lambda value: choices(value), picker, picker, **PRIVATE)

    @user_errors
    def pick(value):
        value = list(value or [])
        warnings = [w for n in value for w in service.character_warnings(n)]
        for w in warnings:
            gr.Warning(w)
        if not value:
            return ["\n".join(warnings)] + [gr.update() for _ in fields]
        values = _editor_values(service, value[-1])  # the editor shows the last one picked
        return ["\n".join(warnings)] + [values[f] for f in fields]

    picker.input(pick, picker, [note] + [ed[f] for f in fields], **PRIVATE)

    def add_lora(text, name, weight):
        if not name:
            return text
        return ", ".join(p for p in [text.strip(" ,") if text else "", f"{name}:{weight:g}"] if p)

    add.click(add_lora, [ed["loras"], lora, lora_weight], ed["loras"], **PRIVATE)

    @user_errors
    def save_character(data):
        values = {f: data[ed[f]] for f in fields}
        files = values.pop("images") or []
        images = [open_image(f, max_pixels=service.settings.limits.max_upload_pixels).convert("RGB")
                  for f in files] or None
        values["loras"] = parse_loras(values["loras"])
        if values["ip_adapter_model"] == NO_MODEL:
            values["ip_adapter_model"] = ""
        char = service.save_character(values, images)
        gr.Info(f"Saved character {char.name!r}")
        return choices(list(data[picker] or []) + [char.name])

    save.click(save_character, {picker, *ed.values()}, picker, **PRIVATE)

    @user_errors
    def delete_character(name, value):
        service.delete_character(name)
        return choices([v for v in value or [] if v != name])

    delete.click(delete_character, [ed["name"], picker], picker, **PRIVATE)

    @user_errors
    def export_character(name):
        data = service.export_character((name or "").strip())
        path = Path(tempfile.mkdtemp(prefix="character-")) / f"{name.strip()}.zip"
        path.write_bytes(data)
        return str(path)

    export.click(export_character, ed["name"], download, **PRIVATE)

    @user_errors
    def import_character(path, value):
        if not path:
            return gr.update()
        char = service.import_character(Path(path).read_bytes()[: 64 * 1024 * 1024 + 1])
        gr.Info(f"Imported character {char.name!r}")
        return choices(list(value or []) + [char.name])

    upload.upload(import_character, [upload, picker], picker, **PRIVATE)
