"""The Settings tab: the A1111 options of webui/options.py (the table the REST API's
/sdapi/v1/options uses), grouped as Saving, Paths, Live previews and Sampling. Apply checks
every value, saves them (options.json beside the outputs) and reads them back; options this app
cannot change are shown but not editable."""

from __future__ import annotations

import gradio as gr

from ..errors import UserError
from ..i18n import t, text
from ..options import GROUPS, OPTIONS, Option
from .common import PRIVATE


def _control(o: Option, value, service):
    common = dict(label=t(o.label), value=value, elem_id=f"setting_{o.key}", interactive=o.applies != "fixed")
    if o.key == "sd_vae":
        return gr.Dropdown(service.vae_names(), **common)
    if o.kind == "bool":
        return gr.Checkbox(**common)
    if o.kind == "int":
        if o.hi - o.lo <= 100:
            return gr.Slider(o.lo, o.hi, step=1, **common)
        return gr.Number(precision=0, minimum=o.lo, maximum=o.hi, **common)
    if o.kind == "choice":
        return gr.Dropdown(list(o.choices), **common)
    return gr.Textbox(**common)


def build(service, shared) -> dict:
    shown = [o for o in OPTIONS if o.applies != "model"]
    values = service.option_values()
    controls = {}
    gr.Markdown(t("settings_note"))
    for group in GROUPS:
        with gr.Accordion(t(f"settings_group_{group}"), open=True):
            for o in shown:
                if o.group == group:
                    controls[o.key] = _control(o, values[o.key], service)
    apply = gr.Button(t("settings_apply"), variant="primary", elem_id="settings_apply")
    keys = list(controls)

    def save(*new):
        body = {k: (int(v) if BY_INT.get(k) and v is not None else v) for k, v in zip(keys, new)}
        try:
            warnings = service.set_options({k: v for k, v in body.items() if v is not None})
        except UserError as e:
            raise gr.Error(str(e)) from None
        for w in warnings:
            gr.Warning(w)
        gr.Info(text("settings_saved"))
        current = service.option_values()
        return [current[k] for k in keys]

    apply.click(save, [controls[k] for k in keys], [controls[k] for k in keys], **PRIVATE)
    return controls


BY_INT = {o.key: o.kind == "int" for o in OPTIONS}

__all__ = ["build"]
