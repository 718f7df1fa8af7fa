"""The Regions accordion (txt2img): columns or rows, each with its own prompt (request/regions.py).

The region prompts are the prompt's parts separated by BREAK, so the accordion only holds the
switch, the mode and the divide ratio; `request_fields` turns them into the request's `regions`.
"""

from __future__ import annotations

import gradio as gr

from ..i18n import t
from ..request.regions import MODES

FIELDS = ("regions_enabled", "regions_mode", "regions_ratios")


def build(tab: str) -> dict:
    """The accordion's widgets by field name (they go into the tab's field table)."""
    with gr.Accordion(t("regions_title"), open=False, elem_id=f"{tab}_regions"):
        enabled = gr.Checkbox(False, label=t("regions_enable"), info=t("regions_info"),
                              elem_id=f"{tab}_regions_enabled")
        with gr.Row():
            mode = gr.Radio(list(MODES), value=MODES[0], label=t("regions_mode"), elem_id=f"{tab}_regions_mode")
            ratios = gr.Textbox("1,1", label=t("regions_ratios"), lines=1, elem_id=f"{tab}_regions_ratios")
    return dict(zip(FIELDS, (enabled, mode, ratios)))


def request_fields(values: dict) -> dict:
    """A handler's `values` with the accordion's fields replaced by the request's `regions`
    (None when it is off; an API caller may also send `regions` itself)."""
    rest = {k: v for k, v in values.items() if k not in FIELDS}
    if values.get("regions_enabled"):
        rest["regions"] = {"mode": values.get("regions_mode") or MODES[0], "ratios": values.get("regions_ratios") or ""}
    return rest
