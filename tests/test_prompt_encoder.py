"""Prompt encoding against tiny random CLIP text encoders (no downloads).

The reference values come from diffusers' own ``encode_prompt`` and from the A1111 formulas
computed here independently.
"""

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from webui.models.embeddings import Embedding, load_embedding, load_embeddings_dir
from webui.errors import UserError
from webui.prompts.prompt_chunks import CHUNK_LENGTH, tokenize_prompt
from webui.prompts.prompt_encoder import encode_prompts

SHIPPED_TOKENIZER = Path(__file__).resolve().parents[1] / "webui" / "configs" / "clip_tokenizer"
# Words the fallback vocab merges into single tokens, like the real CLIP vocab does.
WORDS = ["the", "cat", "dog", "red", "hat", "photo", "blue", "sky", "woman", "smile"]
CPU = torch.device("cpu")


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


def _bytes_to_unicode():
    """GPT-2/CLIP byte -> printable character table."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def _write_small_vocab(folder: Path) -> None:
    chars = _bytes_to_unicode()
    vocab = chars + [c + "</w>" for c in chars]
    merges = []
    for word in WORDS:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        current = pieces[0]
        for piece in pieces[1:]:
            merge = (current, piece)
            current = current + piece
            if merge not in merges:
                merges.append(merge)
                vocab.append(current)
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    if (SHIPPED_TOKENIZER / "vocab.json").is_file() and (SHIPPED_TOKENIZER / "merges.txt").is_file():
        return SHIPPED_TOKENIZER
    folder = tmp_path_factory.mktemp("clip_tokenizer")
    _write_small_vocab(folder)
    return folder


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    return CLIPTokenizer.from_pretrained(str(tokenizer_dir), model_max_length=77)


@pytest.fixture(scope="session")
def tokenizer_2(tokenizer_dir):
    # SDXL's second tokenizer pads with "!" (id 0) instead of <|endoftext|>.
    return CLIPTokenizer.from_pretrained(str(tokenizer_dir), model_max_length=77, pad_token="!")


def _config(tok, hidden, layers=3, **extra):
    return CLIPTextConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=1,
        **extra,
    )


@pytest.fixture(scope="session")
def text_encoder(tokenizer):
    torch.manual_seed(0)
    return CLIPTextModel(_config(tokenizer, 32, layers=4)).eval()


@pytest.fixture(scope="session")
def sdxl_encoders(tokenizer):
    torch.manual_seed(1)
    te1 = CLIPTextModel(_config(tokenizer, 32, layers=3)).eval()
    te2 = CLIPTextModelWithProjection(_config(tokenizer, 48, layers=4, projection_dim=24)).eval()
    return te1, te2


@pytest.fixture(scope="session")
def sd_pipe(tokenizer, text_encoder):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=None,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=None,
        scheduler=None,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


@pytest.fixture(scope="session")
def sdxl_pipe(tokenizer, tokenizer_2, sdxl_encoders):
    from diffusers import StableDiffusionXLPipeline

    te1, te2 = sdxl_encoders
    return StableDiffusionXLPipeline(
        vae=None,
        text_encoder=te1,
        text_encoder_2=te2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=None,
        scheduler=None,
    )


def encode_sd(tokenizer, text_encoder, prompts, negatives=None, **kw):
    negatives = negatives if negatives is not None else [""] * len(prompts)
    return encode_prompts([tokenizer], [text_encoder], prompts, negatives, **kw)


def encode_xl(tokenizer, tokenizer_2, encoders, prompts, negatives=None, **kw):
    negatives = negatives if negatives is not None else [""] * len(prompts)
    return encode_prompts([tokenizer, tokenizer_2], list(encoders), prompts, negatives, sdxl=True, **kw)


def ids_of(tokenizer, text):
    return tokenizer(text, add_special_tokens=False).input_ids


def chunk_ids(tokenizer, tokens):
    """BOS + tokens + EOS + pad, 77 long."""
    assert len(tokens) <= 75
    return [tokenizer.bos_token_id, *tokens, tokenizer.eos_token_id] + [tokenizer.pad_token_id] * (75 - len(tokens))


# --------------------------------------------------------------------------------------------
# SD1.x / SD2.x path
# --------------------------------------------------------------------------------------------


def test_plain_prompt_matches_diffusers(tokenizer, text_encoder, sd_pipe):
    ref_pos, ref_neg = sd_pipe.encode_prompt("a photo of the red cat", CPU, 1, True, negative_prompt="blue sky, dog")
    enc = encode_sd(tokenizer, text_encoder, ["a photo of the red cat"], ["blue sky, dog"])
    assert enc.prompt_embeds.shape == (1, 77, 32)
    torch.testing.assert_close(enc.prompt_embeds, ref_pos, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(enc.negative_prompt_embeds, ref_neg, rtol=1e-6, atol=1e-6)
    assert enc.pooled_prompt_embeds is None and enc.negative_pooled_prompt_embeds is None
    assert enc.warnings == [] and enc.used_embeddings == {} and enc.chunks == 1


def test_weight_one_is_a_noop(tokenizer, text_encoder):
    plain = encode_sd(tokenizer, text_encoder, ["the red cat"]).prompt_embeds
    weighted = encode_sd(tokenizer, text_encoder, ["(the red cat:1.0)"]).prompt_embeds
    assert torch.equal(plain, weighted)


def test_weighted_prompt_follows_a1111_formula(tokenizer, text_encoder):
    prompt = "a (red:1.5) [hat] cat"
    tokens, weights = [], []
    for text, weight in [("a ", 1.0), ("red", 1.5), (" ", 1.0), ("hat", 1 / 1.1), (" cat", 1.0)]:
        piece = ids_of(tokenizer, text)
        tokens += piece
        weights += [weight] * len(piece)
    ids = torch.tensor([chunk_ids(tokenizer, tokens)])
    w = torch.tensor([1.0, *weights, 1.0] + [1.0] * (75 - len(weights)))
    with torch.no_grad():
        z = text_encoder(ids).last_hidden_state[0]
    expected = z * w[:, None]
    expected = expected * (z.mean() / expected.mean())

    got = encode_sd(tokenizer, text_encoder, [prompt]).prompt_embeds[0]
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, z)
    # The chunker gives the same ids and weights.
    chunk_tokens, chunk_weights = tokenize_prompt(tokenizer, prompt)
    assert chunk_tokens == [ids[0].tolist()]
    assert chunk_weights[0] == pytest.approx(w.tolist())


def test_clip_skip_2_is_final_norm_of_penultimate(tokenizer, text_encoder):
    ids = tokenizer("the red cat", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        out = text_encoder(ids, output_hidden_states=True)
        expected = text_encoder.final_layer_norm(out.hidden_states[-2])
        expected_3 = text_encoder.final_layer_norm(out.hidden_states[-3])
    enc = encode_sd(tokenizer, text_encoder, ["the red cat"], clip_skip=2)
    torch.testing.assert_close(enc.prompt_embeds, expected)
    empty = encode_sd(tokenizer, text_encoder, [""], clip_skip=2).prompt_embeds
    torch.testing.assert_close(enc.negative_prompt_embeds, empty)
    skip_3 = encode_sd(tokenizer, text_encoder, ["the red cat"], clip_skip=3).prompt_embeds
    torch.testing.assert_close(skip_3, expected_3)
    assert not torch.allclose(enc.prompt_embeds, encode_sd(tokenizer, text_encoder, ["the red cat"]).prompt_embeds)


def test_clip_skip_out_of_range(tokenizer, text_encoder):
    with pytest.raises(UserError):
        encode_sd(tokenizer, text_encoder, ["x"], clip_skip=5)  # 4 layers
    with pytest.raises(UserError):
        encode_sd(tokenizer, text_encoder, ["x"], clip_skip=0)


def test_long_prompt_uses_two_chunks(tokenizer, text_encoder, sd_pipe):
    head = " ".join(["cat"] * 75)
    prompt_a = head + " " + " ".join(["dog"] * 25)
    prompt_b = head + " " + " ".join(["red"] * 25)
    assert len(ids_of(tokenizer, prompt_a)) == 100
    enc = encode_sd(tokenizer, text_encoder, [prompt_a, prompt_b])
    assert enc.prompt_embeds.shape == (2, 154, 32)
    assert enc.chunks == 2
    # The first chunk is what truncation gives; the second chunk carries the rest of the prompt.
    truncated, _ = sd_pipe.encode_prompt(prompt_a, CPU, 1, False)
    torch.testing.assert_close(enc.prompt_embeds[0, :77], truncated[0])
    torch.testing.assert_close(enc.prompt_embeds[0, :77], enc.prompt_embeds[1, :77])
    assert not torch.allclose(enc.prompt_embeds[0, 77:], enc.prompt_embeds[1, 77:])
    # The second chunk is the rest encoded on its own.
    rest = encode_sd(tokenizer, text_encoder, [" ".join(["dog"] * 25)]).prompt_embeds
    torch.testing.assert_close(enc.prompt_embeds[0, 77:], rest[0])


def test_positive_and_negative_padded_to_same_chunks(tokenizer, text_encoder):
    long_prompt = " ".join(["cat"] * 100)
    enc = encode_sd(tokenizer, text_encoder, [long_prompt], ["dog"])
    assert enc.prompt_embeds.shape == enc.negative_prompt_embeds.shape == (1, 154, 32)
    short = encode_sd(tokenizer, text_encoder, ["dog"]).prompt_embeds
    empty = encode_sd(tokenizer, text_encoder, [""]).prompt_embeds
    torch.testing.assert_close(enc.negative_prompt_embeds[0, :77], short[0])
    torch.testing.assert_close(enc.negative_prompt_embeds[0, 77:], empty[0])
    # And the other way round.
    enc = encode_sd(tokenizer, text_encoder, ["dog"], [long_prompt])
    assert enc.prompt_embeds.shape == enc.negative_prompt_embeds.shape == (1, 154, 32)


def test_batch_padding_and_dedup(tokenizer, text_encoder):
    long_prompt = " ".join(["cat"] * 160)  # three chunks
    calls = []
    handle = text_encoder.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        enc = encode_sd(tokenizer, text_encoder, ["dog", long_prompt, "dog", "dog"], ["", "", "red", ""])
    finally:
        handle.remove()
    assert enc.prompt_embeds.shape == enc.negative_prompt_embeds.shape == (4, 231, 32)
    assert len(calls) == 1  # 6 unique chunks, one batched call
    assert torch.equal(enc.prompt_embeds[0], enc.prompt_embeds[2])
    single = encode_sd(tokenizer, text_encoder, ["dog"], ["red"])
    torch.testing.assert_close(enc.prompt_embeds[2, :77], single.prompt_embeds[0, :77])
    torch.testing.assert_close(enc.negative_prompt_embeds[2, :77], single.negative_prompt_embeds[0, :77])


def test_break_starts_a_new_chunk(tokenizer, text_encoder):
    enc = encode_sd(tokenizer, text_encoder, ["the red cat BREAK blue sky"])
    assert enc.prompt_embeds.shape == (1, 154, 32)
    first = encode_sd(tokenizer, text_encoder, ["the red cat"]).prompt_embeds[0]
    second = encode_sd(tokenizer, text_encoder, ["blue sky"]).prompt_embeds[0]
    torch.testing.assert_close(enc.prompt_embeds[0], torch.cat([first, second]))
    # A trailing BREAK adds nothing; BREAK BREAK leaves an empty chunk.
    assert encode_sd(tokenizer, text_encoder, ["the cat BREAK"]).chunks == 1
    assert encode_sd(tokenizer, text_encoder, ["the BREAK BREAK cat"]).chunks == 3


def test_comma_near_chunk_end_moves_phrase_to_next_chunk(tokenizer):
    comma = ids_of(tokenizer, ",")
    assert len(comma) == 1
    prompt = " ".join(["cat"] * 70) + ", " + " ".join(["dog"] * 10)
    chunks, _ = tokenize_prompt(tokenizer, prompt)
    assert len(chunks) == 2
    body = chunks[0][1 : chunks[0].index(tokenizer.eos_token_id)]
    assert body == ids_of(tokenizer, "cat") * 70 + comma  # the 4 dogs that fitted moved on
    assert chunks[1][1:11] == ids_of(tokenizer, "dog") * 10 and chunks[1][11] == tokenizer.eos_token_id
    # A comma further back than 20 tokens does not move anything.
    prompt = " ".join(["cat"] * 40) + ", " + " ".join(["dog"] * 40)
    chunks, _ = tokenize_prompt(tokenizer, prompt)
    assert chunks[0][1:76] == ids_of(tokenizer, "cat") * 40 + comma + ids_of(tokenizer, "dog") * 34


def test_lora_tags_are_not_encoded(tokenizer, text_encoder):
    plain = encode_sd(tokenizer, text_encoder, ["the cat"]).prompt_embeds
    tagged = encode_sd(tokenizer, text_encoder, ["the<lora:x:0.5> cat"]).prompt_embeds
    torch.testing.assert_close(plain, tagged)


def test_parser_warnings_are_returned(tokenizer, text_encoder):
    enc = encode_sd(tokenizer, text_encoder, ["(the cat", "(the cat"], ["dog)", "dog)"])
    assert len(enc.warnings) == 2  # one each, not repeated per image


def test_models_and_dtype_untouched(tokenizer, text_encoder):
    before = {k: v.clone() for k, v in text_encoder.state_dict().items()}
    enc = encode_sd(tokenizer, text_encoder, ["(the:1.3) cat"])
    assert enc.prompt_embeds.dtype == torch.float32 and not enc.prompt_embeds.requires_grad
    assert all(torch.equal(before[k], v) for k, v in text_encoder.state_dict().items())


# --------------------------------------------------------------------------------------------
# SDXL path
# --------------------------------------------------------------------------------------------


def test_sdxl_matches_diffusers(tokenizer, tokenizer_2, sdxl_encoders, sdxl_pipe):
    ref = sdxl_pipe.encode_prompt(
        "a photo of the red cat",
        device=CPU,
        num_images_per_prompt=1,
        do_classifier_free_guidance=True,
        negative_prompt="blue sky",
    )
    enc = encode_xl(tokenizer, tokenizer_2, sdxl_encoders, ["a photo of the red cat"], ["blue sky"])
    assert enc.prompt_embeds.shape == (1, 77, 80)
    assert enc.pooled_prompt_embeds.shape == (1, 24)
    got = [enc.prompt_embeds, enc.negative_prompt_embeds, enc.pooled_prompt_embeds, enc.negative_pooled_prompt_embeds]
    for got, want in zip(got, ref):
        torch.testing.assert_close(got, want)


def test_sdxl_clip_skip_and_pooled_from_first_chunk(tokenizer, tokenizer_2, sdxl_encoders):
    te1, te2 = sdxl_encoders
    prompt = "the red cat"
    ids1 = tokenizer(prompt, padding="max_length", max_length=77, return_tensors="pt").input_ids
    ids2 = tokenizer_2(prompt, padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert ids2[0, -1].item() == tokenizer_2.pad_token_id != tokenizer.pad_token_id
    with torch.no_grad():
        h1 = te1(ids1, output_hidden_states=True).hidden_states
        out2 = te2(ids2, output_hidden_states=True)
    enc = encode_xl(tokenizer, tokenizer_2, sdxl_encoders, [prompt], clip_skip=2)
    torch.testing.assert_close(enc.prompt_embeds[0], torch.cat([h1[-3], out2.hidden_states[-3]], dim=-1)[0])
    torch.testing.assert_close(enc.pooled_prompt_embeds, out2.text_embeds)
    with pytest.raises(UserError):
        encode_xl(tokenizer, tokenizer_2, sdxl_encoders, [prompt], clip_skip=3)  # te1 has 3 layers

    long_enc = encode_xl(tokenizer, tokenizer_2, sdxl_encoders, [prompt + " BREAK dog"], ["dog"])
    assert long_enc.prompt_embeds.shape == long_enc.negative_prompt_embeds.shape == (1, 154, 80)
    torch.testing.assert_close(long_enc.pooled_prompt_embeds, out2.text_embeds)


def test_sdxl_emphasis_per_encoder(tokenizer, tokenizer_2, sdxl_encoders):
    plain = encode_xl(tokenizer, tokenizer_2, sdxl_encoders, ["the red cat"]).prompt_embeds[0]
    weighted = encode_xl(tokenizer, tokenizer_2, sdxl_encoders, ["the (red:1.4) cat"])
    z = weighted.prompt_embeds[0]
    pos = 1 + len(ids_of(tokenizer, "the "))
    w = torch.ones(77)
    w[pos : pos + len(ids_of(tokenizer, "red"))] = 1.4
    for part in (slice(0, 32), slice(32, 80)):  # each encoder's own mean is restored
        base = plain[:, part] * w[:, None]
        torch.testing.assert_close(z[:, part], base * (plain[:, part].mean() / base.mean()))


# --------------------------------------------------------------------------------------------
# Textual inversion
# --------------------------------------------------------------------------------------------


def _embedding_from_words(name, tokenizer, encoders, words, keys):
    """An embedding whose vectors are the token embeddings of ``words`` (so its effect is known)."""
    ids = [ids_of(tokenizer, w)[0] for w in words]
    vectors = {
        key: enc.get_input_embeddings().weight[ids].detach().clone() for key, enc in zip(keys, encoders)
    }
    return Embedding(name=name, vectors=vectors, sha256_12="0123456789ab")


def test_embedding_splices_vectors_without_touching_models(tokenizer, text_encoder):
    emb = _embedding_from_words("RedHat", tokenizer, [text_encoder], ["red", "hat"], ["clip"])
    vocab_before = len(tokenizer)
    weights_before = text_encoder.get_input_embeddings().weight.clone()

    enc = encode_sd(tokenizer, text_encoder, ["a RedHat cat"], ["RedHat"], embeddings={"RedHat": emb})
    same = encode_sd(tokenizer, text_encoder, ["a red hat cat"], ["red hat"])
    torch.testing.assert_close(enc.prompt_embeds, same.prompt_embeds)
    torch.testing.assert_close(enc.negative_prompt_embeds, same.negative_prompt_embeds)
    assert enc.used_embeddings == {"RedHat": "0123456789ab"}
    assert len(tokenizer) == vocab_before
    assert torch.equal(text_encoder.get_input_embeddings().weight, weights_before)

    # Other vectors change the result; names match whole words, case-sensitively.
    other = Embedding("RedHat", {"clip": torch.randn(3, 32)}, "ffffffffffff")
    changed = encode_sd(tokenizer, text_encoder, ["a RedHat cat"], embeddings={"RedHat": other})
    assert not torch.allclose(changed.prompt_embeds, enc.prompt_embeds)
    for text in ["a redhat cat", "a RedHats cat", "a xRedHat cat"]:
        unused = encode_sd(tokenizer, text_encoder, [text], embeddings={"RedHat": other})
        assert unused.used_embeddings == {}
        torch.testing.assert_close(unused.prompt_embeds, encode_sd(tokenizer, text_encoder, [text]).prompt_embeds)


def test_embedding_with_weight_and_clip_skip(tokenizer, text_encoder):
    emb = _embedding_from_words("RedHat", tokenizer, [text_encoder], ["red", "hat"], ["clip"])
    for prompt, same in [("(RedHat:1.3), cat", "(red hat:1.3), cat"), ("the RedHat", "the red hat")]:
        enc = encode_sd(tokenizer, text_encoder, [prompt], clip_skip=2, embeddings={"RedHat": emb})
        ref = encode_sd(tokenizer, text_encoder, [same], clip_skip=2)
        torch.testing.assert_close(enc.prompt_embeds, ref.prompt_embeds)


def test_embedding_does_not_straddle_chunks(tokenizer, text_encoder):
    emb = _embedding_from_words("RedHat", tokenizer, [text_encoder], ["red", "hat"], ["clip"])
    prompt = " ".join(["cat"] * 74) + " RedHat"
    enc = encode_sd(tokenizer, text_encoder, [prompt], embeddings={"RedHat": emb})
    assert enc.chunks == 2
    second = encode_sd(tokenizer, text_encoder, ["red hat"]).prompt_embeds[0]
    torch.testing.assert_close(enc.prompt_embeds[0, 77:], second)


def test_embedding_wrong_size_is_plain_text_with_warning(tokenizer, text_encoder):
    wrong = Embedding("RedHat", {"clip": torch.randn(2, 768)}, "aaaaaaaaaaaa")
    enc = encode_sd(tokenizer, text_encoder, ["a RedHat cat"], embeddings={"RedHat": wrong})
    assert enc.used_embeddings == {}
    assert len(enc.warnings) == 1 and "RedHat" in enc.warnings[0] and "768" in enc.warnings[0]
    plain = encode_sd(tokenizer, text_encoder, ["a RedHat cat"])
    torch.testing.assert_close(enc.prompt_embeds, plain.prompt_embeds)
    # Not mentioned in the prompt: no warning.
    assert encode_sd(tokenizer, text_encoder, ["a cat"], embeddings={"RedHat": wrong}).warnings == []


def test_sdxl_embedding(tokenizer, tokenizer_2, sdxl_encoders):
    emb = _embedding_from_words("RedHat", tokenizer, sdxl_encoders, ["red", "hat"], ["clip_l", "clip_g"])
    vocab = (len(tokenizer), len(tokenizer_2))
    enc = encode_xl(tokenizer, tokenizer_2, sdxl_encoders, ["a RedHat cat"], ["RedHat"], embeddings={"RedHat": emb})
    same = encode_xl(tokenizer, tokenizer_2, sdxl_encoders, ["a red hat cat"], ["red hat"])
    torch.testing.assert_close(enc.prompt_embeds, same.prompt_embeds)
    torch.testing.assert_close(enc.pooled_prompt_embeds, same.pooled_prompt_embeds)
    torch.testing.assert_close(enc.negative_pooled_prompt_embeds, same.negative_pooled_prompt_embeds)
    assert enc.used_embeddings == {"RedHat": "0123456789ab"}
    assert (len(tokenizer), len(tokenizer_2)) == vocab
    # An SD1-style embedding does not fit SDXL.
    sd1 = Embedding("RedHat", {"clip": torch.randn(1, 32)}, "bbbbbbbbbbbb")
    enc = encode_xl(tokenizer, tokenizer_2, sdxl_encoders, ["a RedHat cat"], embeddings={"RedHat": sd1})
    assert enc.used_embeddings == {} and len(enc.warnings) == 1


@pytest.mark.parametrize("legacy_eos", [False, True])
def test_spliced_forward_matches_model_forward(tokenizer, legacy_eos):
    """The hand-run encoder (used with embeddings) equals CLIP's own forward, pooled output too."""
    torch.manual_seed(3)
    config = _config(tokenizer, 48, layers=2, projection_dim=16)
    if legacy_eos:
        config.eos_token_id = 2
    model = CLIPTextModelWithProjection(config).eval()
    emb = _embedding_from_words("X", tokenizer, [model], ["cat"], ["clip_g"])
    with_emb = encode_prompts([tokenizer], [model], ["the X"], [""], sdxl=True, embeddings={"X": emb})
    plain = encode_prompts([tokenizer], [model], ["the cat"], [""], sdxl=True)
    torch.testing.assert_close(with_emb.prompt_embeds, plain.prompt_embeds)
    torch.testing.assert_close(with_emb.pooled_prompt_embeds, plain.pooled_prompt_embeds)


# --------------------------------------------------------------------------------------------
# Embedding files
# --------------------------------------------------------------------------------------------


class NotAllowed:
    """Pickled objects of arbitrary classes must be refused."""

    def __init__(self):
        self.value = 1


def _sha12(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def test_load_a1111_pt(tmp_path):
    vec = torch.randn(3, 32)
    path = tmp_path / "myStyle.pt"
    data = {"string_to_param": {"*": torch.nn.Parameter(vec)}, "string_to_token": {"*": 265}, "name": "x", "step": 10}
    torch.save(data, path)
    emb = load_embedding(path)
    assert emb.name == "myStyle" and emb.num_vectors == 3
    assert torch.equal(emb.vectors["clip"], vec)
    assert emb.sha256_12 == _sha12(path)


def test_load_pt_with_parameter_dict(tmp_path):
    vec = torch.randn(2, 32)
    path = tmp_path / "old.pt"
    torch.save({"string_to_param": torch.nn.ParameterDict({"*": torch.nn.Parameter(vec)})}, path)
    assert torch.equal(load_embedding(path).vectors["clip"], vec)


def test_pt_with_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"string_to_param": {"*": torch.randn(1, 32)}, "payload": NotAllowed()}, path)
    with pytest.raises(UserError, match="pickled"):
        load_embedding(path)


def test_load_safetensors_variants(tmp_path):
    vec = torch.randn(2, 32)
    save_file({"emb_params": vec}, str(tmp_path / "a.safetensors"))
    save_file({"whatever": vec[0].contiguous()}, str(tmp_path / "b.safetensors"))
    save_file({"clip_l": torch.randn(2, 32), "clip_g": torch.randn(2, 48)}, str(tmp_path / "xl.safetensors"))
    a, b, xl = (load_embedding(tmp_path / f"{n}.safetensors") for n in ("a", "b", "xl"))
    assert torch.equal(a.vectors["clip"], vec) and a.sha256_12 == _sha12(tmp_path / "a.safetensors")
    assert b.vectors["clip"].shape == (1, 32)
    assert set(xl.vectors) == {"clip_l", "clip_g"} and xl.is_sdxl and xl.num_vectors == 2


def test_bad_files_raise_user_error(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    save_file({"a": torch.randn(2), "b": torch.randn(2)}, str(tmp_path / "two.safetensors"))
    (tmp_path / "notes.txt").write_text("x")
    for name in ["junk.safetensors", "two.safetensors", "notes.txt", "missing.pt"]:
        with pytest.raises(UserError):
            load_embedding(tmp_path / name)


def test_load_embeddings_dir(tmp_path):
    save_file({"emb_params": torch.randn(1, 32)}, str(tmp_path / "good.safetensors"))
    (tmp_path / "sub").mkdir()
    save_file({"emb_params": torch.randn(1, 32)}, str(tmp_path / "sub" / "good.safetensors"))
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    found, warnings = load_embeddings_dir(tmp_path)
    assert list(found) == ["good"]
    assert len(warnings) == 2
    assert str(tmp_path) not in " ".join(warnings)


def test_chunk_length_constant():
    assert CHUNK_LENGTH == 77
