"""Driving Gradio widgets by elem_id the way a person does: typing, pressing Enter, clicking."""

from __future__ import annotations

import re


def set_slider(page, elem_id: str, value) -> None:
    """Type into the slider's number box and commit it."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def set_number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input")
    box.fill(str(value))
    box.press("Tab")


def fill_text(page, elem_id: str, text: str) -> None:
    page.locator(f"#{elem_id} textarea").fill(text)


def text_value(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} textarea").input_value()


def slider_value(page, elem_id: str) -> float:
    return float(page.locator(f"#{elem_id} input[type=number]").input_value())


def pick(page, elem_id: str, option: str) -> None:
    """Open a dropdown and click the option whose label contains `option`."""
    page.locator(f"#{elem_id} input[role=combobox]").click()
    page.get_by_role("option", name=re.compile(re.escape(option))).first.click()


def open_tab(page, label: str) -> None:
    page.get_by_role("tab", name=label).click()


def upload_to_editor(page, elem_id: str, path) -> None:
    """Drop a file into an ImageEditor. Gradio's editor silently ignores a file chosen before its
    canvas has started (about half a second after the tab opens), so wait for the canvas and
    its zoom toolbar first, as a person would see them."""
    editor = page.locator(f"#{elem_id}")
    editor.locator("canvas").first.wait_for(state="attached", timeout=60_000)
    editor.locator(".zoom-number").wait_for(timeout=60_000)
    editor.locator("input[type=file]").set_input_files(str(path))
