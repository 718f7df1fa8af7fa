"""Prompt features through the whole engine: textual-inversion embeddings from the A1111
folders (and TI hashes), clip skip, the second 75-token chunk of a long prompt, and prompt
syntax problems reaching the user as warnings."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from webui.models.embeddings import EmbeddingLibrary
from webui.errors import UserError
from webui.metadata.infotext import parse_infotext
from webui.serving.service import Service
from webui.settings import Settings

PROMPT = "portrait of an old sailor"


@pytest.fixture(scope="module")
def webui_root(tiny_models, tmp_path_factory) -> Path:
    """An A1111 install: models/ and, next to it, embeddings/."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("a1111")
    (root / "models" / "Stable-diffusion").mkdir(parents=True)
    shutil.copy(tiny_models["sd1"].file, root / "models" / "Stable-diffusion" / "tiny.safetensors")
    (root / "embeddings").mkdir()
    (root / "models" / "embeddings").mkdir()
    g = torch.Generator().manual_seed(5)
    # A1111 .pt layout, 2 vectors of the tiny text encoder's width (32), strong enough to matter.
    torch.save({"string_to_param": {"*": 3 * torch.randn(2, 32, generator=g)}, "name": "sailorStyle"},
               root / "embeddings" / "sailorStyle.pt")
    save_file({"emb_params": 3 * torch.randn(1, 32, generator=g)}, str(root / "models" / "embeddings" / "badHands.safetensors"))
    save_file({"emb_params": torch.randn(1, 768, generator=g)}, str(root / "embeddings" / "wideOne.safetensors"))
    return root


@pytest.fixture(scope="module")
def svc(webui_root, tmp_path_factory):
    s = Settings(models_dir=webui_root / "models", outputs_dir=tmp_path_factory.mktemp("o"), device="cpu")
    return Service.create(s)


@pytest.fixture(scope="module")
def run(svc, memo_runner):
    return memo_runner(svc, seed=11, prompt=PROMPT)


def differs(a, b) -> int:
    return int(np.abs(np.asarray(a.images[0], np.int16) - np.asarray(b.images[0], np.int16)).max())


def test_embedding_changes_the_image_and_is_recorded(svc, run, webui_root, tmp_path):
    used = run(f"{PROMPT}, sailorStyle")
    library = svc.manager.embeddings
    try:
        svc.manager.embeddings = EmbeddingLibrary([tmp_path])  # same prompt, no embedding files
        as_text = svc.generate(svc.request(dict(prompt=f"{PROMPT}, sailorStyle", negative_prompt="blurry",
                                                seed=11, steps=1, width=64, height=64, sampler_name="Euler",
                                                save_images=False)))
    finally:
        svc.manager.embeddings = library
    assert differs(used, as_text) > 10
    sha = hashlib.sha256((webui_root / "embeddings" / "sailorStyle.pt").read_bytes()).hexdigest()
    assert parse_infotext(used.infotexts[0])["TI hashes"] == f"sailorStyle: {sha[:12]}"
    assert "TI hashes" not in parse_infotext(as_text.infotexts[0])


def test_embedding_in_negative_prompt_from_models_embeddings(run, webui_root):
    r = run(PROMPT, negative_prompt="blurry, badHands")
    assert differs(r, run()) > 5
    sha = hashlib.sha256((webui_root / "models" / "embeddings" / "badHands.safetensors").read_bytes()).hexdigest()
    assert parse_infotext(r.infotexts[0])["TI hashes"] == f"badHands: {sha[:12]}"


def test_embedding_of_another_width_is_a_warning(run):
    r = run(f"{PROMPT}, wideOne")
    assert any("wideOne" in w and "does not fit" in w for w in r.warnings), r.warnings
    assert "TI hashes" not in parse_infotext(r.infotexts[0])


def test_embedding_cache_follows_the_file(tmp_path):
    path = tmp_path / "look.pt"
    torch.save({"string_to_param": {"*": torch.ones(1, 32)}}, path)
    lib = EmbeddingLibrary([tmp_path / "missing", tmp_path])
    first = lib.for_texts(["a look"])[0]["look"]
    assert lib.for_texts(["the look again"])[0]["look"] is first  # not reloaded
    assert lib.for_texts(["nothing here"])[0] == {}
    torch.save({"string_to_param": {"*": torch.zeros(1, 32)}}, path)
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    assert torch.equal(lib.for_texts(["look"])[0]["look"].vectors["clip"], torch.zeros(1, 32))


def test_default_embedding_folders_follow_a1111():
    s = Settings(models_dir=Path("/data/sd/models"))
    assert s.embedding_dirs == [Path("/data/sd/embeddings"), Path("/data/sd/models/embeddings")]
    assert Settings(embeddings_dir=Path("/x")).embedding_dirs == [Path("/x")]


def test_clip_skip_two_changes_the_image_and_is_recorded(run):
    one, two = run(), run(clip_skip=2)
    assert differs(one, two) > 5
    assert parse_infotext(two.infotexts[0])["Clip skip"] == "2"
    assert "Clip skip" not in parse_infotext(one.infotexts[0])


def test_clip_skip_beyond_the_model_is_a_user_error(svc):
    with pytest.raises(UserError, match="Clip skip must be between 1 and 4"):
        svc.generate(svc.request(dict(prompt="x", clip_skip=12, steps=1, width=64, height=64, save_images=False)))


def test_second_chunk_of_a_long_prompt_changes_the_image(run):
    head = "portrait of a woman, " + "detailed skin, " * 30  # > 75 tokens: the tail is in chunk 2
    a, b = run(head + "red scarf, smiling"), run(head + "green hat, frowning")
    assert differs(a, b) > 5


def test_prompt_syntax_problems_reach_the_user(run):
    r = run("portrait (dramatic light, (face:abc)")
    assert any("never closed" in w for w in r.warnings)
    assert any("'abc'" in w and "not a number" in w for w in r.warnings)
    assert r.images  # still generated
