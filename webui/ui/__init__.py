"""The Gradio Blocks front end: a checkpoint bar on top, one tab per task.

Each tab is a module with `build(service, shared)`; `shared` carries the widgets several tabs
use (the checkpoint dropdown, the Tabs container for "send to" buttons, each tab's Controls).
Add a tab by adding it to TABS.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import gradio as gr
from starlette.middleware import Middleware

from ..errors import UserError
from ..i18n import I18N, t
from ..serving.identity import SessionGuard
from ..serving.service import DEMO_NOTICE
from . import extras, history, img2img, inpaint, pnginfo, settings_tab, txt2img
from .common import GPU, PRIVATE, caller_of

CSS = """
#demo_notice {border-left: 4px solid #f59e0b; padding-left: 12px;}
#txt2img_generate, #img2img_generate, #inpaint_generate {min-height: 96px; font-size: 1.2em;}
"""


def build_ui(service) -> gr.Blocks:
    with gr.Blocks(title="Portrait Studio") as demo:
        with gr.Row():
            gr.HTML("")
            gr.Button("中文 / English", elem_id="language_button", size="sm", scale=0, min_width=140).click(
                None, js=OPEN_LANGUAGE_SETTINGS, **PRIVATE)
        if service.demo_active:
            gr.Markdown(f"**{DEMO_NOTICE}**", elem_id="demo_notice")
        if service.startup_problems:
            with gr.Accordion(t("load_problems"), open=False, elem_id="startup_problems"):
                gr.Markdown("\n".join(f"- {p}" for p in service.startup_problems))
        with gr.Row(equal_height=True):
            checkpoint = gr.Dropdown(service.checkpoint_titles(), value=service.active_title(),
                                     label=t("checkpoint"), elem_id="sd_checkpoint", scale=6)
            sd_vae = gr.Dropdown(service.vae_names(), value="Automatic", label=t("sd_vae"), elem_id="sd_vae",
                                 scale=3, info=t("sd_vae_info"))
            refresh = gr.Button("🔄", elem_id="refresh_checkpoints", scale=0, min_width=48)

        def refresh_list(vae):
            service.refresh_checkpoints()
            vaes = service.vae_names()
            return (gr.Dropdown(choices=service.checkpoint_titles(), value=service.active_title()),
                    gr.Dropdown(choices=vaes, value=vae if vae in vaes else "Automatic"))

        def switch(title, request: gr.Request):
            if not title:
                return gr.Dropdown()
            try:
                return gr.Dropdown(choices=service.checkpoint_titles(),
                                   value=service.select_model(title, caller_of(service, request)))
            except UserError as e:
                gr.Warning(str(e))
                return gr.Dropdown(value=service.active_title())

        refresh.click(refresh_list, sd_vae, [checkpoint, sd_vae], **PRIVATE)
        checkpoint.input(switch, checkpoint, checkpoint, **PRIVATE, **GPU)

        shared = SimpleNamespace(checkpoint=checkpoint, sd_vae=sd_vae, tabs=None, controls={})
        with gr.Tabs() as tabs:
            shared.tabs = tabs
            for tab_id, label, module in TABS:
                with gr.Tab(label, id=tab_id):
                    shared.controls[tab_id] = module.build(service, shared)
    return demo


# (tab id, label, module with build(service, shared))
TABS = [
    ("txt2img", t("tab_txt2img"), txt2img),
    ("img2img", t("tab_img2img"), img2img),
    ("inpaint", t("tab_inpaint"), inpaint),
    ("extras", t("tab_extras"), extras),
    ("pnginfo", t("tab_png_info"), pnginfo),
    ("history", t("tab_history"), history),  # after the generation tabs: its "send to" buttons fill them
    ("settings", t("tab_settings"), settings_tab),
]


# Gradio shows the interface in the browser's language (Chinese for zh-*, else English) and has
# a Language menu in its footer Settings panel; this button opens that panel. The choice lasts
# until the page is reloaded. (A custom `head` script cannot pre-set the language: Gradio adds
# it only after its i18n is set up.)
OPEN_LANGUAGE_SETTINGS = """() => {
  const b = [...document.querySelectorAll("footer button, footer a")]
    .find((x) => /Settings|设置|設定/.test(x.textContent || ""));
  if (b) b.click();
}"""


def launch_kwargs(service) -> dict:
    """demo.launch() arguments. The REST API rides on Gradio's own app (attached by a lifespan
    hook before the first request), so --share and --auth work for it too."""
    s = service.settings
    kwargs = dict(
        server_name=s.host, server_port=s.port, share=s.share,
        auth=list(s.auth) or None,
        # Only generated images may be served as files; uploads are capped at the same size
        # the API accepts.
        allowed_paths=[str(s.outputs_dir.resolve())],
        app_kwargs={"middleware": [Middleware(SessionGuard)]},
        max_file_size=s.limits.max_upload_bytes,
        css=CSS, theme=gr.themes.Soft(), i18n=I18N,
    )
    if s.api:
        from ..api.routes import api_lifespan
        # /docs and /openapi.json are the API's own routes, behind --auth like every other.
        kwargs["app_kwargs"].update(lifespan=api_lifespan(service), docs_url=None, openapi_url=None)
    # uvicorn (started inside launch) rewrites the client address from X-Forwarded-For only for
    # the proxies named here; its default would believe any request from 127.0.0.1, which is
    # where a --share tunnel connects from.
    os.environ["FORWARDED_ALLOW_IPS"] = s.forwarded_allow_ips
    return kwargs
