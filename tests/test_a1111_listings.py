"""A1111 1.10 listings and png-info defaults, checked without a model: the sampler and
schedule tables, the LoRA file metadata reader and the keys png-info fills in."""

from __future__ import annotations

import io
import json
import struct

from PIL import Image

from webui.metadata.image_meta import png_bytes_with_infotext
from webui.metadata.pnginfo import A1111_DEFAULTS, png_info
from webui.models.safetensors_meta import read_metadata
from webui.samplers_names import A1111_SAMPLERS, sampler_listing, schedule_listing


def test_sampler_listing_is_a1111s():
    listing = sampler_listing()
    assert [s["name"] for s in listing][:20] == list(A1111_SAMPLERS)
    by_name = {s["name"]: s for s in listing}
    assert by_name["DPM++ 2M"] == {"name": "DPM++ 2M", "aliases": ["k_dpmpp_2m"], "options": {"scheduler": "karras"}}
    assert by_name["DPM++ 2M SDE Heun"]["options"]["solver_type"] == "heun"
    assert by_name["Restart"]["aliases"] == ["restart"]
    assert all(isinstance(v, str) for s in listing for v in s["options"].values())  # A1111 types them as strings


def test_schedule_listing_is_a1111s():
    listing = schedule_listing()
    assert [s["name"] for s in listing] == ["automatic", "uniform", "karras", "exponential", "polyexponential",
                                            "sgm_uniform", "kl_optimal", "align_your_steps", "simple", "normal",
                                            "ddim", "beta"]
    karras = next(s for s in listing if s["name"] == "karras")
    assert karras == {"name": "karras", "label": "Karras", "aliases": None, "default_rho": 7.0,
                      "need_inner_model": False}


def _safetensors(path, metadata):
    header = json.dumps({"__metadata__": metadata, "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode() + b"\0\0\0\0")
    return path


def test_lora_metadata_is_read_from_the_header(tmp_path):
    p = _safetensors(tmp_path / "x.safetensors", {"ss_network_dim": "16", "ss_tag_frequency": '{"a": {"b": 2}}'})
    assert read_metadata(p) == {"ss_network_dim": "16", "ss_tag_frequency": {"a": {"b": 2}}}
    assert read_metadata(_safetensors(tmp_path / "y.safetensors", {})) == {}
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 20)
    assert read_metadata(tmp_path / "bad.safetensors") == {}
    assert read_metadata(tmp_path / "missing.safetensors") == {}
    (tmp_path / "z.pt").write_bytes(b"x")
    assert read_metadata(tmp_path / "z.pt") == {}


def _png(text):
    return io.BytesIO(png_bytes_with_infotext(Image.new("RGB", (8, 8)), text))


def test_png_info_fills_a1111_defaults():
    out = png_info(_png("a cat\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1, Size: 512x512"))
    p = out["parameters"]
    assert p["Clip skip"] == "1" and p["RNG"] == "GPU" and p["Hires sampler"] == "Use same sampler"
    assert (p["Sampler"], p["Schedule type"]) == ("DPM++ 2M", "Karras")  # a pre-1.9 name is split
    assert set(A1111_DEFAULTS) <= set(p)
    kept = png_info(_png("a cat\nSteps: 20, Sampler: Euler, Schedule type: Uniform, Clip skip: 2, Seed: 1"))
    assert kept["parameters"]["Clip skip"] == "2" and kept["parameters"]["Schedule type"] == "Uniform"
    assert png_info(_png(""))["parameters"] == {}  # no infotext: nothing to fill in


def test_legacy_names_keep_their_schedule_in_requests():
    from webui.request import build_request
    from webui.settings import Limits

    req = build_request({"prompt": "x", "sampler_name": "k_dpmpp_2m_ka", "scheduler": "Automatic",
                         "enable_hr": True, "hr_sampler_name": "DPM++ 2M SDE Exponential"}, Limits())
    assert (req.sampler_name, req.scheduler) == ("DPM++ 2M", "Karras")
    assert (req.hr_sampler_name, req.hr_scheduler) == ("DPM++ 2M SDE", "Exponential")
    plain = build_request({"prompt": "x", "sampler_name": "Euler", "scheduler": "normal",
                           "hr_scheduler": "kl_optimal"}, Limits())
    assert (plain.scheduler, plain.hr_scheduler) == ("Normal", "KL Optimal")


def test_a_comfyui_picture_with_scheduler_normal_and_a_64_bit_seed_can_be_remade():
    from PIL.PngImagePlugin import PngInfo

    from webui.request import build_request
    from webui.settings import Limits

    graph = {
        "1": {"class_type": "CLIPTextEncode", "inputs": {"text": "a knight"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry"}},
        "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "4": {"class_type": "KSampler", "inputs": {"seed": 2**64 - 1, "steps": 9, "cfg": 5.0, "sampler_name": "euler",
                                                   "scheduler": "normal", "denoise": 1.0, "positive": ["1", 0],
                                                   "negative": ["2", 0], "latent_image": ["3", 0]}},
    }
    meta = PngInfo()
    meta.add_text("prompt", json.dumps(graph))
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG", pnginfo=meta)
    fields = png_info(io.BytesIO(buf.getvalue()))["fields"]
    assert (fields["sampler_name"], fields["scheduler"], fields["seed"]) == ("Euler", "Normal", 2**64 - 1)
    req = build_request(fields, Limits())
    assert (req.sampler_name, req.scheduler, req.seed, req.steps) == ("Euler", "Normal", 2**64 - 1, 9)
