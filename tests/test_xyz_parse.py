"""The X/Y/Z plot's arguments (A1111's order), axis types and value syntax, and the scripts
listing: pure parsing, no model."""

from __future__ import annotations

import pytest

from webui.errors import UserError
from webui.request.scripts import check_alwayson, script_info, scripts_list, selected_script
from webui.request.xyz import MAX_AXIS_VALUES, axis_names, parse_plot, parse_values, plan_cells


@pytest.mark.parametrize("text, kind, expected", [
    ("1, 2,3", "int", [1, 2, 3]),
    ("1-5", "int", [1, 2, 3, 4, 5]),
    ("1-10 (+2)", "int", [1, 3, 5, 7, 9]),
    ("10-1 (-3)", "int", [10, 7, 4, 1]),
    ("1-3 [5]", "int", [1, 1, 2, 2, 3]),
    ("1-3 [5]", "float", [1.0, 1.5, 2.0, 2.5, 3.0]),
    ("5, 7.5-8.5 (+0.5)", "float", [5.0, 7.5, 8.0, 8.5]),
    ("-1, 42", "int", [-1, 42]),
    ('Euler, "DPM++ 2M, Karras"', "str", ["Euler", "DPM++ 2M, Karras"]),
])
def test_values_syntax(text, kind, expected):
    assert parse_values(text, kind, "X values") == expected


@pytest.mark.parametrize("args, words", [
    (["Seed", "1-1000"], ["1000 values", str(MAX_AXIS_VALUES)]),
    (["Seed", "1-3 [1000]"], ["1000 values", str(MAX_AXIS_VALUES)]),
    (["Seed", ",".join(map(str, range(65)))], [str(MAX_AXIS_VALUES)]),
    (["Seed", "1-40", [], "Steps", "1-40"], ["1600 cells", "256"]),
    (["Wobble", "1,2"], ["Wobble", "Seed"]),
    ([999, "1,2"], ["999"]),
    (["Eta", "1,2"], ["not supported", "CFG Scale"]),
    (["Seed", "one, two"], ["'one'", "whole number"]),
    (["CFG Scale", "7, x"], ["'x'"]),
    (["Steps", "1-5 (+0)"], ["never reaches"]),
    (["Size", "64x64, big"], ["WIDTHxHEIGHT"]),
    (["Seed", ""], ["no values"]),
    ("Seed", ["must be a list"]),
])
def test_bad_plots_name_the_problem(args, words):
    with pytest.raises(UserError) as e:
        parse_plot(args, "txt2img")
    assert e.value.field == "script_args"
    for w in words:
        assert w in str(e.value), str(e.value)


def test_axis_types_by_name_or_index_in_a1111_order():
    names = axis_names(False)
    assert names[:8] == ["Nothing", "Seed", "Var. seed", "Var. strength", "Steps", "Hires steps", "CFG Scale",
                         "Prompt S/R"]
    assert "Hires steps" not in axis_names(True) and axis_names(True)[6] == "Image CFG Scale"
    by_index = parse_plot([1, "1,2", [], 6, "5,7"], "txt2img")
    by_name = parse_plot(["seed", "1,2", [], "cfg scale", "5,7"], "txt2img")
    assert by_index == by_name and by_name.shape() == (2, 2, 1)
    assert by_name.y.name == "CFG Scale" and by_name.y.values == (5.0, 7.0)


def test_arguments_in_the_current_and_the_older_order():
    full = ["Seed", "1,2", [], "Nothing", "", [], "Nothing", "", [], False, True, False, True,
            False, False, False, 4, False]
    old = full[:13] + [4, False]  # before vary_seeds_x/y/z
    for args in (full, old):
        p = parse_plot(args, "txt2img")
        assert (p.draw_legend, p.include_lone_images, p.no_fixed_seeds, p.margin_size) == (False, True, True, 4)


def test_dropdown_values_for_choice_axes_unless_csv_mode():
    p = parse_plot(["Sampler", "Heun", ["Euler", "DDIM"]], "txt2img")
    assert p.x.values == ("Euler", "DDIM")
    assert parse_plot(["Sampler", "Heun", []], "txt2img").x.values == ("Heun",)
    args = ["Sampler", "Heun", ["Euler"], "Nothing", "", [], "Nothing", "", [], True, False, False, False,
            False, False, False, 0, True]
    assert parse_plot(args, "txt2img").x.values == ("Heun",)


def test_cells_x_fastest_prompt_sr_and_fixed_seeds():
    plot = parse_plot(["Prompt S/R", "cat, dog", [], "CFG Scale", "5,7"], "txt2img")
    fixed, cells = plan_cells(plot, {"prompt": "a cat", "negative_prompt": "ugly cat", "seed": -1})
    assert [pos for pos, _ in cells] == [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0)]
    assert [(c["prompt"], c["negative_prompt"], c["cfg_scale"]) for _, c in cells] == [
        ("a cat", "ugly cat", 5.0), ("a dog", "ugly dog", 5.0), ("a cat", "ugly cat", 7.0), ("a dog", "ugly dog", 7.0)]
    seeds = {c["seed"] for _, c in cells}
    assert len(seeds) == 1 and -1 not in seeds  # one random seed for every cell
    with pytest.raises(UserError, match="'horse' is not in the prompt"):
        plan_cells(parse_plot(["Prompt S/R", "horse, cow"], "txt2img"), {"prompt": "a cat"})
    fixed, cells = plan_cells(parse_plot(["Seed", "-1, 3"], "txt2img"), {"prompt": "p"})
    assert fixed.x.values[1] == 3 and fixed.x.values[0] != -1 and cells[0][1]["seed"] == fixed.x.values[0]
    with pytest.raises(UserError) as e:
        plan_cells(plot, {"prompt": "a cat", "batch_size": 2})
    assert e.value.field == "batch_size"


def test_script_names_and_alwayson_keys_are_checked_case_insensitively():
    assert selected_script("X/Y/Z Plot") == "x/y/z plot" and selected_script(None) is None
    assert selected_script("") is None and selected_script("None") is None
    with pytest.raises(UserError, match="'Prompt matrix'") as e:
        selected_script("Prompt matrix")
    assert e.value.field == "script_name"
    with pytest.raises(UserError, match="video"):
        selected_script("ControlNet M2M")
    check_alwayson({"ControlNet": {"args": []}, "ADetailer": {"args": [False]}})
    check_alwayson(None)
    with pytest.raises(UserError, match="'Self Attention Guidance'") as e:
        check_alwayson({"controlnet": {"args": []}, "Self Attention Guidance": {"args": []}})
    assert e.value.field == "alwayson_scripts"


def test_scripts_listing_in_a1111_shape():
    listed = scripts_list()
    for tab in ("txt2img", "img2img"):
        # webuiapi switches its remembered ControlNet/ADetailer args off only when it sees these
        assert {"x/y/z plot", "controlnet", "adetailer", "controlnet m2m"} <= set(listed[tab])
    info = script_info(axis_names)
    by = {(s["name"], s["is_img2img"]): s for s in info}
    assert by[("controlnet", False)]["is_alwayson"] and by[("adetailer", True)]["is_alwayson"]
    assert not by[("x/y/z plot", False)]["is_alwayson"]
    labels = [a["label"] for a in by[("x/y/z plot", False)]["args"]]
    assert labels[:4] == ["X type", "X values", "X values (dropdown)", "Y type"] and len(labels) == 18
    assert by[("x/y/z plot", True)]["args"][0]["choices"] == axis_names(True)
    assert by[("controlnet", False)]["args"][0]["value"]["enabled"] is False
