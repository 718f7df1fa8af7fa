"""Service's character methods: the saved characters (``settings.characters_dir``) the UI and
the REST API list, save, delete, import and export, and their expansion into plain A1111 fields
in `Service.prepare`. Service inherits them; they read its `settings` and LoRA listing.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from ..engine.extensions.ipadapter import list_adapters
from ..errors import UserError
from ..metadata.uploads import open_image
from ..prompts import characters as chars
from ..prompts.character_files import CharacterStore
from ..prompts.characters import FIELD, Character


class ServiceCharacters:
    @property
    def character_store(self) -> CharacterStore:
        return CharacterStore(self.settings.characters_dir)

    def characters(self) -> dict[str, Character]:
        """Every readable character by name (a broken folder is left out and logged)."""
        return self.character_store.load_all()[0]

    def character(self, name: str) -> Character:
        """The character called `name`; UserError (field `characters`) when there is none."""
        return self.character_store.get(name)

    def character_images(self, name: str) -> list[Image.Image]:
        """The character's reference images that are there (a missing one is left out)."""
        store, char = self.character_store, self.character(name)
        out = []
        for image in char.images:
            path = store.image_path(char, image)
            if path is not None:
                try:
                    out.append(open_image(path, max_pixels=self.settings.limits.max_upload_pixels).convert("RGB"))
                except UserError:
                    continue
        return out

    def character_image_files(self, name: str) -> list:
        """Paths of the character's reference images that are there (for the UI's editor)."""
        store, char = self.character_store, self.character(name)
        return [p for p in (store.image_path(char, image) for image in char.images) if p is not None]

    def character_warnings(self, name: str) -> list[str]:
        """What the character needs and is missing: LoRA files, images, the IP-Adapter model."""
        char = self.character(name)
        store, found = self.character_store, []
        loras = {f.name for f in self.lora_files()}
        found += [f"LoRA {lo.name!r}" for lo in char.loras if lo.name not in loras]
        found += [f"reference image {image}" for image in char.images if store.image_path(char, image) is None]
        if char.images and char.ip_adapter_model not in list_adapters(self.settings.models_dir):
            found.append(f"IP-Adapter model {char.ip_adapter_model!r}")
        if not found:
            return []
        return [f"Character {char.name!r} is missing {', '.join(found)}; it is used without them."]

    def save_character(self, data: dict[str, Any], images: list[Image.Image] | None = None) -> Character:
        """Save a character from its fields (character.json's keys); `images` replace the stored
        references (None keeps them). A name with path characters is a UserError naming `name`."""
        data = dict(data, name=chars.check_name(data.get("name")))
        data["images"] = []
        if images is None and (self.character_store.folder / data["name"]).is_dir():
            data["images"] = list(self.character(data["name"]).images)
        return self.character_store.save(chars.parse_character(data, "character"), images)

    def delete_character(self, name: str) -> None:
        self.character_store.delete(name)

    def export_character(self, name: str) -> bytes:
        """The character's folder as a zip, to share."""
        return self.character_store.export_zip(name)

    def import_character(self, data: bytes) -> Character:
        """Add the character in a shared zip (checked: entry names, sizes, JSON, images)."""
        return self.character_store.import_zip(data)

    def expand_characters(self, fields: dict[str, Any]) -> tuple[list[Character], list[str]]:
        """Pop `characters` (names) from `fields`, peel their text off an infotext prompt that
        already carries it, and add their reference images as `ip_adapters` entries. Returns the
        characters (their text is appended after the styles by `append_characters`) and warnings."""
        names = fields.pop(FIELD, None)
        if names in (None, "", [], ()):
            return [], []
        if isinstance(names, str):
            names = [n for n in names.split(",") if n.strip()]
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise UserError("characters must be a list of character names", field=FIELD)
        picked = list({c.name: c for c in (self.character(n.strip()) for n in names)}.values())
        notes = [w for c in picked for w in self.character_warnings(c.name)]
        for key, attr in (("prompt", "prompt_addition"), ("negative_prompt", "negative_prompt")):
            if isinstance(fields.get(key), str):
                fields[key] = chars.peel(fields[key], self._additions(picked, attr))
        refs = fields.get("ip_adapters") or []
        refs = [refs] if isinstance(refs, dict) else list(refs)
        adapters = list_adapters(self.settings.models_dir) if picked else []
        for c in picked:
            if c.ip_adapter_model not in adapters:
                continue  # named in the warnings above
            refs += [{"model": c.ip_adapter_model, "image": img, "weight": c.ip_adapter_weight}
                     for img in self.character_images(c.name)]
        if refs:
            fields["ip_adapters"] = refs
        return picked, notes

    @staticmethod
    def _additions(picked: list[Character], attr: str) -> list[str]:
        texts = [getattr(c, attr) for c in picked]
        return [t() if callable(t) else t for t in texts if (t() if callable(t) else t)]

    def append_characters(self, prompt: str, negative: str, picked: list[Character]) -> tuple[str, str, list]:
        """The prompts with the characters' additions appended, and the infotext entry."""
        if not picked:
            return prompt, negative, []
        return (chars.expand(prompt, self._additions(picked, "prompt_addition")),
                chars.expand(negative, self._additions(picked, "negative_prompt")),
                [("Character", ", ".join(c.name for c in picked))])
