"""The LoRA panel under the txt2img prompt: open it, click a LoRA, the prompt gets its tag; a
second click takes it out. Runs its own in-process app, whose models folder has LoRA files."""

from __future__ import annotations

import shutil
import socket

import pytest
from playwright.sync_api import expect

from widgets import fill_text


@pytest.fixture()
def lora_app_url(tiny_models, tiny_loras, tmp_path):
    from webui.serving.service import Service
    from webui.settings import Settings
    from webui.ui import build_ui, launch_kwargs

    models = tmp_path / "models"
    (models / "Stable-diffusion").mkdir(parents=True)
    shutil.copy(tiny_models["sd1"].file, models / "Stable-diffusion" / "tiny.safetensors")
    (models / "Lora").mkdir()
    shutil.copy(tiny_loras["light"][0], models / "Lora" / "light.safetensors")
    svc = Service.create(Settings(models_dir=models, outputs_dir=tmp_path / "out", device="cpu"), load_model=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = build_ui(svc)
    kwargs = launch_kwargs(svc)
    kwargs.update(server_port=port, share=False, auth=None)
    _, url, _ = demo.queue().launch(prevent_thread_lock=True, quiet=True, **kwargs)
    yield url
    demo.close()


def test_clicking_a_lora_adds_and_removes_its_tag(browser, lora_app_url):
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        page.goto(lora_app_url)
        fill_text(page, "txt2img_prompt", "portrait")
        page.get_by_text("LoRA and embeddings").click()
        lora = page.locator("#txt2img_lora_list").get_by_text("light", exact=True)
        lora.click()
        prompt = page.locator("#txt2img_prompt textarea")
        expect(prompt).to_have_value("portrait, <lora:light:1>")
        lora.click()
        expect(prompt).to_have_value("portrait")
        # To the negative prompt instead.
        page.locator("#txt2img_networks_target").get_by_text("Negative prompt").click()
        lora.click()
        expect(page.locator("#txt2img_neg_prompt textarea")).to_have_value("<lora:light:1>")
    finally:
        ctx.close()
