"""The Settings tab: an artist changes the saving format and clip skip, applies, and the REST
API's /sdapi/v1/options reads the same values; labels are in Chinese for a Chinese browser."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect

from widgets import open_tab, pick, set_slider


def test_settings_tab_applies_what_the_api_reads(new_page, app_url, shot):
    page = new_page(locale="en-US")
    open_tab(page, "Settings")
    pick(page, "setting_samples_format", "webp")
    set_slider(page, "setting_CLIP_stop_at_last_layers", 2)
    page.locator("#settings_apply").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()
    shot("applied", page)
    got = httpx.get(f"{app_url}sdapi/v1/options", timeout=30).json()
    assert got["samples_format"] == "webp" and got["CLIP_stop_at_last_layers"] == 2
    expect(page.locator("#setting_randn_source input")).to_be_disabled()  # fixed here: shown, not editable
    httpx.post(f"{app_url}sdapi/v1/options", json={"samples_format": "png", "CLIP_stop_at_last_layers": 1},
               timeout=30).raise_for_status()


def test_settings_tab_in_chinese(new_page):
    page = new_page(locale="zh-CN")
    open_tab(page, "设置")
    expect(page.locator("#setting_samples_format [data-testid=block-info]")).to_have_text("图片文件格式")
