"""Metadata in image files: PNG chunks, EXIF UserComment, other tools' formats, bad uploads."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib

import pytest
from PIL import Image, PngImagePlugin

from webui.metadata import image_meta
from webui.errors import UserError
from webui.metadata.foreign_formats import comfyui_to_infotext
from webui.metadata.image_meta import (
    decode_user_comment,
    exif_bytes_with_infotext,
    image_bytes_with_infotext,
    png_bytes_with_infotext,
    read_infotext,
    save_image,
    save_png,
)
from webui.metadata.uploads import open_image
from webui.metadata.infotext import build_infotext, infotext_to_fields, parse_infotext

CHINESE = build_infotext(
    "一位老渔夫的肖像，油画, (戏剧性的轮廓光:1.2)\n第二行 😀",
    "低分辨率, 模糊",
    {"Steps": 20, "Sampler": "DPM++ 2M", "Schedule type": "Karras", "CFG scale": 7, "Seed": 1, "Size": "64x48"},
)
LATIN = build_infotext("a cat, café", "dog", {"Steps": 20, "Seed": 5, "CFG scale": 7.5, "Size": "64x48"})


def _image(mode: str = "RGB") -> Image.Image:
    return Image.new(mode, (64, 48), (200, 120, 40, 255)[: len(mode)] if mode != "L" else 128)


def _chunk_types(png: bytes) -> list[bytes]:
    types, pos = [], 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        types.append(png[pos + 4 : pos + 8])
        pos += 12 + length
    return types


# ----------------------------------------------------------------------------- PNG


def test_png_chinese_uses_itxt_and_round_trips():
    data = png_bytes_with_infotext(_image(), CHINESE)
    assert b"iTXt" in _chunk_types(data)
    info, items = read_infotext(data)
    assert info == CHINESE
    assert items == {}
    assert parse_infotext(info)["Prompt"].endswith("第二行 😀")


def test_png_latin1_uses_text_chunk():
    data = png_bytes_with_infotext(_image("RGBA"), LATIN, extra_text={"Software": "webui"})
    types = _chunk_types(data)
    assert types.count(b"tEXt") == 2 and b"iTXt" not in types
    info, items = read_infotext(data)
    assert info == LATIN and items == {"Software": "webui"}


def test_png_without_infotext():
    info, items = read_infotext(png_bytes_with_infotext(_image("L"), None))
    assert info is None and items == {}


def test_save_png_atomic(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "00000-1.png"
    assert save_png(_image(), target, CHINESE) == target
    assert read_infotext(target)[0] == CHINESE
    assert read_infotext(str(target))[0] == CHINESE
    with open(target, "rb") as handle:
        assert read_infotext(handle)[0] == CHINESE
    assert sorted(p.name for p in target.parent.iterdir()) == ["00000-1.png"]

    # A failure after writing the temp file leaves the old image whole and no temp file.
    before = target.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(image_meta.os, "replace", broken_replace)
    with pytest.raises(OSError):
        save_png(Image.new("RGB", (8, 8)), target, "other")
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["00000-1.png"]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _append_before_iend(png: bytes, *chunks: bytes) -> bytes:
    iend = png.rindex(b"IEND") - 4
    return png[:iend] + b"".join(chunks) + png[iend:]


def test_text_chunks_after_image_data_are_found():
    png = png_bytes_with_infotext(_image(), None)
    data = _append_before_iend(png, _chunk(b"tEXt", b"parameters\x00" + LATIN.encode("latin-1")))
    assert read_infotext(data)[0] == LATIN
    itxt = b"parameters\x00\x01\x00\x00\x00" + zlib.compress(CHINESE.encode("utf-8"))
    bomb = b"huge\x00\x00" + zlib.compress(bytes(17 * 1024 * 1024), 1)
    data = _append_before_iend(png, _chunk(b"zTXt", bomb), _chunk(b"iTXt", itxt))
    assert read_infotext(data) == (CHINESE, {})


def test_big_compressed_text_before_image_data():
    # Pillow refuses compressed text over 1 MB at open; large ComfyUI workflows get there.
    workflow = json.dumps({"nodes": ["x" * 100] * 20_000})
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", LATIN)
    info.add_text("workflow", workflow, zip=True)
    buffer = io.BytesIO()
    _image().save(buffer, "PNG", pnginfo=info)
    assert read_infotext(buffer.getvalue()) == (LATIN, {"workflow": workflow})
    assert open_image(buffer.getvalue()).size == (64, 48)


def test_read_from_pil_image():
    image = Image.open(io.BytesIO(png_bytes_with_infotext(_image(), CHINESE)))
    assert read_infotext(image)[0] == CHINESE
    assert open_image(image) is image


# ----------------------------------------------------------------------------- EXIF


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_jpeg_webp_user_comment_round_trip(fmt, tmp_path):
    data = image_bytes_with_infotext(_image("RGBA"), CHINESE, fmt)
    assert Image.open(io.BytesIO(data)).format == fmt
    assert read_infotext(data) == (CHINESE, {})
    path = save_image(_image(), tmp_path / f"x.{fmt.lower()}", LATIN)
    assert read_infotext(path)[0] == LATIN


def test_exif_bytes_are_a1111_style():
    exif_block = exif_bytes_with_infotext("Steps: 20")
    assert exif_block.startswith(b"Exif\x00\x00")
    assert b"UNICODE\x00" + "Steps: 20".encode("utf-16-be") in exif_block
    buffer = io.BytesIO()
    _image().save(buffer, "JPEG", exif=exif_block)
    exif = Image.open(io.BytesIO(buffer.getvalue())).getexif()
    assert decode_user_comment(exif.get_ifd(0x8769)[0x9286]) == "Steps: 20"


def test_decode_user_comment_variants():
    text = "中文 prompt\nSteps: 20, Seed: 1"
    assert decode_user_comment(b"UNICODE\x00" + text.encode("utf-16-be")) == text
    assert decode_user_comment(b"UNICODE\x00" + text.encode("utf-16-le")) == text
    assert decode_user_comment(b"UNICODE\x00\xff\xfe" + text.encode("utf-16-le")) == text
    assert decode_user_comment(b"ASCII\x00\x00\x00Steps: 20\x00") == "Steps: 20"
    assert decode_user_comment(b"\x00" * 8 + text.encode()) == text
    assert decode_user_comment(b"UNICODE\x00") is None
    assert decode_user_comment(None) is None


def test_jpeg_comment_marker_infotext():
    buffer = io.BytesIO()
    _image().save(buffer, "JPEG", comment=LATIN.encode("utf-8"))
    assert read_infotext(buffer.getvalue())[0] == LATIN


# ----------------------------------------------------------------------------- other tools


def _png_with_text(**texts: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


COMFY_GRAPH = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "SDXL/juggernautXL_v9.safetensors"}},
    "10": {
        "class_type": "LoraLoader",
        "inputs": {"lora_name": "detail_slider.safetensors", "strength_model": 0.8, "strength_clip": 0.8,
                   "model": ["4", 0], "clip": ["4", 1]},
    },
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 832, "height": 1216, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "portrait of a knight, 雨", "clip": ["10", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry, lowres", "clip": ["10", 1]}},
    "20": {"class_type": "PrimitiveInt", "inputs": {"value": 123456789}},
    "3": {
        "class_type": "KSampler",
        "inputs": {"seed": ["20", 0], "steps": 25, "cfg": 6.5, "sampler_name": "dpmpp_2m_sde",
                   "scheduler": "karras", "denoise": 1.0, "model": ["10", 0], "positive": ["6", 0],
                   "negative": ["7", 0], "latent_image": ["5", 0]},
    },
    "11": {"class_type": "LatentUpscaleBy", "inputs": {"upscale_method": "nearest-exact", "scale_by": 1.5,
                                                        "samples": ["3", 0]}},
    "12": {
        "class_type": "KSampler",
        "inputs": {"seed": 1, "steps": 12, "cfg": 6.5, "sampler_name": "euler", "scheduler": "normal",
                   "denoise": 0.5, "model": ["10", 0], "positive": ["6", 0], "negative": ["7", 0],
                   "latent_image": ["11", 0]},
    },
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["12", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
}


def test_comfyui_png_to_fields():
    prompt_json = json.dumps(COMFY_GRAPH, ensure_ascii=False)
    workflow_json = json.dumps({"nodes": [], "links": []})
    data = _png_with_text(prompt=prompt_json, workflow=workflow_json)
    info, items = read_infotext(data)
    assert items == {"prompt": prompt_json, "workflow": workflow_json}
    assert info is not None
    fields = infotext_to_fields(info)
    assert fields["prompt"] == "portrait of a knight, 雨, <lora:detail_slider:0.8>"
    assert fields["negative_prompt"] == "blurry, lowres"
    assert fields["seed"] == 123456789
    assert fields["steps"] == 25
    assert fields["cfg_scale"] == 6.5
    assert (fields["sampler_name"], fields["scheduler"]) == ("DPM++ 2M SDE", "Karras")
    assert (fields["width"], fields["height"]) == (832, 1216)
    assert fields["sd_model_checkpoint"] == "juggernautXL_v9"
    assert fields["enable_hr"] is True
    assert fields["hr_scale"] == 1.5 and fields["hr_second_pass_steps"] == 12
    assert fields["hr_upscaler"] == "Latent" and fields["denoising_strength"] == 0.5


def test_comfyui_without_sampler_keeps_raw_items():
    graph = json.dumps({"1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}}})
    info, items = read_infotext(_png_with_text(prompt=graph, workflow="{}"))
    assert info is None and items == {"prompt": graph, "workflow": "{}"}
    assert comfyui_to_infotext("not json") is None
    assert comfyui_to_infotext({"1": {"class_type": "KSampler", "inputs": {"positive": ["99", 0]}}}) is None


def test_novelai_and_invokeai():
    comment = json.dumps({"steps": 28, "sampler": "k_euler_ancestral", "seed": 7, "scale": 11.0, "uc": "bad"})
    info, _ = read_infotext(_png_with_text(Software="NovelAI", Description="1girl", Comment=comment))
    fields = infotext_to_fields(info)
    assert (fields["prompt"], fields["negative_prompt"], fields["sampler_name"]) == ("1girl", "bad", "Euler a")
    assert (fields["steps"], fields["seed"], fields["cfg_scale"], fields["width"]) == (28, 7, 11.0, 96)

    meta = json.dumps({"positive_prompt": "a fox", "negative_prompt": "", "width": 512, "height": 768,
                       "seed": 3, "steps": 30, "cfg_scale": 5, "scheduler": "dpmpp_2m_k",
                       "model": {"name": "dreamshaper_8"}})
    fields = infotext_to_fields(read_infotext(_png_with_text(invokeai_metadata=meta))[0])
    assert (fields["sampler_name"], fields["scheduler"], fields["height"]) == ("DPM++ 2M", "Karras", 768)
    assert fields["sd_model_checkpoint"] == "dreamshaper_8"


def test_plain_comment_is_not_infotext():
    info, items = read_infotext(_png_with_text(Comment="made with love"))
    assert info is None and items == {"Comment": "made with love"}


# ----------------------------------------------------------------------------- bad uploads


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20])
def test_corrupt_bytes_raise_user_error(data):
    with pytest.raises(UserError, match="is not a readable image"):
        read_infotext(data)
    with pytest.raises(UserError, match="is not a readable image"):
        open_image(data)


def test_truncated_and_missing_files(tmp_path):
    good = png_bytes_with_infotext(Image.effect_noise((64, 64), 50).convert("RGB"), LATIN)
    truncated = good[: len(good) // 2]
    assert read_infotext(truncated)[0] == LATIN  # metadata comes before the pixels
    with pytest.raises(UserError, match="is not a readable image"):
        open_image(truncated)
    with pytest.raises(UserError, match="missing.png is not a readable image"):
        read_infotext(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"junk")
    with pytest.raises(UserError, match="junk.png is not a readable image"):
        read_infotext(os.fspath(tmp_path / "junk.png"))
    assert open_image(good).size == (64, 64)


def test_decompression_bomb_refused():
    png = png_bytes_with_infotext(Image.new("L", (1, 1)), None)
    ihdr_data = struct.pack(">II", 200_000, 200_000) + png[24:29]
    ihdr = b"IHDR" + ihdr_data
    bomb = png[:8] + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]
    with pytest.raises(UserError, match="too many pixels"):
        read_infotext(bomb)
