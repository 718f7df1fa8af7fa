"""Style files: find the ``styles.csv`` files in the places the caller gives, read them in
A1111's format (header ``name,prompt,negative_prompt``) with a small CSV reader that reports a
broken row with its file and line and keeps the rest, and combine them with the built-in
styles into a :class:`StyleLibrary`. Loading never raises.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from webui.prompts.styles import BUILTIN_STYLES, Style, StyleLibrary


class _CsvRowError(Exception):
    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.line = line


def _split_csv_records(text: str):
    """Yield ``(line_number, fields | None, error | None)`` for each record of ``text``.

    A small CSV reader (RFC 4180 with Python-csv leniency for quotes inside unquoted fields)
    that, unlike :mod:`csv`, recovers from a broken record: an unterminated quote or junk after
    a closing quote costs only that record, parsing resumes on the following line.
    """
    n = len(text)
    pos = 0
    line = 1
    while pos < n:
        start_pos, start_line = pos, line
        fields: list[str] = []
        field: list[str] = []
        error: str | None = None
        while True:
            if pos < n and text[pos] == '"':
                # Quoted field.
                pos += 1
                closed = False
                while pos < n:
                    ch = text[pos]
                    if ch == '"':
                        if pos + 1 < n and text[pos + 1] == '"':
                            field.append('"')
                            pos += 2
                            continue
                        pos += 1
                        closed = True
                        break
                    if ch == "\n":
                        line += 1
                    field.append(ch)
                    pos += 1
                if not closed:
                    error = "a quote (\") is opened but never closed"
                    break
                if pos < n and text[pos] not in ",\r\n":
                    error = (
                        "unexpected text after a closing quote"
                        + (f" on line {line}" if line != start_line else "")
                        + "; quotes inside a field must be doubled (\"\")"
                    )
                    break
            else:
                while pos < n and text[pos] not in ",\r\n":
                    field.append(text[pos])
                    pos += 1
            fields.append("".join(field))
            field = []
            if pos < n and text[pos] == ",":
                pos += 1
                continue
            # End of record.
            if pos < n and text[pos] == "\r":
                pos += 1
            if pos < n and text[pos] == "\n":
                pos += 1
            line += 1
            break
        if error is None:
            yield start_line, fields, None
            continue
        yield start_line, None, error
        # Resume on the line after the start of the broken record: when a stray quote swallowed
        # the following lines, those lines are most likely rows of their own.
        resume_line = start_line
        pos = start_pos
        line = start_line
        while pos < n and line <= resume_line:
            nl = text.find("\n", pos)
            if nl < 0:
                pos = n
                break
            pos = nl + 1
            line += 1


def parse_styles_csv(text: str, source: str = "styles.csv") -> tuple[list[Style], list[str]]:
    """Parse the text of an A1111 ``styles.csv``; returns ``(styles, problems)``.

    The header row must have a ``name`` column; ``prompt`` (or the older ``text``) and
    ``negative_prompt`` are optional, other columns are ignored. Problems name the file and line.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    styles: list[Style] = []
    problems: list[str] = []
    header: list[str] | None = None
    seen: dict[str, int] = {}
    for line, fields, error in _split_csv_records(text):
        if error is not None:
            problems.append(f"{source}, line {line}: {error}; row skipped")
            continue
        assert fields is not None
        if all(not f.strip() for f in fields):
            continue  # blank line
        if header is None:
            header = [f.strip().lower() for f in fields]
            if "name" not in header:
                problems.append(
                    f"{source}, line {line}: the header row must have a 'name' column "
                    f"(expected name,prompt,negative_prompt); file skipped"
                )
                return [], problems
            continue
        if len(fields) < len(header):
            missing = ", ".join(header[len(fields):])
            problems.append(
                f"{source}, line {line}: {len(fields)} column(s) instead of {len(header)} "
                f"(missing: {missing}); row skipped"
            )
            continue
        if len(fields) > len(header) and any(f.strip() for f in fields[len(header):]):
            problems.append(
                f"{source}, line {line}: {len(fields)} columns instead of {len(header)} "
                f"(a comma inside a field needs quotes); row skipped"
            )
            continue
        row = dict(zip(header, fields))
        name = row.get("name", "").strip()
        if not name:
            problems.append(f"{source}, line {line}: the style has no name; row skipped")
            continue
        prompt = row.get("prompt", row.get("text", ""))
        negative = row.get("negative_prompt", "")
        if name in seen:
            problems.append(
                f"{source}, line {line}: style '{name}' is also defined on line {seen[name]}; "
                f"the later one is used"
            )
            styles = [s for s in styles if s.name != name]
        seen[name] = line
        styles.append(Style(name, prompt, negative, source=f"{source}:{line}"))
    if header is None:
        problems.append(f"{source}: the file is empty (expected a header name,prompt,negative_prompt)")
    return styles, problems


def load_styles_csv(path: str | Path) -> tuple[list[Style], list[str]]:
    """Read one styles.csv file; never raises for a bad file, reports it instead."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return [], [f"{path.name}: cannot be read ({exc.strerror or exc})"]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], [f"{path.name}: not UTF-8 text (byte {exc.start}); save it as UTF-8"]
    return parse_styles_csv(text, source=path.name)


def find_styles_files(places: Iterable[str | Path]) -> list[Path]:
    """The styles CSV files found in ``places``.

    Each place is either a CSV file or a folder; in a folder ``styles.csv`` and then
    ``styles-*.csv`` / ``styles_*.csv`` (sorted) are used. Missing places are ignored and a
    file is listed once even if two places point at it.
    """
    found: list[Path] = []
    seen: set[Path] = set()
    for place in places:
        if place is None:
            continue
        p = Path(place)
        candidates: list[Path] = []
        if p.is_file():
            candidates = [p]
        elif p.is_dir():
            main = p / "styles.csv"
            if main.is_file():
                candidates.append(main)
            extra = sorted({*p.glob("styles-*.csv"), *p.glob("styles_*.csv")})
            candidates.extend(extra)
        for c in candidates:
            key = c.resolve()
            if key not in seen:
                seen.add(key)
                found.append(c)
    return found


def style_places(models_dir: str | Path) -> list[Path]:
    """Where styles CSV files are looked for, in load order (a later file's style of the same
    name wins): A1111's place (its root, the models folder's parent), the models folder, and
    the folder the app runs in. The UI, txt2img `styles` and /prompt-styles all use these."""
    models = Path(models_dir)
    return [models.parent, models, Path.cwd()]


def load_style_library(
    places: Sequence[str | Path] = (), *, include_builtin: bool = True
) -> StyleLibrary:
    """Built-in styles plus every styles CSV found in ``places`` (in that order).

    A style from a file replaces a built-in or earlier style of the same name. Problems are in
    ``library.problems``; loading never raises.
    """
    library = StyleLibrary(BUILTIN_STYLES if include_builtin else ())
    for path in find_styles_files(places):
        styles, problems = load_styles_csv(path)
        for style in styles:
            library.add(style)
        library.problems.extend(problems)
    return library
