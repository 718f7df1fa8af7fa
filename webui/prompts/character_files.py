"""Character folders: ``<characters>/<name>/character.json`` plus its reference images
(ref1.png ...), written whole or not at all; export as a zip of the folder, import of a zip
that people share -- untrusted: entry names, sizes, the JSON and every image are checked.
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import shutil
import zipfile
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image

from webui.atomic_files import write_atomic
from webui.errors import UserError
from webui.metadata.uploads import open_bytes
from webui.prompts.characters import FIELD, IMAGE_SUFFIXES, MAX_IMAGES, Character, check_name, parse_character

log = logging.getLogger(__name__)

JSON_NAME = "character.json"
MAX_ZIP_BYTES = 64 * 1024 * 1024  # the zip file itself
MAX_UNPACKED_BYTES = 64 * 1024 * 1024  # everything in it, unpacked
MAX_JSON_BYTES = 256 * 1024
MAX_ENTRIES = 1 + MAX_IMAGES
MAX_PIXELS = 4096 * 4096

__all__ = ["CharacterStore", "JSON_NAME", "MAX_ZIP_BYTES", "MAX_UNPACKED_BYTES"]


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def _check_image(data: bytes, label: str) -> Image.Image:
    img = open_bytes(data, label)
    if img.width * img.height > MAX_PIXELS:
        raise UserError(f"{label} has {img.width}x{img.height} pixels; the limit is {MAX_PIXELS}", field=FIELD)
    try:
        img.load()
    except Exception as e:  # noqa: BLE001 - Pillow raises many kinds on a broken file
        raise UserError(f"{label} is not a readable image", field=FIELD) from e
    return img.convert("RGB")


class CharacterStore:
    """The characters in one folder, by name (the folder name is the character's name)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def _dir(self, name: str) -> Path:
        return self.folder / check_name(name, FIELD)

    def load_all(self) -> tuple[dict[str, Character], list[str]]:
        """Every readable character, sorted by name, and a problem line for each broken folder."""
        out, problems = {}, []
        if not self.folder.is_dir():
            return out, problems
        for sub in sorted(self.folder.iterdir(), key=lambda p: p.name.casefold()):
            if sub.name.startswith(".") or not sub.is_dir() or sub.is_symlink():
                continue
            try:
                out[sub.name] = self._read(sub)
            except UserError as e:
                problems.append(str(e))
        return out, problems

    def _read(self, folder: Path) -> Character:
        path = folder / JSON_NAME
        try:
            raw = path.read_bytes()[: MAX_JSON_BYTES + 1]
            data = json.loads(raw.decode("utf-8")) if len(raw) <= MAX_JSON_BYTES else None
        except (OSError, ValueError):
            raise UserError(f"{folder.name}/{JSON_NAME} is missing or not valid JSON", field=FIELD) from None
        char = parse_character(data, f"{folder.name}/{JSON_NAME}")
        if char.name != folder.name:
            char = replace(char, name=folder.name)  # the folder's name is the one people pick
        return char

    def get(self, name: str) -> Character:
        folder = self._dir(name)
        if folder.is_symlink() or not (folder / JSON_NAME).is_file():  # a link may point anywhere
            raise UserError(f"Unknown character {name!r}.", field=FIELD)
        return self._read(folder)

    def image_path(self, char: Character, image: str) -> Path | None:
        """The path of one of the character's images when it is a plain file in its folder."""
        path = self._dir(char.name) / image
        return path if path.is_file() and not path.is_symlink() else None

    def save(self, char: Character, images: list[Image.Image] | None = None) -> Character:
        """Write `char` (with `images`, re-encoded as PNG; None keeps the stored ones). A new
        character's folder appears whole (built beside it, then renamed); an existing one gets
        each file replaced atomically, character.json last."""
        folder = self._dir(char.name)
        files: dict[str, bytes] = {}
        if images is not None:
            if len(images) > MAX_IMAGES:
                raise UserError(f"A character has at most {MAX_IMAGES} reference images.", field=FIELD)
            names = tuple(f"ref{i + 1}.png" for i in range(len(images)))
            files.update({n: _png(img) for n, img in zip(names, images)})
            char = replace(char, images=names)
        char = parse_character(char.to_json())  # the same checks as a file read from disk
        files[JSON_NAME] = json.dumps(char.to_json(), ensure_ascii=False, indent=1).encode("utf-8")
        self.folder.mkdir(parents=True, exist_ok=True)
        if not folder.exists():
            temp = self.folder / f".{char.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
            temp.mkdir()
            try:
                for name, data in files.items():
                    write_atomic(temp / name, data)
                os.rename(temp, folder)
            except BaseException:
                shutil.rmtree(temp, ignore_errors=True)
                raise
            return char
        for name, data in sorted(files.items(), key=lambda kv: kv[0] == JSON_NAME):
            write_atomic(folder / name, data)
        if images is not None:  # references no longer listed
            for old in folder.iterdir():
                if old.suffix.lower() in IMAGE_SUFFIXES and old.name not in char.images and old.is_file():
                    old.unlink()
        return char

    def delete(self, name: str) -> None:
        folder = self._dir(name)
        if not (folder / JSON_NAME).is_file():
            raise UserError(f"Unknown character {name!r}.", field=FIELD)
        trash = self.folder / f".{folder.name}.{secrets.token_hex(4)}.deleted"
        os.rename(folder, trash)  # gone from the list at once, removed after
        shutil.rmtree(trash, ignore_errors=True)

    def export_zip(self, name: str) -> bytes:
        """A zip of the character's folder: <name>/character.json and its images."""
        char = self.get(name)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(f"{char.name}/{JSON_NAME}", json.dumps(char.to_json(), ensure_ascii=False, indent=1))
            for image in char.images:
                path = self.image_path(char, image)
                if path is not None:
                    z.writestr(f"{char.name}/{image}", path.read_bytes())
        return buf.getvalue()

    def import_zip(self, data: bytes) -> Character:
        """Add the character in a zip made by `export_zip` (or by hand: character.json and the
        images, in one folder or at the top). Refused whole on any problem; never replaces one."""
        files = read_zip(data)
        char = parse_character(_json(files.pop(JSON_NAME)), f"the zip's {JSON_NAME}")
        images = []
        for image in char.images:
            if image not in files:
                raise UserError(f"The zip lists {image} but does not hold it.", field=FIELD)
            images.append(_check_image(files[image], f"The zip's {image}"))
        if (self.folder / char.name).exists():
            raise UserError(f"A character named {char.name!r} already exists: delete or rename it first.",
                            field=FIELD)
        return self.save(char, images)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise UserError(f"The zip's {JSON_NAME} is not valid JSON.", field=FIELD) from None


def _entry_name(info: zipfile.ZipInfo) -> str:
    """The file name of a zip entry, which must be a plain file at the top or in one folder."""
    raw = info.filename
    parts = raw.split("/")
    bad = ("\\" in raw or raw.startswith("/") or ":" in raw or "\x00" in raw or len(parts) > 2
           or any(p in ("", ".", "..") for p in parts))
    if bad:
        raise UserError(f"The zip entry {raw!r} points outside its folder; the zip is refused.", field=FIELD)
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        raise UserError(f"The zip entry {raw!r} is a link; the zip is refused.", field=FIELD)
    return parts[-1]


def read_zip(data: bytes) -> dict[str, bytes]:
    """name -> bytes of a character zip's files, each checked before and while it is unpacked."""
    if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_ZIP_BYTES:
        raise UserError(f"A character zip may be at most {MAX_ZIP_BYTES // (1024 * 1024)} MB.", field=FIELD)
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        infos = [i for i in z.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, ValueError, OSError):
        raise UserError("This file is not a zip archive.", field=FIELD) from None
    if len(infos) > MAX_ENTRIES:
        raise UserError(f"A character zip holds at most {MAX_ENTRIES} files; this one has {len(infos)}.",
                        field=FIELD)
    names = [_entry_name(i) for i in infos]
    if len({i.filename.split("/")[0] for i in infos if "/" in i.filename}) > 1 or len(set(names)) != len(names):
        raise UserError("A character zip holds one character's folder.", field=FIELD)
    if JSON_NAME not in names:
        raise UserError(f"The zip holds no {JSON_NAME}.", field=FIELD)
    if sum(i.file_size for i in infos) > MAX_UNPACKED_BYTES:
        raise UserError(_too_big(), field=FIELD)
    files, total = {}, 0
    for info, name in zip(infos, names):
        try:
            with z.open(info) as f:  # the sizes in the headers are not trusted: count while reading
                chunk = f.read(MAX_UNPACKED_BYTES - total + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError):
            raise UserError(f"The zip entry {info.filename!r} cannot be read.", field=FIELD) from None
        total += len(chunk)
        if total > MAX_UNPACKED_BYTES:
            raise UserError(_too_big(), field=FIELD)
        files[name] = chunk
    return files


def _too_big() -> str:
    return f"The character zip unpacks to more than {MAX_UNPACKED_BYTES // (1024 * 1024)} MB; it is refused."
