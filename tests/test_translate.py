import io
import json
import re
from pathlib import Path

import pytest

import webui.prompts.marian as marian
import webui.prompts.translate as tr
from webui.errors import UserError
from webui.prompts.cjk_text import has_cjk, normalize_punctuation
from webui.prompts.glossary import GlossaryTranslator, load_glossary
from webui.prompts.marian import MarianTranslator, find_cached_marian
from webui.prompts.translate import TranslationResult, make_translator, translate_prompt


@pytest.fixture(scope="module")
def glossary():
    return GlossaryTranslator()


def test_has_cjk():
    assert has_cjk("红色头发")
    assert has_cjk("1girl, 长发")
    assert has_cjk("かわいい")
    assert not has_cjk("1girl, long hair, (smile:1.2)")
    assert not has_cjk("")
    assert not has_cjk("，（）：")  # full-width punctuation alone is not text to translate


def test_glossary_size_and_values():
    entries = load_glossary()
    assert len(entries) >= 300
    for zh, (en, pos) in entries.items():
        assert has_cjk(zh), zh
        assert en and en.isascii() and en == en.strip(), zh
        assert not re.search(r"[()\[\]<>:|{}]", en), zh
        assert pos in {"noun", "tag", "adj", "verb"}
    for word in ["工笔", "水墨", "国风", "汉服", "旗袍", "逆光", "伦勃朗光", "浅景深", "双马尾",
                 "丹凤眼", "雀斑", "微笑", "丝绸", "发簪", "回眸", "半身", "黄金时刻", "竹林",
                 "秋天", "赛璐璐", "二次元"]:
        assert word in entries, word


def test_glossary_duplicate_keys_are_rejected(tmp_path):
    bad = tmp_path / "g.json"
    bad.write_text(
        json.dumps({"sections": [
            {"name": "a", "pos": "noun", "entries": {"猫": "cat"}},
            {"name": "b", "pos": "noun", "entries": {"猫": "kitty"}},
        ]}, ensure_ascii=False),
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="猫"):
        load_glossary(bad)


@pytest.mark.parametrize(
    "zh, en",
    [
        ("一个穿着红色汉服的女孩，长发，微笑", "1girl, wearing red hanfu, long hair, smile"),
        ("红色和白色的汉服", "red and white hanfu"),
        ("两个女孩, 樱花, 春天", "2girls, cherry blossoms, spring"),
        ("一位美丽的女人", "a beautiful woman"),
        ("穿着白色连衣裙的女人站在海边", "woman, wearing white dress, standing by the sea"),
        ("站在花海中", "standing in field of flowers"),
        ("20岁女性，85毫米镜头", "20 years old, woman, 85mm lens"),
        ("工笔画，穿着旗袍的女人坐在窗边，手持团扇",
         "gongbi painting, woman, wearing qipao, sitting by the window, holding round silk fan"),
        ("水墨画，留白，一位身穿汉服的男子，竹林，薄雾",
         "ink wash painting, negative space, a man, wearing hanfu, bamboo forest, mist"),
        ("逆光，浅景深，金色长发，蓝眼睛", "backlighting, shallow depth of field, golden long hair, blue eyes"),
        ("伦勃朗光，黑色背景，半身像", "rembrandt lighting, black background, upper body portrait"),
        ("二次元，双马尾，水手服，赛璐璐", "anime style, twintails, sailor uniform, cel shading"),
        ("国风，古风少女，发簪，步摇", "guofeng, chinese style, ancient chinese style, girl, hairpin, dangling hairpin"),
    ],
)
def test_glossary_sample_prompts(glossary, zh, en):
    result = translate_prompt(zh, glossary)
    assert result.english == en
    assert result.warnings == []
    assert result.original == zh and result.changed


def test_syntax_is_preserved(glossary):
    text = "(红色头发:1.3), <lora:名字:0.8>, BREAK, 1girl, [猫:狗:0.5], 8K, \\(微笑\\), __发型__ AND 长发"
    r = translate_prompt(text, glossary)
    assert r.english == (
        "(red hair:1.3), <lora:名字:0.8>, BREAK, 1girl, [cat:dog:0.5], 8K, \\(smile\\), __发型__ AND long hair"
    )
    assert r.warnings == []


def test_mixed_chinese_english_and_syntax(glossary):
    text = "masterpiece, best quality, (一个穿着旗袍的女人:1.2), 85mm, f/1.8, 柔光BREAK逆光, 3D渲染, <lora:detail_tweaker:0.5>"
    r = translate_prompt(text, glossary)
    assert r.english == (
        "masterpiece, best quality, (a woman, wearing qipao:1.2), 85mm, f/1.8, "
        "soft light BREAK backlighting, 3D render, <lora:detail_tweaker:0.5>"
    )


def test_full_width_punctuation():
    assert normalize_punctuation("（红色头发：1.3），长发") == "(红色头发:1.3), 长发"
    assert normalize_punctuation("<lora：名字：1>，x") == "<lora：名字：1>, x"  # tags untouched
    r = translate_prompt("（red hair：1.3），【smile】", GlossaryTranslator())
    assert r.english == "(red hair:1.3), [smile]" and r.warnings == []


def test_unknown_words_are_kept_and_reported(glossary):
    # 𠀾 (a rare Extension B character) is in neither the glossary nor CC-CEDICT.
    r = translate_prompt("长发，𠀾，微笑", glossary)
    assert r.english == "long hair, 𠀾, smile"
    assert len(r.warnings) == 1 and "𠀾" in r.warnings[0]


def test_english_only_is_untouched(glossary):
    text = "1girl, (long hair:1.2), <lora:x:1>"
    assert translate_prompt(text, glossary) == TranslationResult(text, text, [])


def test_translation_off_passes_through():
    assert make_translator("off") is None
    r = translate_prompt("（红色头发：1.3）", None)
    assert r.english == r.original and r.warnings == []


class _Fake:
    def __init__(self, table):
        self.table = table
        self.calls = []

    def translate(self, text):
        self.calls.append(text)
        value = self.table[text]
        if isinstance(value, Exception):
            raise value
        return value


def test_empty_output_falls_back_with_warning():
    fake = _Fake({"红色头发": "", "微笑": "Smile."})
    r = translate_prompt("(红色头发:1.3), 微笑, 微笑", fake)
    assert r.english == "(红色头发:1.3), Smile, Smile"
    assert len(r.warnings) == 1 and "红色头发" in r.warnings[0]
    assert fake.calls == ["红色头发", "微笑"]  # each distinct run translated once


def test_whole_output_empty_falls_back_to_original():
    r = translate_prompt("长发，微笑", _Fake({"长发": " ", "微笑": "..."}))
    assert r.english == "长发, 微笑"
    assert len(r.warnings) == 2


def test_translator_error_keeps_prompt():
    r = translate_prompt("长发", _Fake({"长发": RuntimeError("model broke")}))
    assert r.english == "长发" and "model broke" in r.warnings[0]


def test_translator_output_cannot_break_syntax():
    fake = _Fake({"红色头发": "Red (hair): [x] <y> | z AND w\n", "长发": "long hair"})
    r = translate_prompt("(红色头发:1.3), 长发BREAK", fake)
    assert r.english == "(Red hair x y z and w:1.3), long hair BREAK"


def test_extra_glossary_entries():
    g = GlossaryTranslator(extra={"小红": "Xiao Hong", "发光的": ("glowing", "adj")})
    assert translate_prompt("小红，长发", g).english == "Xiao Hong, long hair"


# ---------------------------------------------------------------------------------------------
# MarianMT seam with a tiny random-weight model built offline


SRC_LINES = [
    "一个穿着红色汉服的女孩", "长发，微笑", "红色头发", "工笔画 水墨 国风 旗袍", "逆光 柔光 人像摄影",
    "蓝色的眼睛 白色连衣裙", "女人坐在窗边",
]
TGT_LINES = [
    "a girl wearing red hanfu", "long hair, smile", "red hair", "gongbi ink wash chinese style qipao",
    "backlight soft light portrait photography", "blue eyes white dress", "a woman sitting by the window",
]


def _train_spm(lines, path: Path) -> None:
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines * 3), model_writer=buf, vocab_size=48, model_type="unigram",
        character_coverage=1.0, hard_vocab_limit=False, bos_id=-1, eos_id=-1, unk_id=0, pad_id=-1,
        minloglevel=2,
    )
    path.write_bytes(buf.getvalue())


def _build_tiny_marian(folder: Path) -> Path:
    pytest.importorskip("sentencepiece")
    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel

    folder.mkdir(parents=True, exist_ok=True)
    _train_spm(SRC_LINES, folder / "source.spm")
    _train_spm(TGT_LINES, folder / "target.spm")
    vocab = {"</s>": 0, "<unk>": 1}
    for name in ("source.spm", "target.spm"):
        sp = spm.SentencePieceProcessor(model_file=str(folder / name))
        for i in range(sp.get_piece_size()):
            vocab.setdefault(sp.id_to_piece(i), len(vocab))
    vocab["<pad>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    torch.manual_seed(0)
    config = MarianConfig(
        vocab_size=len(vocab), d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_ffn_dim=32, max_position_embeddings=128, pad_token_id=vocab["<pad>"],
        eos_token_id=0, decoder_start_token_id=vocab["<pad>"], forced_eos_token_id=0,
    )
    model = MarianMTModel(config)
    with torch.no_grad():  # never stop at once, so the output is never empty
        model.final_logits_bias[0, 0] = -1e4
    model.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_marian(tmp_path_factory):
    return _build_tiny_marian(tmp_path_factory.mktemp("marian") / "opus-mt-tiny")


def test_marian_seam(tiny_marian):
    t = make_translator(str(tiny_marian))
    assert isinstance(t, MarianTranslator) and not t.loaded  # lazy
    text = "(红色头发:1.3), <lora:名字:0.8>, BREAK, 1girl, 一个穿着汉服的女孩，微笑, 85mm"
    r = translate_prompt(text, t)
    assert t.loaded
    m = re.fullmatch(
        r"\(([^()<>:|\[\]]+):1\.3\), <lora:名字:0\.8>, BREAK, 1girl, ([^()<>:|\[\]]+), ([^()<>:|\[\]]+), 85mm",
        r.english,
    )
    assert m, r.english
    outside = r.english.replace("<lora:名字:0.8>", "")
    fallbacks = [w for w in r.warnings if "kept as typed" in w]
    if not fallbacks:
        assert outside.isascii(), r.english
    # Same run, same output (greedy, cached); batch and single calls agree.
    assert t.translate("红色头发") == t.translate_many(["红色头发"])[0]
    assert t.translate("") == ""


def test_marian_folder_checks(tmp_path, tiny_marian):
    with pytest.raises(UserError, match="does not exist"):
        MarianTranslator(tmp_path / "nope")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(UserError, match="source.spm"):
        MarianTranslator(tmp_path / "half")
    with pytest.raises(UserError, match="Unknown translation setting"):
        make_translator("klingon")


def test_find_cached_marian_uses_local_cache_only(tmp_path, tiny_marian):
    assert find_cached_marian(cache_dir=tmp_path / "empty") is None
    # Lay the tiny model out as the Hugging Face cache does.
    repo = tmp_path / "hub" / "models--Helsinki-NLP--opus-mt-zh-en"
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    for f in tiny_marian.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    found = find_cached_marian(cache_dir=tmp_path / "hub")
    assert found == snap


def test_make_translator_choices(monkeypatch, tiny_marian):
    assert isinstance(make_translator("glossary"), GlossaryTranslator)
    monkeypatch.setattr(tr, "find_cached_marian", lambda *a, **k: None)
    assert isinstance(make_translator("auto"), GlossaryTranslator)
    assert isinstance(make_translator(None), GlossaryTranslator)
    with pytest.raises(UserError, match="No MarianMT model"):
        make_translator("marian")
    monkeypatch.setattr(tr, "find_cached_marian", lambda *a, **k: tiny_marian)
    assert isinstance(make_translator("auto"), MarianTranslator)
    assert isinstance(make_translator("marian"), MarianTranslator)


def test_to_ascii():
    assert marian._to_ascii("Café “déjà vu” – 红") == 'Cafe "deja vu" -'


# ---------------------------------------------------------------------------------------------
# UI strings


def test_i18n_tables():
    from webui import i18n

    assert i18n.EN.keys() == i18n.ZH.keys()
    assert len(i18n.EN) >= 80
    for key in i18n.EN:
        assert re.fullmatch(r"[a-z0-9_]+", key) and key not in i18n.GRADIO_RESERVED_KEYS
        assert i18n.EN[key].strip() and i18n.ZH[key].strip()
        assert has_cjk(i18n.ZH[key]) or i18n.ZH[key] in {"VAE", "SD VAE", "ControlNet", "LoRA"}, key
    for key in ["tab_txt2img", "tab_img2img", "tab_inpaint", "tab_extras", "tab_png_info",
                "tab_history", "tab_settings", "prompt", "negative_prompt", "generate",
                "interrupt", "skip", "steps", "cfg_scale", "seed", "sampler", "scheduler",
                "width", "height", "batch_count", "batch_size", "checkpoint", "refresh",
                "presets", "styles", "denoising_strength", "mask_blur", "masked_content",
                "inpaint_area", "hires_fix", "hr_scale", "hr_upscaler", "face_detail",
                "demo_model_notice", "translated_prompt"]:
        assert key in i18n.EN, key
    assert i18n.I18N.translations_dict["zh"]["generate"] == "生成"
    assert str(i18n.t("generate")).startswith("__i18n__")
    assert i18n.text("generate", "zh-CN") == "生成" and i18n.text("generate", "fr") == "Generate"
    with pytest.raises(KeyError):
        i18n.t("no_such_key")
