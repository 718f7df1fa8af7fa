"""IP-Adapter reference images as a request carries them: model name, image and weight, parsed
from the UI or the API (``ip_adapters``). Loading adapters and encoders is the engine's part
(webui/engine/extensions/ipadapter.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..errors import UserError
from ..imaging.images import decode_base64_image
from ..metadata.infotext_entries import IP_ADAPTER_WEIGHT as DEFAULT_WEIGHT  # noqa: F401 - the UI slider's start too
from ..settings import Limits
from ..validate import number

FIELD = "ip_adapters"
MAX_ADAPTERS = 4  # a character brings up to 4 references


@dataclass(frozen=True)
class IPAdapterRef:
    model: str
    image: Image.Image = field(repr=False, compare=False)
    weight: float = 1.0

    def infotext(self) -> str:
        return f"Model: {self.model}, Weight: {self.weight:g}"


def parse_adapters(raw, limits: Limits | None = None) -> tuple[IPAdapterRef, ...]:
    """UI or API entries -> validated references; images are held to the upload limits."""
    max_upload_pixels = limits.max_upload_pixels if limits else None
    if not raw:
        return ()
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, (list, tuple)):
        raise UserError("ip_adapters must be a list of {model, image, weight}", field=FIELD)
    out = []
    for n, d in enumerate(raw):
        if isinstance(d, IPAdapterRef):
            out.append(d)
            continue
        if not isinstance(d, dict):
            raise UserError(f"IP-Adapter {n}: expected an object with model, image and weight", field=FIELD)
        if d.get("enabled") is False:
            continue
        model, image = d.get("model"), d.get("image")
        if not isinstance(model, str) or not model.strip():
            raise UserError(f"IP-Adapter {n}: choose an IP-Adapter model", field=FIELD)
        if isinstance(image, str):
            try:
                image = decode_base64_image(image, f"IP-Adapter {n} image", limits)
            except UserError as e:  # the message names the entry; the field is the request's
                raise UserError(str(e), field=FIELD) from None
        elif isinstance(image, np.ndarray):
            image = Image.fromarray(image.astype(np.uint8))
        if not isinstance(image, Image.Image):
            raise UserError(f"IP-Adapter {n}: a reference image is needed", field=FIELD)
        if max_upload_pixels and image.width * image.height > max_upload_pixels:
            raise UserError(f"IP-Adapter {n}: the reference image is {image.width}x{image.height}; the limit is "
                            f"{max_upload_pixels} pixels", field=FIELD)
        w = d.get("weight")
        w = 1.0 if w is None or w == "" else number(w, f"IP-Adapter {n}: weight", FIELD, 0.0, 2.0)
        out.append(IPAdapterRef(model.strip(), image, w))
    if len(out) > MAX_ADAPTERS:
        raise UserError(f"at most {MAX_ADAPTERS} IP-Adapters at once; got {len(out)}", field=FIELD)
    return tuple(out)
