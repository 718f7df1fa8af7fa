"""The generation tabs are built from field tables (webui/ui/fields.py): a tab's controls, its
handler and its named endpoint share one dict of request field name -> component. These
tests keep it that way: no long positional handlers, no signatures rewritten outside the one
helper, and every endpoint's parameters are its table's keys."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

UI = Path(__file__).resolve().parent.parent / "webui" / "ui"
MAX_PARAMS = 8  # explicit parameters of any function in webui/ui (a table's fields come as **values)
TABLE_ENDPOINTS = ("/txt2img", "/img2img", "/inpaint", "/extras_face_detail")


def test_no_ui_function_takes_a_long_parameter_list():
    long = []
    for path in sorted(UI.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                a = node.args
                n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs)
                if n > MAX_PARAMS:
                    long.append(f"{path.name}:{node.lineno} {getattr(node, 'name', 'lambda')} ({n} parameters)")
    assert not long, "put the fields in the tab's table and take them as **values: " + ", ".join(long)


def test_signatures_are_built_only_by_the_fields_helper():
    # Gradio reads an endpoint's parameters from its function's signature; only
    # ui/fields.handler may build one (from a table), nothing rewrites a hand-written one.
    markers = ("__signature__", "inspect.signature", "inspect.Signature", "inspect.Parameter", "import inspect",
               "from inspect import")
    found = [f"{path.name}: {m}" for path in sorted(UI.glob("*.py")) if path.name != "fields.py"
             for m in markers if m in path.read_text(encoding="utf-8")]
    assert not found, found
    source = (UI / "fields.py").read_text(encoding="utf-8")
    assert source.count("__signature__ =") == 1


def test_handler_passes_values_by_name_and_keeps_gradio_special_parameters():
    import gradio as gr

    from webui.ui.fields import handler

    with gr.Blocks():
        table = {"steps": gr.Slider(1, 50, value=20), "prompt": gr.Textbox(""), "init_image": gr.Image()}
    seen = {}

    def body(request, progress, **values):
        """Doc for the API page."""
        seen.update(values, request=request, progress=progress)
        yield "done"

    event = handler(body, table, required=["init_image"])
    params = inspect.signature(event).parameters
    assert list(params) == ["request", "progress", "steps", "prompt", "init_image"]
    assert params["request"].annotation in (gr.Request, "gr.Request")
    assert isinstance(params["progress"].default, gr.Progress)  # Gradio injects it by this default
    assert params["steps"].default is None and params["init_image"].default is inspect.Parameter.empty
    assert inspect.isgeneratorfunction(event)  # Gradio streams previews from generators only
    assert event.__name__ == "body" and event.__doc__ == "Doc for the API page." and event.fields is table
    assert list(event(None, "p", prompt="a", init_image="x.png", steps=3)) == ["done"]
    assert seen == {"prompt": "a", "init_image": "x.png", "steps": 3, "request": None, "progress": "p"}
    with pytest.raises(ValueError):
        handler(body, table, required=["mask"])


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from webui.serving.service import Service
    from webui.settings import Settings
    from webui.ui import build_ui

    root = tmp_path_factory.mktemp("ui-tables")
    service = Service.create(Settings(models_dir=root / "models", outputs_dir=root / "out", device="cpu"))
    return build_ui(service)


def test_each_endpoint_parameter_is_a_table_field(demo):
    api = demo.get_api_info()["named_endpoints"]
    fns = {f"/{fn.api_name}": fn for fn in demo.fns.values() if fn.api_name}
    for name in TABLE_ENDPOINTS:
        fn = fns[name]
        table = fn.fn.fields  # the table the handler was built from (fields.handler)
        assert fn.input_parameter_names == list(table), name  # the event's inputs are that table, by name
        assert fn.inputs == list(table.values()), name
        params = [p["parameter_name"] for p in api[name]["parameters"]]
        # The endpoint shows every field a client can send (a gr.State is the page's own).
        assert params == [n for n, c in table.items() if not c.skip_api], name


def test_endpoint_parameters_keep_their_names_and_defaults(demo):
    api = demo.get_api_info()["named_endpoints"]
    params = {name: {p["parameter_name"]: p for p in api[name]["parameters"]} for name in TABLE_ENDPOINTS}
    t2i = list(params["/txt2img"])
    assert t2i[:11] == ["prompt", "negative_prompt", "steps", "cfg_scale", "seed", "width", "height", "sampler_name",
                        "scheduler", "batch_size", "n_iter"]  # A1111's order, for callers passing by position
    for name in ("/txt2img", "/img2img", "/inpaint"):
        p = params[name]
        assert {f"controlnet_{n}_{f}" for n in range(3) for f in ("enabled", "image", "model", "weight")} <= set(p)
        # An empty image is optional (None), not required; the rest default to the control's value.
        assert p["controlnet_0_image"]["parameter_has_default"] and p["controlnet_0_image"]["parameter_default"] is None
        assert p["ip_adapter_image"]["parameter_has_default"]
        assert p["steps"]["parameter_default"] == 20 and p["prompt"]["parameter_default"] == ""
    for name in ("/img2img", "/inpaint"):
        assert not params[name]["init_image"]["parameter_has_default"], name
    assert params["/inpaint"]["mask"]["parameter_has_default"]
    assert {"outpaint_left", "inpainting_fill", "inpaint_full_res"} <= set(params["/inpaint"])
    assert params["/txt2img"]["hr_scale"]["parameter_default"] == 2
    assert "translated_from" not in params["/txt2img"]  # the page's State, not an API field
    assert not params["/extras_face_detail"]["prompt"]["parameter_has_default"]
    assert api["/txt2img"]["description"].startswith("Generate images from a prompt")


def test_generate_buttons_use_a_table(demo):
    # The browser's Generate events are built the same way (the tab's Controls.fields).
    by_button = {}
    for fn in demo.fns.values():
        for block_id, event in fn.targets:
            elem_id = getattr(demo.blocks.get(block_id), "elem_id", None)
            if event == "click" and elem_id in ("txt2img_generate", "img2img_generate", "inpaint_generate"):
                by_button[elem_id] = fn
    assert len(by_button) == 3
    for elem_id, fn in by_button.items():
        assert fn.input_parameter_names == list(fn.fn.fields), elem_id
    assert by_button["inpaint_generate"].input_parameter_names[:2] == ["editor", "mask_upload"]


def test_unit_fields_turns_the_accordion_into_units_without_touching_values():
    from webui.ui.controlnet_panel import unit_fields

    values = {"prompt": "p", "controlnet_0_enabled": True, "controlnet_0_model": "m", "controlnet_1_enabled": False,
              "ip_adapter_model": "None", "ip_adapter_image": None, "ip_adapter_weight": 0.7}
    fields = unit_fields(values)
    assert fields["prompt"] == "p" and fields["ip_adapters"] == []
    assert [u["model"] for u in fields["controlnet_units"]] == ["m"]  # the enabled unit only
    assert not any(n.startswith(("controlnet_", "ip_adapter_")) for n in fields
                   if n not in ("controlnet_units",))
    assert "controlnet_0_model" in values  # the handler's own values are left as they were
