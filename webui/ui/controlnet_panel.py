"""The ControlNet accordion shared by the generation tabs: up to three units, each with a
control image upload or a pose from the library (thumbnails), preprocessor, model, weight,
start/end and control mode; and one IP-Adapter reference image. Its widgets become extra
named parameters of the tab's API endpoint (`controlnet_0_enabled`, `controlnet_0_image`, ...)."""

from __future__ import annotations

import inspect

import gradio as gr

from .. import controlnet, ipadapter, poses
from ..i18n import t
from .common import PRIVATE

UNIT_FIELDS = ("enabled", "image", "pose", "module", "model", "weight", "guidance_start", "guidance_end",
               "control_mode", "resize_mode", "threshold_a", "threshold_b")


def _thumbnails(library: dict) -> list:
    return [(poses.render_pose(p, 96, 128), p.name) for p in library.values()]


def controlnet_accordion(tab: str, service) -> dict:
    """Widgets keyed `controlnet_<n>_<field>`, in the order the endpoint takes them."""
    models_dir = service.settings.models_dir
    library, problems = poses.load_poses()
    for p in problems:  # shown once in the log; a bad pose file never stops the UI
        import logging

        logging.getLogger(__name__).warning("pose library: %s", p)
    keys = list(library)
    out: dict = {}
    with gr.Accordion(t("controlnet_title"), open=False, elem_id=f"{tab}_controlnet"):
        with gr.Tabs():
            for n in range(controlnet.MAX_UNITS):
                with gr.Tab(f"Unit {n}"):
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
    with gr.Accordion(t("ip_adapter_title"), open=False, elem_id=f"{tab}_ipadapter"):
        with gr.Row():
            out["ip_adapter_image"] = gr.Image(type="pil", label=t("ip_adapter_image"), height=200,
                                               sources=["upload", "clipboard"], elem_id=f"{tab}_ip_image")
            with gr.Column():
                out["ip_adapter_model"] = gr.Dropdown(["None"] + ipadapter.list_adapters(models_dir), value="None",
                                                      label=t("ip_adapter_model"), elem_id=f"{tab}_ip_model")
                out["ip_adapter_weight"] = gr.Slider(0, 2, value=0.7, step=0.05, label=t("ip_adapter_weight"),
                                                     elem_id=f"{tab}_ip_weight")
    return out


def adapters_from_values(values: dict) -> list[dict]:
    model, image = values.get("ip_adapter_model"), values.get("ip_adapter_image")
    if not model or model == "None" or image is None:
        return []
    return [{"model": model, "image": image, "weight": values.get("ip_adapter_weight", 0.7)}]


def units_from_values(values: dict) -> list[dict]:
    """The accordion's widget values -> unit dicts for build_request (off units included:
    parse_units drops them)."""
    units = []
    for n in range(controlnet.MAX_UNITS):
        d = {f: values.get(f"controlnet_{n}_{f}") for f in UNIT_FIELDS}
        if d["enabled"]:
            units.append(d)
    return units


def with_controlnet(fn, names: list[str]):
    """`fn` with the accordion's widgets as extra named parameters (before `request` and
    `progress`); their values reach `fn` as `controlnet_units=[...]` and `ip_adapters=[...]`."""
    sig = inspect.signature(fn)
    tail = [p for p in sig.parameters.values() if p.name in ("request", "progress")]
    own = ("request", "progress", "controlnet_units", "ip_adapters")
    head = [p for p in sig.parameters.values() if p.name not in own]
    extra = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for n in names]
    new_sig = sig.replace(parameters=head + extra + tail)

    def split(args, kwargs) -> dict:
        bound = new_sig.bind(*args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        cn = {n: values.pop(n) for n in names}
        return {**values, "controlnet_units": units_from_values(cn), "ip_adapters": adapters_from_values(cn)}

    if inspect.isgeneratorfunction(fn):  # gradio streams progress from generator handlers
        def wrapper(*args, **kwargs):
            yield from fn(**split(args, kwargs))
    else:
        def wrapper(*args, **kwargs):
            return fn(**split(args, kwargs))

    wrapper.__signature__ = new_sig
    wrapper.__annotations__ = dict(fn.__annotations__)
    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper
