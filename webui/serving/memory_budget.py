"""How much server memory a request will hold, estimated before it joins the GPU queue.

Each upload is bounded on its own (--max-upload-pixels), and so are the size, batch size and
batch count; their product is not: a 4096x4096 inpaint at batch size 8 holds eight results of
the input's size (an inpaint is pasted back onto the full input). `check_request` refuses a
request whose estimate is over --max-request-bytes, saying how big it is and what to lower.

The estimate counts the pixel buffers the request keeps in server (CPU) memory:
- every uploaded image, decoded (init image, mask, ControlNet and IP-Adapter images), and for
  img2img/inpaint the working copies made from them (RGB copy and blurred mask at the input's
  size, resized picture, mask and start image at the model's size);
- every result, kept until the whole request is done: batch_size x n_iter images of the
  output size (hires fix: its upscaled size; inpaint: the input's size), 3 bytes a pixel;
- one batch's latents on the CPU (float32, 4 channels at 1/8 of the size; hires: at its size)
  and its decoded pixels before they become images; for an inpaint, the working memory of
  pasting one result back onto the input.
GPU memory, model weights and encoded PNGs are not counted: the first two do not grow with the
request, and the PNGs are transient for the UI.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass


from ..engine.stages import hires
from ..errors import UserError
from ..imaging.images import image_bytes  # noqa: F401 - re-exported for callers
from .ratelimit import RateLimited

GIB = 1 << 30
MIB = 1 << 20
# Pasting an inpaint result back onto its input (masks.paste_crop): copies of the input, the
# pasted image and the mask, blended in bands of rows (measured: +336 MiB peak, 21 bytes a
# pixel, for a 4096x4096 input).
PASTE_BYTES_PER_PIXEL = 24
INPAINT_RESULT_BYTES_PER_PIXEL = 9


def human(n: int) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{max(1, round(n / MIB))} MiB"


@dataclass(frozen=True)
class Estimate:
    inputs: int      # decoded uploads and the working copies made from them
    outputs: int     # every result image, all kept until the request is done
    per_batch: int   # one batch's latents and decoded pixels
    image_count: int
    output_size: tuple[int, int]

    @property
    def total(self) -> int:
        return self.inputs + self.outputs + self.per_batch


def output_size(req) -> tuple[int, int]:
    """The size of each result image: hires fix's upscaled size, an inpaint's input size."""
    if hires.wanted(req):
        return hires.target_size(req.width, req.height, req.hr_scale, req.hr_resize_x, req.hr_resize_y)[1]
    if req.task == "inpaint" and req.init_image is not None:
        return req.init_image.size
    return req.width, req.height


def estimate(req, batch_size: int | None = None, image_count: int | None = None) -> Estimate:
    """The request's estimate (or what it would be with another batch size / image count)."""
    batch = req.batch_size if batch_size is None else batch_size
    count = req.batch_size * req.n_iter if image_count is None else image_count
    model_px = req.width * req.height
    out_w, out_h = output_size(req)
    out_px = out_w * out_h
    uploads = [req.init_image, req.mask] + [u.image for u in req.controlnet_units] + \
        [a.image for a in req.ip_adapters]
    inputs = sum(image_bytes(i) for i in uploads)
    if req.init_image is not None:
        in_px = req.init_image.size[0] * req.init_image.size[1]
        if req.task == "inpaint":  # RGB copy + blurred mask at the input's size; crop, mask, start
            inputs += in_px * 4 + model_px * 7
        else:  # RGB copy, resized picture
            inputs += in_px * 3 + model_px * 3
    inputs += model_px * 3 * len(req.controlnet_units)  # control maps at the model's size
    decoded_px = out_px if hires.wanted(req) else model_px
    per_batch = batch * (decoded_px // 64 * 4 * 4 + decoded_px * 3)
    if req.task == "inpaint" and req.init_image is not None:
        per_batch += out_px * PASTE_BYTES_PER_PIXEL  # one result at a time is pasted back
    # An inpaint's results come from pasting at the input's size, one after another; each adds
    # more than its 3 bytes of RGB to the process's peak (the allocators keep freed buffers).
    # Measured with benchmarks/request_memory.py at 4096x4096: batch 1, 4, 6, 8 grew the peak by
    # 504, 850, 1229 and 1070 MiB (uploads of 64 MiB come on top); 9 bytes a pixel keeps the
    # estimate above all of them.
    per_result = INPAINT_RESULT_BYTES_PER_PIXEL if req.task == "inpaint" and req.init_image is not None else 3
    return Estimate(inputs, count * out_px * per_result, per_batch, count, (out_w, out_h))


def check_request(req, limit: int) -> Estimate:
    """Refuse (UserError naming the field to lower) a request estimated over `limit` bytes."""
    est = estimate(req)
    if est.total <= limit:
        return est
    # How many images of this size would fit (in batches of at most batch_size).
    fits = 0
    while fits + 1 < est.image_count and \
            estimate(req, min(req.batch_size, fits + 1), fits + 1).total <= limit:
        fits += 1
    w, h = est.output_size
    what = f"{est.image_count} image{'s' if est.image_count != 1 else ''} of {w}x{h}"
    if req.init_image is not None:
        what += " from a {}x{} input".format(*req.init_image.size)
    if fits:
        field = "batch_size" if req.batch_size > fits else "n_iter"
        advice = f"lower batch_size or n_iter (batch count): at most {fits} image{'s' if fits != 1 else ''} of " \
                 "this size fit"
    elif req.task == "inpaint" and req.init_image is not None:
        field, advice = "init_images", "use a smaller input image (an inpaint result has the input's size)"
    elif hires.wanted(req):
        field, advice = "hr_scale", "lower hr_scale (or the hires resize), width or height"
    else:
        field, advice = "width", "lower width and height"
    raise UserError(f"this request would hold about {human(est.total)} of server memory ({what}), over the "
                    f"limit of {human(limit)} (--max-request-bytes); {advice}", field=field)


class ClientBudget:
    """Server memory one client's requests may hold at once while they wait for and use the GPU
    (each one's estimate, counted from the queue until its result is handed back): a client
    cannot park many big requests in the queue. Over it: RateLimited (REST: HTTP 429)."""

    def __init__(self, limit: int):
        self.limit = limit
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, client: str | None, nbytes: int):
        if client is None:  # internal work (warm-up, tests): not a client
            yield
            return
        with self._lock:
            held = self._held.get(client, 0)
            if held and held + nbytes > self.limit:
                raise RateLimited(f"your earlier requests still hold about {human(held)} of server memory and this one "
                                  f"needs {human(nbytes)}: over the {human(self.limit)} one client may hold at once "
                                  "(2 x --max-request-bytes); try again when they have finished", retry_after=5)
            self._held[client] = held + nbytes
        try:
            yield
        finally:
            with self._lock:
                left = self._held.get(client, 0) - nbytes
                if left > 0:
                    self._held[client] = left
                else:
                    self._held.pop(client, None)
