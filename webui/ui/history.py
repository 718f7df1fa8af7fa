"""The History tab: this browser session's images, and the outputs folder by date, each with
its infotext; "send to" fills a generation tab's controls from the selected image.

Must come after the generation tabs in TABS: it wires its buttons to their controls."""

from __future__ import annotations

import re
from pathlib import Path

import gradio as gr

from ..models.model_files import is_inside
from ..errors import UserError
from ..metadata.image_meta import read_infotext
from ..metadata.infotext import infotext_to_fields
from ..i18n import t
from .common import PRIVATE, owner_of, warn_left_unchanged
from .controlnet_panel import restore_updates

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp")
MAX_LISTED = 300
# Control name on a tab's Controls -> field name from infotext_to_fields.
SEND_FIELDS = ("prompt", "negative_prompt", "steps", "cfg_scale", "seed", "width", "height", "sampler_name",
               "scheduler", "denoising_strength")
TARGETS = (("txt2img", "txt2img"), ("img2img", "img2img"), ("inpaint", "inpaint"))


def output_dates(outputs_dir: Path) -> list[str]:
    """Dates (YYYY-MM-DD) that have an outputs folder, newest first."""
    root = Path(outputs_dir)
    if not root.is_dir():
        return []
    dates = {d.name for kind in root.iterdir() if kind.is_dir() for d in kind.iterdir()
             if d.is_dir() and DATE.match(d.name)}
    return sorted(dates, reverse=True)


def images_of_date(outputs_dir: Path, date: str) -> list[Path]:
    """Images saved on `date` in every outputs sub-folder (txt2img-images, img2img-images,
    grids...), newest first. `date` must be one of output_dates: nothing else is read."""
    if not date or not DATE.match(date):
        return []
    root = Path(outputs_dir)
    # Only real files inside the outputs folder: a symlink leading out of it is never served.
    files = [p for kind in sorted(root.iterdir()) if kind.is_dir() and (kind / date).is_dir()
             for p in (kind / date).iterdir()
             if p.suffix.lower() in IMAGE_EXTS and p.is_file() and is_inside(root, p)]
    files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return files[:MAX_LISTED]


def infotext_of(path: Path) -> str:
    try:
        text, _ = read_infotext(path)
    except UserError as e:
        return f"({e})"
    return text or "(no generation parameters in this image)"


def image_control(controls):
    """A tab's init-image control, whichever name the tab gives it."""
    for name in ("init_image", "image", "init_img", "source"):
        c = getattr(controls, name, None)
        if isinstance(c, gr.components.Component):
            return c
    return None


def build(service, shared):
    outputs_dir = Path(service.settings.outputs_dir)
    selected = gr.State({"image": None, "infotext": ""})
    with gr.Tabs():
        with gr.Tab("This session", id="history_session") as session_tab:
            with gr.Row():
                session_refresh = gr.Button(t("history_session_refresh"), size="sm", elem_id="history_session_refresh", scale=0)
            session_gallery = gr.Gallery(label=t("history_session_images"), format="png", columns=4, height=480,
                                         elem_id="history_session_gallery", interactive=False)
            session_items = gr.State([])
        with gr.Tab("Outputs folder", id="history_folder") as folder_tab:
            with gr.Row(equal_height=True):
                dates = output_dates(outputs_dir)
                date = gr.Dropdown(dates, value=dates[0] if dates else None, label=t("history_date"),
                                   elem_id="history_date", scale=4)
                folder_refresh = gr.Button("🔄", elem_id="history_folder_refresh", scale=0, min_width=48)
            folder_gallery = gr.Gallery(label=t("history_saved_images"), format="png", columns=6, height=480,
                                        elem_id="history_folder_gallery", interactive=False)
            folder_items = gr.State([])
    info = gr.Textbox(label=t("generation_parameters"), lines=4, interactive=False, elem_id="history_infotext",
                      buttons=["copy"])

    def load_session(request: gr.Request):
        items = service.history(owner_of(service, request))[::-1]  # newest first
        gallery = [(img if not isinstance(img, Path) else str(img), None) for img, _ in items]
        return gallery, [(str(img) if isinstance(img, Path) else img, text) for img, text in items]

    def load_dates(current):
        choices = output_dates(outputs_dir)
        value = current if current in choices else (choices[0] if choices else None)
        return gr.Dropdown(choices=choices, value=value)

    def load_folder(day):
        if day not in output_dates(outputs_dir):  # only dates the folder really has
            return [], []
        paths = [str(p) for p in images_of_date(outputs_dir, day)]
        return paths, paths

    def pick_session(items, evt: gr.SelectData):
        if not 0 <= evt.index < len(items):
            return gr.skip(), gr.skip()
        image, text = items[evt.index]
        return text, {"image": image, "infotext": text}

    def pick_folder(items, evt: gr.SelectData):
        if not 0 <= evt.index < len(items):
            return gr.skip(), gr.skip()
        path = Path(items[evt.index])
        text = infotext_of(path)
        return text, {"image": str(path), "infotext": text}

    session_refresh.click(load_session, None, [session_gallery, session_items], **PRIVATE)
    session_tab.select(load_session, None, [session_gallery, session_items], **PRIVATE)
    folder_refresh.click(load_dates, date, date, **PRIVATE).then(load_folder, date, [folder_gallery, folder_items],
                                                                 **PRIVATE)
    folder_tab.select(load_folder, date, [folder_gallery, folder_items], **PRIVATE)
    date.change(load_folder, date, [folder_gallery, folder_items], **PRIVATE)
    session_gallery.select(pick_session, session_items, [info, selected], **PRIVATE)
    folder_gallery.select(pick_folder, folder_items, [info, selected], **PRIVATE)

    with gr.Row():
        for tab_id, label in TARGETS:
            controls = (shared.controls or {}).get(tab_id)
            if controls is None:
                continue  # that tab is not in this build
            button = gr.Button(f"Send to {label}", elem_id=f"history_send_to_{tab_id}", size="sm")
            _wire_send(button, tab_id, controls, shared, selected, service.settings.models_dir)


def fields_for(infotext: str) -> dict:
    """The generation fields an infotext names (only those), for filling a tab's controls."""
    if not infotext or infotext.startswith("("):
        return {}
    return infotext_to_fields(infotext)


def _wire_send(button, tab_id: str, controls, shared, selected, models_dir) -> None:
    targets = [(name, getattr(controls, name)) for name in SEND_FIELDS
               if isinstance(getattr(controls, name, None), gr.components.Component)]
    image = image_control(controls) if tab_id != "txt2img" else None
    units = dict(getattr(controls, "controlnet", None) or {})
    outputs = [c for _, c in targets] + list(units.values()) + ([image] if image is not None else [])
    tabs = getattr(shared, "tabs", None)
    if tabs is not None:
        outputs.append(tabs)

    def send(sel):
        sel = sel or {}
        if sel.get("image") is None:
            gr.Warning("Select an image first")
        fields = fields_for(sel.get("infotext") or "")
        values = [fields[name] if name in fields else gr.skip() for name, _ in targets]
        unit_values, skipped = restore_updates(fields, units, models_dir)
        warn_left_unchanged(skipped)
        values += unit_values
        if image is not None:
            values.append(sel.get("image") if sel.get("image") is not None else gr.skip())
        if tabs is not None:
            values.append(gr.Tabs(selected=tab_id))
        return values

    button.click(send, selected, outputs, **PRIVATE)
