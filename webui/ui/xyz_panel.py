"""The "Script" accordion of txt2img and img2img: None or the X/Y/Z plot, with a type dropdown
and a values box per axis. Its controls join the tab's field table (`xyz_controls`); the tab's
handler hands its fields to `run`, which runs the plot when it is chosen (Service.plot and
Service.run_plot, as the REST API's script_name does) and a plain generation otherwise."""

from __future__ import annotations

import gradio as gr

from ..errors import UserError
from ..i18n import t
from ..request.scripts import XYZ_PLOT
from ..request.xyz import supported_axis_names
from .common import caller_of, gallery_output, run_generation

_SCRIPT_NONE = "None"
_PLOT = "X/Y/Z plot"
_DEFAULTS = {"x": ("Seed", ""), "y": ("Nothing", ""), "z": ("Nothing", "")}


def xyz_controls(tab: str) -> dict:
    """The accordion's controls as field-table entries: `script_name`, `xyz_<axis>_type`,
    `xyz_<axis>_values`, `xyz_draw_legend`, `xyz_include_lone_images`, `xyz_no_fixed_seeds`,
    `xyz_margin_size`."""
    task = "txt2img" if tab == "txt2img" else "img2img"
    axes = supported_axis_names(task)
    table: dict = {}
    with gr.Accordion(t("xyz_script"), open=False, elem_id=f"{tab}_script_accordion"):
        script = gr.Dropdown([(t("xyz_script_none"), _SCRIPT_NONE), _PLOT], value=_SCRIPT_NONE,
                             label=t("xyz_script"), elem_id=f"{tab}_script")
        table["script_name"] = script
        with gr.Group(visible=False) as box:
            for a, (kind, values) in _DEFAULTS.items():
                with gr.Row():
                    table[f"xyz_{a}_type"] = gr.Dropdown(axes, value=kind, label=t(f"xyz_{a}_type"),
                                                         elem_id=f"{tab}_xyz_{a}_type", scale=1)
                    table[f"xyz_{a}_values"] = gr.Textbox(values, label=t(f"xyz_{a}_values"), info=t("xyz_values_info"),
                                                          elem_id=f"{tab}_xyz_{a}_values", scale=2)
            with gr.Row():
                table["xyz_draw_legend"] = gr.Checkbox(True, label=t("xyz_draw_legend"), elem_id=f"{tab}_xyz_legend")
                table["xyz_include_lone_images"] = gr.Checkbox(False, label=t("xyz_include_lone_images"),
                                                               elem_id=f"{tab}_xyz_lone_images")
                table["xyz_no_fixed_seeds"] = gr.Checkbox(False, label=t("xyz_no_fixed_seeds"),
                                                          elem_id=f"{tab}_xyz_no_fixed_seeds")
                table["xyz_margin_size"] = gr.Slider(0, 200, value=0, step=2, label=t("xyz_margin_size"),
                                                     elem_id=f"{tab}_xyz_margin")
        script.change(lambda s: gr.update(visible=s == _PLOT), script, box, api_visibility="private")
    return table


def script_fields(fields: dict) -> dict:
    """A handler's fields with the accordion's controls turned into A1111's `script_name` and
    `script_args` (left out when no script is chosen)."""
    own = {k: fields.pop(k) for k in [k for k in fields if k.startswith("xyz_")]}
    name = fields.pop("script_name", None)
    if not name or name == _SCRIPT_NONE:
        return fields
    args = []
    for a in "xyz":
        args += [own.get(f"xyz_{a}_type") or "Nothing", own.get(f"xyz_{a}_values") or "", []]
    args += [bool(own.get("xyz_draw_legend", True)), bool(own.get("xyz_include_lone_images")), False,
             bool(own.get("xyz_no_fixed_seeds")), False, False, False, int(own.get("xyz_margin_size") or 0), False]
    return {**fields, "script_name": XYZ_PLOT if name == _PLOT else name, "script_args": args}


def run(service, fields: dict, task: str, request, progress):
    """The tab's Generate: the X/Y/Z plot when chosen, else run_generation (a generator)."""
    fields = script_fields(dict(fields))
    if "script_name" not in fields:
        yield from run_generation(service, fields, task, request, progress)
        return
    try:
        plan = service.plot(fields, task)
        yield gr.skip(), f"X/Y/Z plot: {len(plan.cells)} cells...", gr.skip()
        result = service.run_plot(plan, caller_of(service, request))
    except UserError as e:
        raise gr.Error(str(e)) from None
    yield gallery_output(result)
