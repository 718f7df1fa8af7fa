"""img2img, inpaint and outpaint on tiny offline models: what an artist relies on is that the
parts of the picture they did not mask come back bit-for-bit, that the options do what their
names say, that bad uploads get a message, and that the three tasks share one set of weights."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from webui.engine import denoise, runner, tasks
from webui.engine.jobs import Job
from webui.errors import UserError
from webui.metadata.image_meta import read_infotext
from webui.imaging.images import combine_masks, editor_mask, load_mask, load_upload
from webui.metadata.infotext import parse_infotext
from webui.imaging.masks import blur_mask
from webui.serving.service import Service
from webui.settings import Limits, Settings


def px(img) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def models_dir(tiny_models, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    ckpts = root / "Stable-diffusion"
    ckpts.mkdir()
    shutil.copy(tiny_models["sd1"].file, ckpts / "plain.safetensors")
    shutil.copy(tiny_models["sd1-inpaint"].file, ckpts / "painter.safetensors")
    return root


@pytest.fixture(scope="module")
def service(models_dir, tmp_path_factory) -> Service:
    out = tmp_path_factory.mktemp("outputs")
    return Service.create(Settings(models_dir=models_dir, outputs_dir=out, device="cpu"))


def picture(w=96, h=80, seed=0) -> Image.Image:
    """A portrait-like test card: smooth gradients plus fine noise, so any change shows."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([x * 255 // max(1, w - 1), y * 255 // max(1, h - 1), (x + y) % 256], -1).astype(np.int16)
    arr = np.clip(arr + rng.integers(-20, 21, arr.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def rect_mask(size, box) -> Image.Image:
    m = Image.new("L", size, 0)
    ImageDraw.Draw(m).rectangle(box, fill=255)
    return m


def run(svc, task="inpaint", **fields):
    base = dict(prompt="portrait, soft light", seed=7, steps=3, width=64, height=64, sampler_name="Euler",
                denoising_strength=1.0, sd_model_checkpoint="plain")
    base.update(fields)
    return svc.generate(svc.request(base, task))


@pytest.mark.parametrize("model", ["plain", "painter"])  # ordinary and 9-channel inpainting UNet
@pytest.mark.parametrize("only_masked", [False, True])
def test_pixels_outside_the_blurred_mask_are_the_input(service, model, only_masked):
    img = picture(96, 80)
    mask = rect_mask(img.size, (40, 30, 59, 49))
    r = run(service, init_image=img, mask=mask, mask_blur=4, inpaint_full_res=only_masked,
            inpaint_full_res_padding=8, sd_model_checkpoint=model)
    out = r.images[0]
    assert out.size == img.size  # the result keeps the input's size
    keep = np.asarray(blur_mask(mask, 4)) == 0
    assert keep.sum() > 0.7 * keep.size
    assert np.array_equal(px(out)[keep], px(img)[keep])
    # ...in the saved PNG too, and the masked middle was repainted.
    saved = Image.open(r.paths[0])
    assert np.array_equal(px(saved), px(out))
    assert "img2img-images" in str(r.paths[0])
    assert np.abs(px(out)[44:46, 44:56] - px(img)[44:46, 44:56]).mean() > 10


def test_only_masked_works_at_model_resolution(service):
    """A small mask in a large picture is repainted from a crop at width x height."""
    img = picture(256, 256)
    mask = rect_mask(img.size, (120, 120, 135, 135))
    req = service.request(dict(init_image=img, mask=mask, width=64, height=64, inpaint_full_res=True,
                               inpaint_full_res_padding=16, mask_blur=2), "inpaint")
    prepared = tasks.prepare(req, service.manager.ensure_model("plain"))
    x0, y0, x1, y1 = prepared.region
    assert prepared.image.size == (64, 64)
    assert (x1 - x0, y1 - y0) == (58, 58)  # 16 px + 2 x 16 padding + 2 x 5 blur support, square
    assert x0 <= 120 - 16 and x1 >= 135 + 16


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_resize_modes_keep_the_input_outside_the_mask(service, mode):
    img = picture(120, 64, seed=3)
    mask = rect_mask(img.size, (50, 20, 69, 43))
    out = run(service, init_image=img, mask=mask, resize_mode=mode, mask_blur=0).images[0]
    keep = np.asarray(mask) == 0
    assert out.size == img.size
    assert np.array_equal(px(out)[keep], px(img)[keep])


@pytest.mark.parametrize("mode,size", [(0, (64, 64)), (1, (64, 64)), (2, (64, 64))])
def test_img2img_resize_modes_give_the_target_size(service, mode, size):
    r = run(service, "img2img", init_image=picture(120, 64), resize_mode=mode, denoising_strength=0.6)
    assert r.images[0].size == size
    assert "Denoising strength: 0.6" in r.infotexts[0]


def test_resize_and_fill_and_crop_place_the_picture():
    img = picture(120, 60)
    filled = tasks.resize_image(img, 64, 64, 2)  # fit 64x32, centred, bands stretched from the edges
    assert np.array_equal(px(filled)[0], px(filled)[15])
    assert tasks.fit_boxes((120, 60), 64, 64, 2) == ((0, 0, 120, 60), (0, 16, 64, 48))
    assert tasks.fit_boxes((120, 60), 64, 64, 1) == ((30, 0, 90, 60), (0, 0, 64, 64))


@pytest.mark.parametrize("model", ["plain", "painter"])
def test_denoising_strength_zero_returns_the_input(service, model):
    img = picture(64, 64)
    r = run(service, "img2img", init_image=img, denoising_strength=0.0, sd_model_checkpoint=model)
    assert np.array_equal(px(r.images[0]), px(img))
    mask = rect_mask(img.size, (10, 10, 40, 40))
    r = run(service, init_image=img, mask=mask, denoising_strength=0.0, sd_model_checkpoint=model)
    assert np.array_equal(px(r.images[0]), px(img))


def test_mask_invert_paints_the_complement(service):
    img = picture(64, 64)
    mask = rect_mask(img.size, (16, 16, 47, 47))
    out = run(service, init_image=img, mask=mask, inpainting_mask_invert=True, mask_blur=2).images[0]
    inner = slice(22, 42)
    assert np.array_equal(px(out)[inner, inner], px(img)[inner, inner])  # the painted part is kept
    assert np.abs(px(out)[:8] - px(img)[:8]).mean() > 10  # the rest is repainted
    normal = run(service, init_image=img, mask=mask, mask_blur=2).images[0]
    assert np.array_equal(px(normal)[:8], px(img)[:8])
    assert np.abs(px(normal)[inner, inner] - px(img)[inner, inner]).mean() > 10


@pytest.mark.parametrize("model", ["plain", "painter"])
def test_outpaint_keeps_the_original_area(service, model):
    img = picture(64, 48)
    big, mask = tasks.outpaint(img, None, bottom=32, right=16)
    assert big.size == (80, 80)
    out = run(service, init_image=big, mask=mask, mask_blur=4, inpainting_fill=0,
              sd_model_checkpoint=model).images[0]
    assert out.size == (80, 80)
    support = 10  # blur 4 reaches 10 px into the original along the new edges
    assert np.array_equal(px(out)[:48 - support, :64 - support], px(img)[:48 - support, :64 - support])
    assert np.abs(px(out)[60:, :60] - px(big)[60:, :60]).mean() > 5  # the new area is painted


def test_outpaint_moves_a_drawn_mask_along_and_sizes_follow_the_canvas():
    img = picture(64, 64)
    drawn = rect_mask(img.size, (0, 0, 9, 9))
    big, mask = tasks.outpaint(img, drawn, left=16, top=8)
    m = np.asarray(mask)
    assert m[8, 16] == 255 and m[8 + 9, 16 + 9] == 255 and m[30, 30] == 0 and m[0, 40] == 255
    w, h = tasks.outpaint_size((512, 768), 512, 512, Limits())
    assert w % 8 == 0 and h % 8 == 0 and abs(w / h - 512 / 768) < 0.03
    assert 0.9 < w * h / 512**2 < 1.1


def test_infotext_has_the_a1111_inpaint_keys(service):
    img = picture(64, 64)
    r = run(service, init_image=img, mask=rect_mask(img.size, (8, 8, 30, 30)), denoising_strength=0.5,
            mask_blur=6, inpaint_full_res=True, inpaint_full_res_padding=24, inpainting_fill=0)
    p = parse_infotext(r.infotexts[0])
    assert p["Denoising strength"] == "0.5"
    assert p["Mask blur"] == "6"
    assert p["Inpaint area"] == "Only masked"
    assert p["Masked area padding"] == "24"
    assert p["Masked content"] == "fill"
    assert read_infotext(r.paths[0])[0] == r.infotexts[0]
    line = r.infotexts[0].splitlines()[-1]
    assert line.index("Denoising strength") < line.index("Mask blur") < line.index("Masked content")


# ---- bad input ---------------------------------------------------------------------------------


def png_bytes(img, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=kw.pop("format", "PNG"), **kw)
    return buf.getvalue()


def test_not_an_image_is_a_message():
    with pytest.raises(UserError, match="not a readable image"):
        load_upload(b"this is a text file, not a picture")
    with pytest.raises(UserError, match="not a readable image"):
        load_mask(b"\x89PNG\r\n\x1a\n broken")


def test_animated_image_uses_its_first_frame():
    frames = [Image.new("RGB", (32, 32), c) for c in ((200, 10, 10), (10, 200, 10))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    img = load_upload(buf.getvalue())
    assert img.mode == "RGB" and img.getpixel((5, 5))[0] > 150 and img.getpixel((5, 5))[1] < 60


def test_sixteen_bit_image_is_scaled_to_8_bit():
    a = np.full((16, 16), 32768, dtype=np.uint16)
    img = load_upload(png_bytes(Image.fromarray(a)))
    assert img.mode == "RGB" and abs(img.getpixel((3, 3))[0] - 128) <= 1


def test_cmyk_is_converted_to_rgb():
    img = load_upload(png_bytes(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), format="JPEG"))
    r, g, b = img.getpixel((8, 8))
    assert img.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_transparency_is_flattened_onto_white_and_a_transparent_mask_uses_its_alpha():
    rgba = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    rgba.putpixel((2, 2), (255, 0, 0, 255))
    img = load_upload(png_bytes(rgba))
    assert img.getpixel((8, 8)) == (255, 255, 255) and img.getpixel((2, 2)) == (255, 0, 0)
    m = load_mask(png_bytes(rgba))
    assert m.getpixel((2, 2)) == 255 and m.getpixel((8, 8)) == 0


def test_mask_of_another_size_is_refused(service):
    with pytest.raises(UserError, match="same size") as e:
        service.request(dict(init_image=picture(64, 64), mask=Image.new("L", (32, 32), 255)), "inpaint")
    assert e.value.field == "mask"
    with pytest.raises(UserError, match="same size"):
        combine_masks(Image.new("L", (64, 64), 0), Image.new("L", (60, 64), 255))


@pytest.mark.parametrize("invert", [False, True])
def test_empty_mask_is_refused(service, invert):
    fill = 255 if invert else 0  # inverted, a full mask repaints nothing
    with pytest.raises(UserError, match="paint over"):
        run(service, init_image=picture(64, 64), mask=Image.new("L", (64, 64), fill), inpainting_mask_invert=invert)
    # the server still works afterwards
    assert run(service, "img2img", init_image=picture(64, 64)).images


def test_image_over_the_pixel_limit_is_refused(models_dir, tmp_path):
    svc = Service.create(Settings(models_dir=models_dir, outputs_dir=tmp_path, device="cpu",
                                  limits=Limits(max_upload_pixels=100 * 100)), load_model=False)
    with pytest.raises(UserError, match="limit"):
        svc.request(dict(init_image=picture(120, 100)), "img2img")


def test_editor_mask_is_the_painted_alpha():
    layer = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    ImageDraw.Draw(layer).ellipse((5, 5, 15, 15), fill=(255, 60, 180, 150))  # translucent brush
    m = editor_mask([layer], (40, 30))
    assert m.getpixel((10, 10)) == 255 and m.getpixel((30, 20)) == 0
    assert editor_mask([Image.new("RGBA", (40, 30), (0, 0, 0, 0))], (40, 30)) is None
    assert editor_mask([layer], (80, 60)).getpixel((20, 20)) == 255  # stretched to the picture


# ---- shared weights ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["plain", "painter"])
def test_three_tasks_share_one_set_of_weights(service, model):
    loaded = service.manager.ensure_model(model)
    modules = {k: loaded.pipe.components[k] for k in ("unet", "vae", "text_encoder")}
    ptrs = {k: m.state_dict()[next(iter(m.state_dict()))].data_ptr() for k, m in modules.items()}
    img = picture(64, 64)
    mask = rect_mask(img.size, (8, 8, 30, 30))
    reqs = [service.request(dict(prompt="x", steps=2, width=64, height=64, sd_model_checkpoint=model), "txt2img"),
            service.request(dict(init_image=img, steps=2, width=64, height=64, sd_model_checkpoint=model), "img2img"),
            service.request(dict(init_image=img, mask=mask, steps=2, width=64, height=64,
                                 sd_model_checkpoint=model), "inpaint")]
    for req in reqs:
        ctx = runner.new_context(service.manager, loaded, [req], [Job()])
        pipe = denoise.build_pipeline(ctx, runner.base_spec(req, tasks.prepare(req, loaded), [1]), ctx.extensions)
        for k, m in modules.items():
            assert getattr(pipe, k) is m
        service.generate(req)
    assert service.manager.ensure_model(model) is loaded
    for k, m in modules.items():
        assert loaded.pipe.components[k] is m
        assert m.state_dict()[next(iter(m.state_dict()))].data_ptr() == ptrs[k]


# ---- the named Gradio endpoints, through a running app ---------------------------------------


@pytest.fixture(scope="module")
def app_url(service):
    import socket

    from webui.ui import build_ui, launch_kwargs

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo = build_ui(service)
    demo.queue(default_concurrency_limit=1)
    kwargs = launch_kwargs(service) | dict(server_name="127.0.0.1", server_port=port, share=False, auth=None)
    demo.launch(prevent_thread_lock=True, quiet=True, **kwargs)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_api_img2img_and_inpaint_endpoints(app_url, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    params = {p["parameter_name"] for p in client.view_api(return_format="dict", print_info=False)
              ["named_endpoints"]["/inpaint"]["parameters"]}
    assert {"init_image", "mask", "denoising_strength", "mask_blur", "inpainting_fill", "inpaint_full_res",
            "inpaint_full_res_padding", "inpainting_mask_invert", "resize_mode", "prompt", "steps"} <= params
    img, mask = picture(96, 80), rect_mask((96, 80), (30, 20, 60, 50))
    img.save(tmp_path / "in.png")
    mask.save(tmp_path / "mask.png")
    common = dict(prompt="portrait", negative_prompt="", steps=2, cfg_scale=7, seed=5, width=64, height=64,
                  sampler_name="Euler", scheduler="Automatic", batch_size=1, n_iter=1, sd_model_checkpoint=None)

    gallery, info = client.predict(init_image=handle_file(str(tmp_path / "in.png")), denoising_strength=0.5,
                                   resize_mode=1, **common, api_name="/img2img")
    out = Image.open(gallery[0]["image"])
    assert out.size == (64, 64) and "Denoising strength: 0.5" in info
    assert read_infotext(gallery[0]["image"])[0] == info  # the download carries the metadata

    gallery, info = client.predict(init_image=handle_file(str(tmp_path / "in.png")),
                                   mask=handle_file(str(tmp_path / "mask.png")), denoising_strength=1,
                                   mask_blur=4, inpainting_fill=1, inpaint_full_res=1, inpaint_full_res_padding=32,
                                   inpainting_mask_invert=0, resize_mode=0, **common, api_name="/inpaint")
    out = Image.open(gallery[0]["image"])
    keep = np.asarray(blur_mask(mask, 4)) == 0
    assert out.size == img.size and np.array_equal(px(out)[keep], px(img)[keep])
    assert "Inpaint area: Only masked" in info and "Mask blur: 4" in info


def test_api_bad_uploads_get_a_message(app_url, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(app_url, verbose=False)
    (tmp_path / "notes.png").write_bytes(b"not really a picture")
    common = dict(prompt="p", steps=2, width=64, height=64, sampler_name="Euler", scheduler="Automatic")
    with pytest.raises(AppError, match="not a readable image"):
        client.predict(init_image=handle_file(str(tmp_path / "notes.png")), **common, api_name="/img2img")
    picture(64, 64).save(tmp_path / "in.png")
    Image.new("L", (32, 32), 255).save(tmp_path / "small.png")
    with pytest.raises(AppError, match="same size"):
        client.predict(init_image=handle_file(str(tmp_path / "in.png")), mask=handle_file(str(tmp_path / "small.png")),
                       **common, api_name="/inpaint")
    Image.new("L", (64, 64), 0).save(tmp_path / "empty.png")
    with pytest.raises(AppError, match="empty"):
        client.predict(init_image=handle_file(str(tmp_path / "in.png")), mask=handle_file(str(tmp_path / "empty.png")),
                       **common, api_name="/inpaint")
