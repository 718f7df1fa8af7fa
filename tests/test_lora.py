"""LoRA through the whole engine on tiny models: `<lora:name:weight>` tags, kohya and diffusers
files, several at once, nothing leaking into the next request, hashes in the infotext, and the
bad input a user can send (unknown names, paths, another model family's LoRA, broken files)."""

from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from webui.errors import UserError
from webui.metadata.infotext import parse_infotext
from webui.engine.extensions.lora import LoraLibrary, family_mismatch, weights_hash
from webui.serving.service import Service
from webui.settings import Settings

PROMPT = "portrait of an old sailor"


def px(img) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


@pytest.fixture(scope="module")
def models_dir(tiny_models, tiny_loras, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    (root / "Stable-diffusion").mkdir()
    shutil.copy(tiny_models["sd1"].file, root / "Stable-diffusion" / "tiny.safetensors")
    lora = root / "Lora"
    (lora / "people").mkdir(parents=True)
    shutil.copy(tiny_loras["face"][0], lora / "face.safetensors")
    shutil.copy(tiny_loras["face"][1], lora / "people" / "face_kohya.safetensors")
    shutil.copy(tiny_loras["light"][0], lora / "light.safetensors")
    shutil.copy(tiny_loras["xl"][1], lora / "xl_style.safetensors")
    (lora / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    (root / "secret.safetensors").write_bytes(b"outside the Lora folder")
    return root


@pytest.fixture(scope="module")
def svc(models_dir, tmp_path_factory):
    s = Settings(models_dir=models_dir, outputs_dir=tmp_path_factory.mktemp("out"), device="cpu")
    return Service.create(s)


@pytest.fixture(scope="module")
def run(svc, memo_runner):
    """Generate (memoized by prompt) with fixed seed; the first call is the never-LoRA base."""
    go = memo_runner(svc, seed=7, prompt=PROMPT)

    go()  # before any LoRA was ever loaded
    return go


def differs(a, b) -> int:
    return int(np.abs(px(a.images[0]) - px(b.images[0])).max())


def test_lora_changes_image_weight_zero_is_base_and_nothing_leaks(svc, run):
    base = run()
    with_lora = run(f"{PROMPT} <lora:face:1>")
    assert differs(with_lora, base) > 10
    assert run(f"{PROMPT} <lora:face:0>").images[0].tobytes() == base.images[0].tobytes()
    # The next request without the tag gives exactly the never-LoRA image (no cache: fresh run).
    after = svc.generate(svc.request(dict(prompt=PROMPT, negative_prompt="blurry", seed=7, steps=1, width=64,
                                          height=64, sampler_name="Euler", save_images=False)))
    assert after.images[0].tobytes() == base.images[0].tobytes()
    assert svc.manager.active.adapters.loaded_count() == 1  # stays loaded for the next use


def test_infotext_keeps_tag_and_records_lora_hash(models_dir, run):
    r = run(f"{PROMPT} <lora:face:1>")
    info = r.infotexts[0]
    assert info.startswith(f"{PROMPT} <lora:face:1>\n")  # A1111 keeps the tag in the prompt
    parsed = parse_infotext(info)
    expected = weights_hash(models_dir / "Lora" / "face.safetensors")[:12]
    assert parsed["Lora hashes"] == f"face: {expected}"
    assert re.fullmatch(r"[0-9a-f]{12}", expected)
    assert "Lora hashes" not in parse_infotext(run().infotexts[0])


def test_weights_hash_ignores_safetensors_metadata(tmp_path, tiny_loras):
    """A1111/Civitai hash only the tensor data of a .safetensors LoRA."""
    from safetensors.torch import load_file, save_file

    sd = load_file(str(tiny_loras["light"][0]))
    save_file(sd, str(tmp_path / "a.safetensors"), metadata={"note": "one"})
    save_file(sd, str(tmp_path / "b.safetensors"), metadata={"note": "a much longer note"})
    assert weights_hash(tmp_path / "a.safetensors") == weights_hash(tmp_path / "b.safetensors")


def test_kohya_and_diffusers_files_give_the_same_image(run):
    a = run(f"{PROMPT} <lora:face:0.7>")
    b = run(f"{PROMPT} <lora:face_kohya:0.7>")  # found by its stem in a subfolder
    c = run(f"{PROMPT} <lora:people/face_kohya:0.7>")
    assert differs(a, run()) > 10
    assert differs(a, b) <= 1
    assert b.images[0].tobytes() == c.images[0].tobytes()


def test_two_loras_at_once(run):
    face, light = run(f"{PROMPT} <lora:face:1>"), run(f"{PROMPT} <lora:light:1>")
    both = run(f"{PROMPT} <lora:face:1> <lora:light:1>")
    assert differs(both, face) > 5 and differs(both, light) > 5
    hashes = parse_infotext(both.infotexts[0])["Lora hashes"]
    assert hashes.startswith("face: ") and ", light: " in hashes
    # light has no text-encoder part: still fine next to one that has.
    assert differs(light, run()) > 5


def test_unknown_lora_is_a_warning_and_changes_nothing(run):
    r = run(f"{PROMPT} <lora:nosuch:1>")
    assert any("'nosuch' was not found" in w for w in r.warnings)
    assert r.images[0].tobytes() == run().images[0].tobytes()
    assert "Lora hashes" not in parse_infotext(r.infotexts[0])


@pytest.mark.parametrize("name", ["../secret", "../../etc/passwd", "/etc/passwd", "people/../../secret"])
def test_lora_path_outside_the_folder_is_refused(svc, name):
    with pytest.raises(UserError, match="outside|not a name"):
        svc.generate(svc.request(dict(prompt=f"x <lora:{name}:1>", steps=1, width=64, height=64,
                                      save_images=False)))


def test_lora_for_another_family_is_a_warning_not_a_crash(svc, run):
    r = run(f"{PROMPT} <lora:xl_style:1>")
    assert any("xl_style does not fit" in w and "SDXL" in w for w in r.warnings), r.warnings
    assert r.images[0].tobytes() == run().images[0].tobytes()
    # Nothing half-loaded is left behind: the next LoRA request still works.
    assert differs(run(f"{PROMPT} <lora:face:1>"), run()) > 10


def test_broken_lora_file_and_bad_weight(run):
    r = run(f"{PROMPT} <lora:broken:1>")
    assert any("broken" in w and "could not be read" in w for w in r.warnings), r.warnings
    r = run(f"{PROMPT} <lora:face:strong>")
    assert any("'strong' is not a number" in w for w in r.warnings)
    assert r.images[0].tobytes() == run(f"{PROMPT} <lora:face:1>").images[0].tobytes()


def test_lora_in_negative_prompt_is_ignored_with_a_warning(run):
    r = run(PROMPT, negative_prompt="blurry <lora:face:1>")
    assert any("negative prompt have no effect" in w for w in r.warnings)
    assert "Lora hashes" not in parse_infotext(r.infotexts[0])


def test_concurrent_requests_do_not_see_each_others_lora(svc, run):
    base, with_lora = run(), run(f"{PROMPT} <lora:face:1>")
    out = {}

    def go(key, prompt):
        out[key] = svc.generate(svc.request(dict(prompt=prompt, negative_prompt="blurry", seed=7, steps=1,
                                                 width=64, height=64, sampler_name="Euler", save_images=False)))

    threads = [threading.Thread(target=go, args=("lora", f"{PROMPT} <lora:face:1>")),
               threading.Thread(target=go, args=("plain", PROMPT))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out["plain"].images[0].tobytes() == base.images[0].tobytes()
    assert out["lora"].images[0].tobytes() == with_lora.images[0].tobytes()


def test_library_lists_and_finds(models_dir):
    lib = LoraLibrary(models_dir / "Lora")
    assert [f.rel for f in lib.list()] == ["broken", "face", "light", "people/face_kohya", "xl_style"]
    assert lib.find("FACE").rel == "face"
    assert lib.find("face_kohya.safetensors").rel == "people/face_kohya"
    assert lib.find("missing") is None


def test_family_detection_from_shapes(tiny_loras):
    from safetensors.torch import load_file

    xl = load_file(str(tiny_loras["xl"][0]))
    sd1 = load_file(str(tiny_loras["face"][1]))
    assert family_mismatch(sd1, 32, [32], False) is None
    assert "SDXL" in family_mismatch(xl, 32, [32], False)
    assert family_mismatch(xl, 80, [32, 48], True) is None
    assert "80" in family_mismatch(sd1, 80, [32, 48], True)  # an SD1 LoRA on SDXL


def test_browser_click_adds_and_removes_the_tag():
    from webui.ui.lora_browser import toggle_lora, toggle_word

    p = toggle_lora("portrait, soft light", "face")
    assert p == "portrait, soft light, <lora:face:1>"
    assert toggle_lora(p, "face") == "portrait, soft light"
    assert toggle_lora("", "people/face") == "<lora:people/face:1>"
    assert toggle_lora("a <lora:face:0.5>, b", "face") == "a, b"
    assert toggle_word("blurry", "EasyNegative") == "blurry, EasyNegative"
    assert toggle_word("blurry, EasyNegative, bad", "EasyNegative") == "blurry, bad"
    assert toggle_word("EasyNegativeV2", "EasyNegative") == "EasyNegativeV2, EasyNegative"

