"""The Gradio Blocks front end: a checkpoint bar on top, one tab per task.

Each tab is a module with `build(service, shared)`; `shared` carries the widgets several tabs
use (the checkpoint dropdown, the Tabs container for "send to" buttons, each tab's Controls).
Add a tab by adding it to TABS.
"""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from ..errors import UserError
from ..service import DEMO_NOTICE
from . import extras, txt2img
from .common import GPU, PRIVATE

CSS = """
#demo_notice {border-left: 4px solid #f59e0b; padding-left: 12px;}
#txt2img_generate, #img2img_generate, #inpaint_generate {min-height: 96px; font-size: 1.2em;}
"""


def build_ui(service) -> gr.Blocks:
    with gr.Blocks(title="Portrait Studio") as demo:
        if service.demo_active:
            gr.Markdown(f"**{DEMO_NOTICE}**", elem_id="demo_notice")
        with gr.Row(equal_height=True):
            checkpoint = gr.Dropdown(service.checkpoint_titles(), value=service.active_title(),
                                     label="Stable Diffusion checkpoint", elem_id="sd_checkpoint", scale=6)
            refresh = gr.Button("🔄", elem_id="refresh_checkpoints", scale=0, min_width=48)

        def refresh_list():
            service.catalog.refresh()
            return gr.Dropdown(choices=service.checkpoint_titles(), value=service.active_title())

        def switch(title):
            if not title:
                return gr.Dropdown()
            try:
                return gr.Dropdown(choices=service.checkpoint_titles(), value=service.select_model(title))
            except UserError as e:
                gr.Warning(str(e))
                return gr.Dropdown(value=service.active_title())

        refresh.click(refresh_list, None, checkpoint, **PRIVATE)
        checkpoint.input(switch, checkpoint, checkpoint, **PRIVATE, **GPU)

        shared = SimpleNamespace(checkpoint=checkpoint, tabs=None, controls={})
        with gr.Tabs() as tabs:
            shared.tabs = tabs
            for tab_id, label, module in TABS:
                with gr.Tab(label, id=tab_id):
                    shared.controls[tab_id] = module.build(service, shared)
    return demo


# (tab id, label, module with build(service, shared))
TABS = [
    ("txt2img", "txt2img", txt2img),
    ("extras", "Extras", extras),
]


def launch_kwargs(service) -> dict:
    s = service.settings
    return dict(
        server_name=s.host, server_port=s.port, share=s.share,
        auth=list(s.auth) or None,
        # Only generated images may be served as files; uploads are capped at the same size
        # the API accepts.
        allowed_paths=[str(s.outputs_dir.resolve())],
        max_file_size=s.limits.max_upload_bytes,
        css=CSS, theme=gr.themes.Soft(),
    )
