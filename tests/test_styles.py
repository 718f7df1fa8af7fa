import pytest

from webui.errors import UserError
from webui.prompts.style_files import find_styles_files, load_style_library, load_styles_csv, parse_styles_csv
from webui.prompts.styles import (
    BUILTIN_STYLES,
    Style,
    StyleLibrary,
    apply_styles,
    merge_template,
    styles_to_api,
)


def test_placeholder_and_append():
    assert merge_template("{prompt}, oil painting", "a girl") == "a girl, oil painting"
    assert merge_template("portrait of {prompt}, soft light", "a girl") == "portrait of a girl, soft light"
    assert merge_template("oil painting", "a girl") == "a girl, oil painting"
    assert merge_template("oil painting", "") == "oil painting"
    assert merge_template("{prompt}, oil painting", "") == "oil painting"
    assert merge_template("portrait of {prompt}, soft light", "") == "portrait of, soft light"
    assert merge_template("", "a girl") == "a girl"


def test_styles_apply_in_selected_order():
    a = Style("A", "A1, {prompt}, A2", "nA")
    b = Style("B", "B1", "{prompt}, nB")
    c = Style("C", "C1 {prompt}", "")
    p, n = apply_styles("girl", "bad", [a, b, c])
    assert p == "C1 A1, girl, A2, B1"
    assert n == "bad, nA, nB"
    p2, n2 = apply_styles("girl", "bad", [c, b, a])
    assert p2 == "A1, C1 girl, B1, A2"
    assert n2 == "bad, nB, nA"


def test_empty_negative_gets_no_leading_comma():
    _, n = apply_styles("x", "", [Style("A", "", "lowres"), Style("B", "", "blurry")])
    assert n == "lowres, blurry"


def test_apply_by_name_and_unknown():
    p, n = apply_styles("a woman", "", ["Gongbi"])
    assert p.startswith("a woman, Chinese gongbi painting")
    assert "photograph" in n
    with pytest.raises(UserError, match="Unknown style"):
        apply_styles("x", "", ["Nope"])


def test_builtin_styles():
    names = [s.name for s in BUILTIN_STYLES]
    assert len(names) == len(set(names)) >= 12
    for s in BUILTIN_STYLES:
        assert s.name_zh and s.prompt and s.negative_prompt
        assert "{prompt}" in s.prompt
        for ch in "()[]<>:|":
            assert ch not in s.prompt and ch not in s.negative_prompt, (s.name, ch)


def test_library_lookup():
    lib = StyleLibrary(BUILTIN_STYLES)
    assert lib.get("gongbi").name == "Gongbi"
    assert lib.get("水墨").name == "Ink Wash"
    assert "Ink Wash" in lib and "nope" not in lib


CSV_TEXT = (
    "name,prompt,negative_prompt\n"
    '"Dreamy","{prompt}, soft focus, pastel colors","harsh, gritty"\n'
    '"Comma, Name","a, b, c",""\n'
    '"Multi","line one\nline two, {prompt}","neg one\nneg two"\n'
    "Plain,simple text,\n"
    'Broken,"never closed,neg\n'
    "After,after broken,n\n"
    '"Junk"x,p,n\n'
    "Short\n"
    "TooMany,a,b,c\n"
    '"Quoted","say ""cheese"", {prompt}",n\n'
    "\n"
    ",no name,n\n"
)


def test_csv_import_with_quotes_and_broken_rows():
    styles, problems = parse_styles_csv(CSV_TEXT, "styles.csv")
    by = {s.name: s for s in styles}
    assert list(by) == ["Dreamy", "Comma, Name", "Multi", "Plain", "After", "Quoted"]
    assert by["Comma, Name"].prompt == "a, b, c"
    assert by["Multi"].prompt == "line one\nline two, {prompt}"
    assert by["Multi"].negative_prompt == "neg one\nneg two"
    assert by["Plain"].negative_prompt == ""
    assert by["Quoted"].prompt == 'say "cheese", {prompt}'
    assert by["Dreamy"].source == "styles.csv:2"
    def line_of(fragment: str) -> int:
        return CSV_TEXT[: CSV_TEXT.index(fragment)].count("\n") + 1

    text = "\n".join(problems)
    # The stray quote on the "Broken" row runs on until the quote of "Junk": the row where it
    # opened is reported, the rows it swallowed are read again.
    assert f"styles.csv, line {line_of('Broken,')}: unexpected text after a closing quote" in text
    junk_line = line_of('"Junk"')
    assert f"styles.csv, line {junk_line}:" in text  # junk after a closing quote
    assert f"styles.csv, line {line_of('Short')}:" in text and "missing" in text
    assert f"styles.csv, line {line_of('TooMany')}:" in text  # a comma that needed quotes
    assert f"styles.csv, line {line_of(',no name')}:" in text and "no name" in text
    assert len(problems) == 5
    p, n = apply_styles("girl", "", [by["Multi"], by["Dreamy"]])
    assert p == "line one\nline two, girl, soft focus, pastel colors"
    assert n == "neg one\nneg two, harsh, gritty"


def test_csv_header_variants(tmp_path):
    f = tmp_path / "styles.csv"
    f.write_text("\ufeffname,text\nOld,old style\n", encoding="utf-8")
    styles, problems = load_styles_csv(f)
    assert problems == [] and styles[0].prompt == "old style" and styles[0].negative_prompt == ""
    f.write_text("title,prompt\nx,y\n", encoding="utf-8")
    styles, problems = load_styles_csv(f)
    assert styles == [] and "styles.csv, line 1" in problems[0] and "name" in problems[0]
    f.write_bytes(b"name,prompt\n\xff\xfe,x\n")
    styles, problems = load_styles_csv(f)
    assert styles == [] and "UTF-8" in problems[0]


def test_crlf_line_endings():
    styles, problems = parse_styles_csv('name,prompt,negative_prompt\r\nA,"x\r\ny",n\r\nB,b,\r\n')
    assert problems == [] and [s.name for s in styles] == ["A", "B"]
    assert styles[0].prompt == "x\r\ny"


def test_library_from_places(tmp_path):
    models = tmp_path / "models"
    work = tmp_path / "work"
    models.mkdir()
    work.mkdir()
    (models / "styles.csv").write_text("name,prompt,negative_prompt\nMine,{prompt}, mine,\nGongbi,override,\n", encoding="utf-8")
    (work / "styles.csv").write_text('name,prompt,negative_prompt\nWork,work,\nBad,"oops\n', encoding="utf-8")
    (work / "styles-extra.csv").write_text("name,prompt,negative_prompt\nExtra,extra,\n", encoding="utf-8")
    files = find_styles_files([models, work, tmp_path / "missing", work / "styles.csv"])
    assert [f.name for f in files] == ["styles.csv", "styles.csv", "styles-extra.csv"]
    lib = load_style_library([models, work])
    assert {"Mine", "Work", "Extra"} <= set(lib.names())
    assert lib.get("Gongbi").prompt == "override"  # file overrides built-in
    assert len(lib.problems) == 1 and lib.problems[0].startswith("styles.csv, line 3")
    api = lib.to_api()
    assert {"name": "Work", "prompt": "work", "negative_prompt": ""} in api
    assert all(set(item) == {"name", "prompt", "negative_prompt"} for item in api)


def test_styles_to_api_shape():
    assert styles_to_api([Style("A", "p", "n")]) == [{"name": "A", "prompt": "p", "negative_prompt": "n"}]
