"""The PNG Info tab: drop an image, read how it was made, send the settings to txt2img.

Its read event is the named API endpoint `/png_info` (same result as REST `png-info`).
"""

from __future__ import annotations

import dataclasses

import gradio as gr

from ..errors import UserError
from ..metadata.infotext import infotext_to_fields
from ..metadata.pnginfo import png_info as read_png_info
from ..i18n import t
from .common import PRIVATE, warn_left_unchanged
from .controlnet_panel import restore_updates

# Controls that show results or trigger events; everything else is a value to fill.
_NOT_VALUES = (gr.Button, gr.Gallery, gr.State)


def _value_controls(controls) -> dict[str, gr.components.Component]:
    """A tab's Controls by A1111 field name (tabs name their controls by API field)."""
    out = {}
    for f in dataclasses.fields(controls):
        comp = getattr(controls, f.name)
        if isinstance(comp, gr.components.Component) and not isinstance(comp, _NOT_VALUES) and f.name != "infotext":
            out[f.name] = comp
    return out


def endpoint_controls(blocks, api_name: str) -> dict[str, gr.components.Component]:
    """The input components of a named endpoint by parameter name. Generate events take
    their tab's field table (A1111 field names), so this finds every control a tab has (hires fix, face detail...),
    including ones added later, without a list to keep in step."""
    for fn in getattr(blocks, "fns", {}).values():
        if getattr(fn, "api_name", None) != api_name or fn.fn is None:
            continue
        # The parameter name of each input, as Gradio names them (the tab's table keys).
        names = getattr(fn, "input_parameter_names", None) or []
        return {n: c for n, c in zip(names, fn.inputs)
                if n and isinstance(c, gr.components.Component) and not isinstance(c, _NOT_VALUES)}
    return {}


def _accepts(comp, value) -> bool:
    if isinstance(comp, gr.Dropdown) and not getattr(comp, "allow_custom_value", False):
        return any(v == value for _, v in (comp.choices or []))
    return True


def send_fields(text: str) -> dict:
    """Request fields from an infotext, for "send to"."""
    fields = infotext_to_fields(text)
    if "steps" in fields and "enable_hr" not in fields:
        fields["enable_hr"] = False  # a full infotext without hires keys was made without it
    if "steps" in fields:
        fields.setdefault("characters", [])  # likewise without a Character key: no character
    return fields


def send_updates(service, fields: dict, targets: dict, checkpoint=None, controlnet: dict | None = None) -> list:
    """gr.update()s that put `fields` into `targets` (name -> component), then into the
    `controlnet` accordion's widgets (name -> component, controlnet_panel), then the checkpoint."""
    updates, skipped = [], []
    for name, comp in targets.items():
        value = fields.get(name)
        if value is None:
            updates.append(gr.update())
        elif _accepts(comp, value):
            updates.append(gr.update(value=value))
        else:
            updates.append(gr.update())
            skipped.append(f"{name} {value!r}")
    if controlnet:
        units, problems = restore_updates(fields, controlnet, service.settings.models_dir)
        updates += units
        skipped += problems
    if checkpoint is not None:
        title = None
        for key in ("sd_model_hash", "sd_model_name"):
            if fields.get(key):
                try:
                    title = service.checkpoint_title(str(fields[key]))
                    break
                except UserError:
                    continue
        if title is None and fields.get("sd_model_name"):
            skipped.append(f"checkpoint {fields['sd_model_name']!r} (not in the models folder)")
        updates.append(gr.update(value=title) if title else gr.update())
    warn_left_unchanged(skipped)
    return updates


def build(service, shared):
    with gr.Row():
        with gr.Column(scale=1):
            image = gr.Image(label=t("png_info_image"), type="filepath", sources=["upload", "clipboard"], height=480,
                             elem_id="pnginfo_image")
        with gr.Column(scale=1):
            info = gr.Textbox(label=t("generation_parameters"), lines=6, interactive=False, buttons=["copy"],
                              elem_id="pnginfo_parameters")
            send = gr.Button(t("send_to_txt2img"), variant="primary", elem_id="pnginfo_send_txt2img")
            parameters = gr.JSON(label=t("png_info_by_key"), elem_id="pnginfo_keys")
            with gr.Accordion(t("png_info_other_text"), open=False):
                items = gr.JSON(label=t("png_info_text_items"), elem_id="pnginfo_items")

    def png_info(image: str | None) -> tuple[str, dict, dict]:
        """Read the generation parameters stored in a PNG, JPEG or WebP (A1111, Forge, SD.Next,
        ComfyUI, InvokeAI, NovelAI). Returns the A1111 infotext ("" if none), the infotext by
        key, and every other text item of the file."""
        if not image:
            return "", {}, {}
        try:
            found = read_png_info(image)
        except UserError as e:
            raise gr.Error(str(e)) from None
        if not found["info"]:
            gr.Info("This image carries no generation parameters.")
        return found["info"], found["parameters"], found["items"]

    image.change(png_info, image, [info, parameters, items], api_name="png_info")

    txt2img = shared.controls.get("txt2img")
    if txt2img is not None:
        checkpoint = getattr(shared, "checkpoint", None)
        targets = {**_value_controls(txt2img), **endpoint_controls(gr.context.Context.root_block, "txt2img")}
        # The checkpoint is matched by hash or name to a title below, not set from the raw name.
        targets = {n: c for n, c in targets.items() if c is not checkpoint and n != "sd_model_checkpoint"}
        # ControlNet units are restored as units (switching the others off), not field by field.
        units = dict(txt2img.controlnet)
        targets = {n: c for n, c in targets.items() if n not in units}

        def send_to_txt2img(text: str):
            if not text:
                gr.Warning("Nothing to send: drop an image with generation parameters first.")
                return ([gr.update() for _ in [*targets, *units]] + ([gr.update()] if checkpoint else [])
                        + [gr.Tabs()])
            return (send_updates(service, send_fields(text), targets, checkpoint, controlnet=units)
                    + [gr.Tabs(selected="txt2img")])

        outputs = (list(targets.values()) + list(units.values()) + ([checkpoint] if checkpoint is not None else [])
                   + [shared.tabs])
        send.click(send_to_txt2img, info, outputs, **PRIVATE)
    return None
