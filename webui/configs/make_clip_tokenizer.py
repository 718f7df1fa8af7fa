"""Regenerate clip_tokenizer/vocab.json and merges.txt from CLIP's published BPE table.

The table `bpe_simple_vocab_16e6.txt.gz` ships inside the MIT-licensed `open_clip_torch` wheel
(and in OpenAI's CLIP repository). Fetch the wheel without installing it and point this script
at it:

    pip download --no-deps open_clip_torch -d <dir>
    python webui/configs/make_clip_tokenizer.py <dir>/open_clip_torch-*.whl

The vocabulary is built exactly as CLIP's SimpleTokenizer builds it, so ids match every released
Stable Diffusion text encoder: 256 byte characters, the same with "</w>", one entry per merge,
then <|startoftext|> and <|endoftext|> (49408 entries).
"""

from __future__ import annotations

import gzip
import json
import sys
import zipfile
from pathlib import Path

BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 49152 - 256 - 2  # CLIP uses the first 48894 merges of the table (line 0 is a header)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable character table, in CLIP's order.

    Printable bytes come first and map to themselves; the other 68 bytes follow, mapped to
    chr(256 + n). The order matters: it fixes the token ids ("!" is id 0).
    """
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in printable}
    others = [b for b in range(256) if b not in table]
    table.update({b: chr(256 + n) for n, b in enumerate(others)})
    return table


def read_bpe_lines(source: Path) -> list[str]:
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            data = wheel.read(BPE_MEMBER)
    else:
        data = source.read_bytes()
    return gzip.decompress(data).decode("utf-8").split("\n")


def build(lines: list[str]) -> tuple[dict[str, int], list[str]]:
    merges = lines[1 : N_MERGES + 1]
    byte_chars = list(bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars]
    tokens += ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    assert len(vocab) == len(tokens) == 49408, len(vocab)
    return vocab, merges


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.exit(__doc__)
    vocab, merges = build(read_bpe_lines(Path(argv[1])))
    out = Path(__file__).resolve().parent / "clip_tokenizer"
    out.mkdir(exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    # Hugging Face's CLIPTokenizer skips the first line of merges.txt, like CLIP skips the header.
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    print(f"wrote {len(vocab)} tokens and {len(merges)} merges to {out}")


if __name__ == "__main__":
    main(sys.argv)
