"""A1111 prompt syntax: attention weights, escapes, BREAK, unbalanced brackets, LoRA tags."""

import pytest

from webui.prompts.prompt_parser import BREAK, extract_loras, is_break, parse_prompt, parse_weights


def approx_segments(segments):
    return [(text, pytest.approx(weight)) for text, weight in segments]


def test_plain_text_is_one_segment():
    assert parse_weights("a portrait of a woman, studio light") == [("a portrait of a woman, studio light", 1.0)]


def test_empty_prompt():
    assert parse_weights("") == [("", 1.0)]
    assert parse_prompt("").warnings == []


def test_round_brackets_multiply_by_1_1():
    assert parse_weights("a (smile) b") == approx_segments([("a ", 1.0), ("smile", 1.1), (" b", 1.0)])


def test_nested_round_brackets():
    assert parse_weights("((smile))") == approx_segments([("smile", 1.21)])
    assert parse_weights("(((x)))") == approx_segments([("x", 1.331)])


def test_explicit_weight():
    assert parse_weights("(red hair:1.3)") == approx_segments([("red hair", 1.3)])
    assert parse_weights("(red hair: 0.5 )") == approx_segments([("red hair", 0.5)])
    assert parse_weights("(x:0)") == [("x", 0.0)]
    assert parse_weights("(x:.5)") == [("x", 0.5)]


def test_square_brackets_divide_by_1_1():
    assert parse_weights("[blur]") == approx_segments([("blur", 1 / 1.1)])
    assert parse_weights("[[blur]]") == approx_segments([("blur", 1 / 1.21)])


def test_nesting_multiplies():
    assert parse_weights("(a (b:2) [c])") == approx_segments([("a ", 1.1), ("b", 2.2), (" ", 1.1), ("c", 1.0)])
    assert parse_weights("((a:1.5))") == approx_segments([("a", 1.65)])


def test_last_colon_is_the_weight():
    assert parse_weights("(a:1.2:1.3)") == approx_segments([("a:1.2", 1.3)])


def test_escapes_are_literal():
    assert parse_weights(r"\(a\) \[b\]") == [("(a) [b]", 1.0)]
    assert parse_weights(r"a\\b") == [("a\\b", 1.0)]
    assert parse_weights(r"(x \(y\))") == approx_segments([("x (y)", 1.1)])
    # A backslash before anything else stays a backslash.
    assert parse_weights(r"a\b") == [("a\\b", 1.0)]


def test_colon_outside_brackets_is_text():
    assert parse_weights("style: photo, ratio 1:2") == [("style: photo, ratio 1:2", 1.0)]


def test_equal_neighbours_merge():
    assert parse_weights("(a)(b)") == approx_segments([("ab", 1.1)])
    assert parse_weights("a (b:1) c") == [("a b c", 1.0)]


def test_break_marker():
    assert parse_weights("a BREAK b") == [("a", 1.0), BREAK, ("b", 1.0)]
    assert parse_weights("a BREAK BREAK b") == [("a", 1.0), BREAK, BREAK, ("b", 1.0)]
    assert parse_weights("a,BREAK,b") == [("a,", 1.0), BREAK, (",b", 1.0)]
    assert is_break(parse_weights("BREAK")[0])


def test_break_only_uppercase_standalone():
    assert parse_weights("a break b") == [("a break b", 1.0)]
    assert parse_weights("BREAKfast aBREAK") == [("BREAKfast aBREAK", 1.0)]


def test_break_inside_brackets_still_breaks():
    assert parse_weights("(a BREAK b)") == approx_segments([("a", 1.1), ("BREAK", -1.0), ("b", 1.1)])
    assert is_break(parse_weights("(a BREAK b)")[1])


def test_unclosed_round_applies_to_rest_with_warning():
    parsed = parse_prompt("a (b c")
    assert parsed.segments == approx_segments([("a ", 1.0), ("b c", 1.1)])
    assert len(parsed.warnings) == 1
    assert "never closed" in parsed.warnings[0] and "'('" in parsed.warnings[0]


def test_unclosed_square_applies_to_rest_with_warning():
    parsed = parse_prompt("a [b")
    assert parsed.segments == approx_segments([("a ", 1.0), ("b", 1 / 1.1)])
    assert len(parsed.warnings) == 1 and "'['" in parsed.warnings[0]


def test_stray_closing_bracket_is_literal_with_warning():
    parsed = parse_prompt("a) b] c")
    assert parsed.segments == [("a) b] c", 1.0)]
    assert len(parsed.warnings) == 2
    assert all("no matching" in w for w in parsed.warnings)


def test_mismatched_brackets():
    parsed = parse_prompt("(a]")
    assert parsed.segments == approx_segments([("a]", 1.1)])
    assert len(parsed.warnings) == 2


def test_balanced_prompt_has_no_warnings():
    assert parse_prompt("(masterpiece:1.2), ((best quality)), [lowres], \\(text\\)").warnings == []


def test_non_number_weight_is_text_with_warning():
    parsed = parse_prompt("(x:abc) y")
    assert parsed.segments == approx_segments([("x:abc", 1.1), (" y", 1.0)])
    assert len(parsed.warnings) == 1 and "'abc'" in parsed.warnings[0] and "not a number" in parsed.warnings[0]
    # Never an exception, whatever the input.
    for text in ["(x:1.2.3)", "(x:.)", "(x:-)", "(:)", "((((", "))))", "[:|]", "\\", "(x:1e3)"]:
        parse_prompt(text)
    assert parse_prompt("(x:1.2.3)").warnings


def test_prompt_editing_syntax_warns():
    parsed = parse_prompt("[cat:dog:0.5]")
    assert parsed.segments == approx_segments([("cat:dog:0.5", 1 / 1.1)])
    assert parsed.warnings and "not supported" in parsed.warnings[0]


def test_lora_tags_removed_and_returned_in_order():
    parsed = parse_prompt("a <lora:faceDetail:0.6> woman, <lora:skin_v2> (smile) <lyco:eyes:-0.5>")
    assert parsed.loras == [("faceDetail", 0.6), ("skin_v2", 1.0), ("eyes", -0.5)]
    assert "<" not in "".join(t for t, _ in parsed.segments)
    assert parsed.segments == approx_segments([("a  woman,  ", 1.0), ("smile", 1.1), (" ", 1.0)])
    assert parsed.warnings == []


def test_lora_names_may_contain_spaces_and_folders():
    assert parse_prompt("<lora:styles/my lora v1.2:0.8>").loras == [("styles/my lora v1.2", 0.8)]


def test_lora_bad_weight_warns_and_uses_one():
    parsed = parse_prompt("<lora:x:abc> hi")
    assert parsed.loras == [("x", 1.0)]
    assert len(parsed.warnings) == 1 and "not a number" in parsed.warnings[0]
    assert parsed.segments == [(" hi", 1.0)]


def test_lora_tag_inside_brackets():
    parsed = parse_prompt("(face <lora:d:0.3>:1.2)")
    assert parsed.loras == [("d", 0.3)]
    assert parsed.segments == approx_segments([("face ", 1.2)])


def test_other_extra_network_tags_are_removed_with_warning():
    text, loras, warnings = extract_loras("a <hypernet:x:1> b")
    assert text == "a  b" and loras == [] and len(warnings) == 1


def test_extra_lora_fields_warn():
    _, loras, warnings = extract_loras("<lora:x:0.5:0.7>")
    assert loras == [("x", 0.5)] and len(warnings) == 1


def test_parse_weights_keeps_lora_tags_as_text():
    assert parse_weights("<lora:x:1>") == [("<lora:x:1>", 1.0)]


def test_warning_positions_count_in_the_typed_prompt():
    parsed = parse_prompt("<lora:abc:1> x) (y")
    assert "character 15" in parsed.warnings[0]
    assert "character 17" in parsed.warnings[1]


def test_docstring_examples():
    import doctest

    import webui.prompts.prompt_parser as module

    assert doctest.testmod(module).failed == 0
