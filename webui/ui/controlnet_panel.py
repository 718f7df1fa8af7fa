"""The ControlNet accordion shared by the generation tabs: up to three units, each with a
control image upload or a pose from the library (thumbnails), preprocessor, model, weight,
start/end and control mode; and one IP-Adapter reference image. Its widgets are fields of the
tab's table (ui/fields.py), so named parameters of its API endpoint (`controlnet_0_enabled`,
`controlnet_0_image`, ...); `unit_fields` turns their values into the request's units."""

from __future__ import annotations

import gradio as gr

from ..engine.extensions import controlnet, ipadapter
from ..imaging import poses
from ..errors import UserError
from ..i18n import t
from ..request import controlnet as unit_options
from .events import PRIVATE
from .pose_library import pose_from_photo

UNIT_FIELDS = ("enabled", "image", "pose", "module", "model", "weight", "guidance_start", "guidance_end",
               "control_mode", "resize_mode", "threshold_a", "threshold_b")


def _thumbnails(library: dict) -> list:
    return [(poses.render_pose(p, 96, 128), p.name) for p in library.values()]


def controlnet_accordion(tab: str, service, note: str | None = None) -> dict:
    """Widgets keyed `controlnet_<n>_<field>`, in the order the endpoint takes them; `note`:
    an i18n key of a line about how this tab uses the units."""
    models_dir = service.settings.models_dir
    library, problems = poses.load_poses()
    for p in problems:  # shown once in the log; a bad pose file never stops the UI
        import logging

        logging.getLogger(__name__).warning("pose library: %s", p)
    keys = list(library)
    out: dict = {}
    with gr.Accordion(t("controlnet_title"), open=False, elem_id=f"{tab}_controlnet"):
        gr.Markdown(t("controlnet_help"), elem_id=f"{tab}_controlnet_help")
        if note:
            gr.Markdown(t(note), elem_id=f"{tab}_controlnet_note")
        with gr.Tabs():
            for n in range(controlnet.MAX_UNITS):
                with gr.Tab(t(f"controlnet_unit_{n}"), elem_id=f"{tab}_cn{n}_tab"):
                    w = {}
                    w["enabled"] = gr.Checkbox(False, label=t("controlnet_enable"), elem_id=f"{tab}_cn{n}_enabled")
                    with gr.Row():
                        w["image"] = gr.Image(type="pil", label=t("controlnet_image"),
                                              sources=["upload", "clipboard"], height=220,
                                              elem_id=f"{tab}_cn{n}_image")
                        with gr.Column():
                            w["pose"] = gr.Dropdown([""] + keys, value="", label=t("controlnet_pose"),
                                                    elem_id=f"{tab}_cn{n}_pose")
                            preview = gr.Image(label=t("controlnet_pose_preview"), interactive=False, height=160)
                    thumbs = gr.Gallery(_thumbnails(library), label=t("controlnet_pose_library"), columns=6, height=170,
                                        allow_preview=False, object_fit="contain", elem_id=f"{tab}_cn{n}_poses")
                    with gr.Row():
                        w["module"] = gr.Dropdown(list(controlnet.MODULES), value="none", label=t("controlnet_preprocessor"),
                                                  elem_id=f"{tab}_cn{n}_module")
                        w["model"] = gr.Dropdown(["None"] + controlnet.list_models(models_dir), value="None",
                                                 label=t("controlnet_model"), elem_id=f"{tab}_cn{n}_model", scale=3)
                        refresh = gr.Button("🔄", scale=0, min_width=48)
                    with gr.Row():
                        w["weight"] = gr.Slider(0, 2, value=1, step=0.05, label=t("controlnet_weight"))
                        w["guidance_start"] = gr.Slider(0, 1, value=0, step=0.01, label=t("controlnet_guidance_start"))
                        w["guidance_end"] = gr.Slider(0, 1, value=1, step=0.01, label=t("controlnet_guidance_end"))
                    w["control_mode"] = gr.Radio(list(controlnet.CONTROL_MODES), value=controlnet.CONTROL_MODES[0],
                                                 label=t("controlnet_control_mode"))
                    w["resize_mode"] = gr.Radio(list(controlnet.RESIZE_MODES), value=controlnet.RESIZE_MODES[1],
                                                label=t("resize_mode"))
                    with gr.Row():
                        w["threshold_a"] = gr.Slider(0, 255, value=100, step=1, label=t("controlnet_canny_low"))
                        w["threshold_b"] = gr.Slider(0, 255, value=200, step=1, label=t("controlnet_canny_high"))

                    def pick(evt: gr.SelectData):
                        return keys[evt.index] if 0 <= evt.index < len(keys) else ""

                    def show(key):
                        return poses.render_pose(library[key], 256, 256) if key in library else None

                    thumbs.select(pick, None, w["pose"], **PRIVATE)
                    w["pose"].change(show, w["pose"], preview, **PRIVATE)
                    refresh.click(lambda: gr.Dropdown(choices=["None"] + controlnet.list_models(models_dir)),
                                  None, w["model"], **PRIVATE)
                    for f in UNIT_FIELDS:
                        out[f"controlnet_{n}_{f}"] = w[f]
        pose_from_photo(tab, service, [out[f"controlnet_{n}_pose"] for n in range(controlnet.MAX_UNITS)])
    with gr.Accordion(t("ip_adapter_title"), open=False, elem_id=f"{tab}_ipadapter"):
        with gr.Row():
            out["ip_adapter_image"] = gr.Image(type="pil", label=t("ip_adapter_image"), height=200,
                                               sources=["upload", "clipboard"], elem_id=f"{tab}_ip_image")
            with gr.Column():
                out["ip_adapter_model"] = gr.Dropdown(["None"] + ipadapter.list_adapters(models_dir), value="None",
                                                      label=t("ip_adapter_model"), elem_id=f"{tab}_ip_model")
                out["ip_adapter_weight"] = gr.Slider(0, 2, value=ipadapter.DEFAULT_WEIGHT, step=0.05, label=t("ip_adapter_weight"),
                                                     elem_id=f"{tab}_ip_weight")
    return out


# What a unit's widgets hold when its infotext entry leaves a setting out (parse_units' defaults).
_RESTORE_DEFAULTS = {"module": "none", "pose": "", "weight": 1.0, "guidance_start": 0.0, "guidance_end": 1.0,
                     "control_mode": 0, "resize_mode": 1, "threshold_a": 100.0, "threshold_b": 200.0}


def _unit_widget_values(n: int, unit: dict, widgets: dict, models: list[str]) -> tuple[dict, list[str]]:
    """One infotext unit (infotext_entries.units_from_infotext) -> gr.update()s by widget name, and
    what this UI cannot show."""
    out, skipped = {f"controlnet_{n}_enabled": gr.update(value=True)}, []
    d = {**_RESTORE_DEFAULTS, **{k: v for k, v in unit.items() if v not in (None, "")}}
    name = str(unit.get("model") or "").strip()
    if name.endswith("]") and " [" in name:  # "name [hash]" as the infotext writes it
        name = name[: name.rindex(" [")]
    if name in models:
        # The model list may have grown since the page was built (the 🔄 button): offer it anew.
        out[f"controlnet_{n}_model"] = gr.update(choices=["None"] + models, value=name)
    else:
        skipped.append(f"ControlNet {n} model {name!r} (not in the ControlNet models folder)")
    module = str(d["module"]).strip()
    try:
        module = module if module in controlnet.MODULES else controlnet.module_kind(module)
        out[f"controlnet_{n}_module"] = gr.update(value=module)
    except UserError:
        skipped.append(f"ControlNet {n} preprocessor {module!r}")
    for field_name, options in (("control_mode", controlnet.CONTROL_MODES), ("resize_mode", controlnet.RESIZE_MODES)):
        try:  # the parser the request uses: names, A1111's aliases or indices
            i = unit_options.option_index(d, field_name, _RESTORE_DEFAULTS[field_name], options, n,
                                          unit_options.RESIZE_ALIASES if field_name == "resize_mode" else None)
            out[f"controlnet_{n}_{field_name}"] = gr.update(value=options[i])
        except UserError:
            skipped.append(f"ControlNet {n} {field_name.replace('_', ' ')} {d[field_name]!r}")
    for field_name in ("weight", "guidance_start", "guidance_end", "threshold_a", "threshold_b"):
        widget = widgets.get(f"controlnet_{n}_{field_name}")
        try:
            value = float(d[field_name])
        except (TypeError, ValueError):
            value = None
        if value is not None and value == -1 and field_name.startswith("threshold"):
            value = _RESTORE_DEFAULTS[field_name]  # A1111's "the preprocessor's default"
        lo, hi = getattr(widget, "minimum", None), getattr(widget, "maximum", None)
        if value is None or (lo is not None and value < lo) or (hi is not None and value > hi):
            skipped.append(f"ControlNet {n} {field_name.replace('_', ' ')} {d[field_name]!r}")
        else:
            out[f"controlnet_{n}_{field_name}"] = gr.update(value=value)
    pose = str(d["pose"])
    choices = [v for _, v in (getattr(widgets.get(f"controlnet_{n}_pose"), "choices", None) or [])]
    if not pose or pose in choices:
        out[f"controlnet_{n}_pose"] = gr.update(value=pose)
    else:
        skipped.append(f"ControlNet {n} pose {pose!r} (not in the pose library)")
    return out, skipped


def restore_updates(fields: dict, widgets: dict, models_dir) -> tuple[list, list[str]]:
    """"Send to": gr.update()s, in the order of `widgets` (this accordion's widgets by name),
    that put an infotext's ControlNet units (fields["controlnet_units"], from
    infotext_to_fields) into the units: unit n gets the n-th entry's settings and is switched
    on; the units after them are switched off when the text is a full infotext (one naming
    the steps), since the picture was made without them. The control image is not in an
    infotext, so the image widgets are left as they are. Also returns what could not be set
    (a model not installed here, a preprocessor this UI lacks), for one warning."""
    units = list(fields.get("controlnet_units") or [])
    updates = {name: gr.update() for name in widgets}
    skipped: list[str] = []
    if not units and not fields.get("ip_adapters") and "steps" not in fields:
        return list(updates.values()), skipped
    skipped += _restore_adapter(fields.get("ip_adapters") or [], updates, models_dir)
    models = controlnet.list_models(models_dir) if units else []
    for n in range(controlnet.MAX_UNITS):
        if n < len(units):
            values, problems = _unit_widget_values(n, units[n], widgets, models)
            updates.update({k: v for k, v in values.items() if k in updates})
            skipped += problems
        elif f"controlnet_{n}_enabled" in updates:
            updates[f"controlnet_{n}_enabled"] = gr.update(value=False)
    if len(units) > controlnet.MAX_UNITS:
        skipped.append(f"ControlNet units after the first {controlnet.MAX_UNITS}")
    return list(updates.values()), skipped


def _restore_adapter(adapters: list[dict], updates: dict, models_dir) -> list[str]:
    """The IP-Adapter model and weight (the reference image is not in an infotext); "None"
    when the picture was made without one. Returns what could not be set."""
    if "ip_adapter_model" not in updates:
        return []
    if not adapters:
        updates["ip_adapter_model"] = gr.update(value="None")
        return []
    first, skipped = adapters[0], []
    if first["model"] in ipadapter.list_adapters(models_dir):
        updates["ip_adapter_model"] = gr.update(value=first["model"])
        updates["ip_adapter_weight"] = gr.update(value=first["weight"])
    else:
        skipped.append(f"IP-Adapter model {first['model']!r}")
    if len(adapters) > 1:
        skipped.append(f"IP-Adapter references after the first ({len(adapters) - 1}; the tab holds one)")
    return skipped


def adapters_from_values(values: dict) -> list[dict]:
    model, image = values.get("ip_adapter_model"), values.get("ip_adapter_image")
    if not model or model == "None" or image is None:
        return []
    return [{"model": model, "image": image, "weight": values.get("ip_adapter_weight", ipadapter.DEFAULT_WEIGHT)}]


def units_from_values(values: dict) -> list[dict]:
    """The accordion's widget values -> unit dicts for build_request (off units included:
    parse_units drops them)."""
    units = []
    for n in range(controlnet.MAX_UNITS):
        d = {f: values.get(f"controlnet_{n}_{f}") for f in UNIT_FIELDS}
        if d["enabled"]:
            units.append(d)
    return units


def unit_fields(values: dict) -> dict:
    """A handler's `values` with the accordion's fields (`controlnet_<n>_<field>`,
    `ip_adapter_*`) replaced by the request's `controlnet_units` and `ip_adapters`."""
    own = {n: v for n, v in values.items() if n.startswith(("controlnet_", "ip_adapter_"))}
    rest = {n: v for n, v in values.items() if n not in own}
    return {**rest, "controlnet_units": units_from_values(own), "ip_adapters": adapters_from_values(own)}
