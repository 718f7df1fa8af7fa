"""What an image file says about how it was made: the logic behind the PNG Info tab and the
`/sdapi/v1/png-info` route (both return the same thing)."""

from __future__ import annotations

from .image_meta import read_infotext
from .infotext import infotext_to_fields
from .infotext_syntax import parse_infotext


def png_info(source) -> dict:
    """Read an upload (path, bytes, file object or PIL image).

    Returns `info` (the A1111 infotext, "" when the file has none), `items` (every other
    text entry, e.g. ComfyUI's raw `prompt`/`workflow` JSON), `parameters` (the infotext by
    key, as A1111's png-info returns it, with `Size-1`/`Size-2`) and `fields` (the same as
    A1111 API request fields, ready to send to txt2img). Raises UserError for a file that is
    not a readable image.
    """
    info, items = read_infotext(source)
    info = info or ""
    parameters: dict = {}
    fields: dict = {}
    if info:
        parameters = parse_infotext(info)
        size = parameters.get("Size", "")
        w, sep, h = size.partition("x")
        if sep and w.strip().isdigit() and h.strip().isdigit():
            parameters["Size-1"], parameters["Size-2"] = w.strip(), h.strip()
        fields = infotext_to_fields(parameters)
    return {"info": info, "items": items, "parameters": parameters, "fields": fields}
