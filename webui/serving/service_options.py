"""Service's A1111 options (webui/options.py): reading them, changing them (the REST API's
/options, the Settings tab), the per-request override_settings, and applying them -- request
defaults in Service.prepare, saving in Service.generate, live previews in the engine."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..options import OptionStore


class ServiceOptions:
    """Mixed into Service: needs its settings, manager and catalog (`options` is built lazily)."""

    _options: OptionStore | None = None

    @property
    def options(self) -> OptionStore:
        if self._options is None:
            s = self.settings
            out = Path(s.outputs_dir).resolve()
            defaults = {"live_previews_enable": s.preview != "off" and s.preview_every > 0,
                        "show_progress_every_n_steps": s.preview_every if s.preview_every > 0 else 4,
                        "outdir_txt2img_samples": str(out / "txt2img-images"),
                        "outdir_img2img_samples": str(out / "img2img-images"),
                        "outdir_extras_samples": str(out / "extras-images")}
            self._options = OptionStore(s.outputs_dir, defaults)
            self._apply_previews()
        return self._options

    def option_values(self) -> dict[str, Any]:
        """Every option with its current value, as /sdapi/v1/options reports it."""
        values = self.options.values()
        values.update(sd_model_checkpoint=self.active_title(), sd_checkpoint_hash=self.active_hash(),
                      sd_checkpoint_cache=self.settings.cpu_cache)
        return values

    def check_options(self, body: dict[str, Any], field_prefix: str = "") -> tuple[dict[str, Any], list[str]]:
        """The options of `body` that apply here, checked, and warnings for the ignored ones.
        `sd_model_checkpoint` is left to select_model. UserError naming a key with a bad value."""
        apply, warnings = self.options.split(body, field_prefix)
        apply.pop("sd_model_checkpoint", None)
        vae = apply.get("sd_vae")
        if vae is not None and vae not in self.vae_names():
            try:
                self.manager.vaes.find(vae)  # a stem or relative path finds the file too
            except UserError:
                raise UserError(f"sd_vae {vae!r} is not a VAE in models/VAE (or Automatic)",
                                field=f"{field_prefix}sd_vae") from None
        return apply, warnings

    def set_options(self, body: dict[str, Any]) -> list[str]:
        """Change and save the options of `body` (all checked before any is set); returns the
        warnings for the keys ignored. The checkpoint is switched by the caller (select_model)."""
        apply, warnings = self.check_options(body)
        self.options.update(apply)
        self._apply_previews()
        return warnings

    def request_options(self, fields: dict[str, Any]) -> dict[str, Any]:
        """`fields` with the option defaults of the request fields it leaves out: clip skip from
        CLIP_stop_at_last_layers, the VAE from sd_vae (override_settings first)."""
        over, _ = self.check_options(_overrides(fields), "override_settings.")
        values = self.options.values(over)
        fields = dict(fields)
        if fields.get("clip_skip") is None:
            fields["clip_skip"] = values["CLIP_stop_at_last_layers"]
        if fields.get("sd_vae") is None and values["sd_vae"] != "Automatic":
            fields["sd_vae"] = values["sd_vae"]
        return fields

    def saving_options(self, overrides: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
        """The options a generation saves with (override_settings on top), and warnings for the
        override keys ignored."""
        over, warnings = self.check_options(overrides or {}, "override_settings.")
        return self.options.values(over), warnings

    def _apply_previews(self) -> None:
        values = self._options.values()
        every = values["show_progress_every_n_steps"] if values["live_previews_enable"] else 0
        every = max(0, every)
        if self.manager.settings.preview_every != every:
            self.manager.settings = replace(self.manager.settings, preview_every=every)


def _overrides(fields: dict[str, Any]) -> dict[str, Any]:
    over = fields.get("override_settings")
    if over is None:
        return {}
    if not isinstance(over, dict):
        raise UserError("override_settings must be an object of setting names and values", field="override_settings")
    return dict(over)


__all__ = ["ServiceOptions"]
