"""A1111's settings (/sdapi/v1/options, override_settings, the Settings tab): one table of the
keys that mean something here, each with its type, default, bounds, label and how it applies,
and the store that keeps the values a user set in <outputs>/options.json.

How a key applies (`Option.applies`):
- "saving": how results are saved (format, quality, .txt beside, whether at all);
- "path": an output folder, which must stay inside the outputs folder;
- "preview": live previews during sampling;
- "request": the default of a request field a request leaves out (clip skip, VAE);
- "model": the checkpoint (switched through the GPU queue by the API route);
- "fixed": reported as this app behaves; sending the same value is fine, another one is
  accepted and listed as ignored, because this app cannot do it.

Keys A1111 has that mean nothing here (KNOWN_IGNORED) and keys that are no A1111 option at all
are accepted and listed as ignored in the answer's `warnings` -- never dropped in silence. A
value of the wrong type is a UserError naming the key (HTTP 422).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic_files import write_atomic
from .errors import UserError

log = logging.getLogger(__name__)

OPTIONS_FILE = "options.json"
GROUPS = ("saving", "paths", "previews", "sampling")
IMAGE_FORMATS = ("png", "jpg", "jpeg", "webp")


@dataclass(frozen=True)
class Option:
    key: str
    kind: str  # bool, int, choice, text, path
    default: Any
    group: str
    applies: str
    lo: int | None = None
    hi: int | None = None
    choices: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The UI string key (webui/i18n.py) of this option's label."""
        return f"opt_{self.key.lower()}"


def _o(key, kind, default, group, applies, lo=None, hi=None, choices=()):
    return Option(key, kind, default, group, applies, lo, hi, tuple(choices))


OPTIONS: tuple[Option, ...] = (
    _o("samples_save", "bool", True, "saving", "saving"),
    _o("samples_format", "choice", "png", "saving", "saving", choices=IMAGE_FORMATS),
    _o("jpeg_quality", "int", 80, "saving", "saving", 1, 100),
    _o("webp_lossless", "bool", False, "saving", "saving"),
    _o("save_txt", "bool", False, "saving", "saving"),
    _o("save_images_add_number", "bool", True, "saving", "fixed"),
    _o("enable_pnginfo", "bool", True, "saving", "fixed"),
    _o("grid_save", "bool", False, "saving", "fixed"),
    _o("grid_format", "choice", "png", "saving", "fixed", choices=IMAGE_FORMATS),
    _o("export_for_4chan", "bool", False, "saving", "fixed"),
    _o("samples_filename_pattern", "text", "", "saving", "fixed"),
    _o("save_to_dirs", "bool", True, "saving", "fixed"),
    _o("directories_filename_pattern", "text", "[date]", "saving", "fixed"),
    _o("outdir_samples", "path", "", "paths", "path"),
    _o("outdir_txt2img_samples", "path", "txt2img-images", "paths", "path"),
    _o("outdir_img2img_samples", "path", "img2img-images", "paths", "path"),
    _o("outdir_extras_samples", "path", "extras-images", "paths", "fixed"),
    _o("live_previews_enable", "bool", True, "previews", "preview"),
    _o("show_progress_every_n_steps", "int", 4, "previews", "preview", -1, 32),
    _o("show_progressbar", "bool", True, "previews", "fixed"),
    _o("live_preview_content", "choice", "Prompt", "previews", "fixed",
       choices=("Combined", "Prompt", "Negative prompt")),
    _o("CLIP_stop_at_last_layers", "int", 1, "sampling", "request", 1, 12),
    _o("sd_vae", "text", "Automatic", "sampling", "request"),
    _o("eta_noise_seed_delta", "int", 0, "sampling", "fixed", 0, 2**32 - 1),
    _o("randn_source", "choice", "CPU", "sampling", "fixed", choices=("GPU", "CPU", "NV")),
    _o("sd_model_checkpoint", "text", None, "sampling", "model"),
)
BY_KEY = {o.key: o for o in OPTIONS}
# Read-only facts clients read from /options (computed by the server, not in the table's UI).
READ_ONLY = ("sd_checkpoint_hash", "sd_checkpoint_cache")

# Why a "fixed" key cannot take another value here.
FIXED_WHY = {
    "save_images_add_number": "file names always start with a number, so no file is ever replaced",
    "enable_pnginfo": "the infotext is always written into saved images",
    "grid_save": "this app makes no grids",
    "grid_format": "this app makes no grids",
    "export_for_4chan": "no downscaled copies are saved",
    "samples_filename_pattern": "file names are NNNNN-SEED",
    "save_to_dirs": "results always go into a folder per day",
    "directories_filename_pattern": "results always go into a folder per day",
    "outdir_extras_samples": "Extras results always go to extras-images",
    "show_progressbar": "the progress bar is always shown",
    "live_preview_content": "previews always show the prompt's picture",
    "eta_noise_seed_delta": "ancestral samplers here draw their step noise from the seed itself, "
                            "so A1111's extra seed offset cannot be applied the same way",
    "randn_source": "noise is always drawn on the CPU (the same on every device)",
}

# A1111 1.10 options that have no meaning in this app: accepted, listed as ignored.
KNOWN_IGNORED = frozenset("""
outdir_grids outdir_txt2img_grids outdir_img2img_grids outdir_save outdir_init_images
save_selected_only save_init_img grid_only_if_multiple grid_prevent_empty_spots grid_zip_filename_pattern
n_rows font grid_text_active_color grid_text_inactive_color grid_background_color
save_images_before_face_restoration save_images_before_highres_fix save_images_before_color_correction
save_mask save_mask_composite img_downscale_threshold target_side_length img_max_size_mp
use_original_name_batch use_upscaler_name_as_suffix save_incomplete_images notification_audio
notification_volume save_write_log_csv save_images_replace_action temp_dir clean_temp_dir_at_start
ESRGAN_tile ESRGAN_tile_overlap realesrgan_enabled_models dat_enabled_models DAT_tile DAT_tile_overlap
upscaler_for_img2img set_scale_by_when_changing_upscaler face_restoration face_restoration_model
code_former_weight face_restoration_unload auto_launch_browser enable_console_prompts
show_warnings show_gradio_deprecation_warnings memmon_poll_rate samples_log_stdout multiple_tqdm
enable_upscale_progressbar print_hypernet_extra disable_mmap_load_safetensors hide_ldm_prints
dump_stacks_on_signal api_enable_requests api_forbid_local_requests api_useragent
unload_models_when_training pin_memory save_optimizer_state save_training_settings_to_txt
dataset_filename_word_regex dataset_filename_join_string training_image_repeats_per_epoch
training_write_csv_every training_xattention_optimizations training_enable_tensorboard
training_tensorboard_save_images training_tensorboard_flush_every sd_checkpoints_limit
sd_checkpoints_keep_in_cpu sd_unet enable_quantization emphasis enable_batch_seeds
comma_padding_backoff sdxl_clip_l_skip upcast_attn randn_source_legacy tiling hires_fix_refiner_pass
sdxl_crop_top sdxl_crop_left sdxl_refiner_low_aesthetic_score sdxl_refiner_high_aesthetic_score
sd3_enable_t5 sd_vae_checkpoint_cache sd_vae_overrides_per_model_preferences auto_vae_precision_bfloat16
auto_vae_precision sd_vae_encode_method sd_vae_decode_method inpainting_mask_weight
initial_noise_multiplier img2img_extra_noise img2img_color_correction img2img_fix_steps
img2img_background_color img2img_editor_height img2img_sketch_default_brush_color
img2img_inpaint_mask_brush_color img2img_inpaint_sketch_default_brush_color
return_mask return_mask_composite img2img_batch_show_results_limit overlay_inpaint
cross_attention_optimization s_min_uncond s_min_uncond_all token_merging_ratio
token_merging_ratio_img2img token_merging_ratio_hr pad_cond_uncond persistent_cond_cache
batch_cond_uncond fp8_storage cache_fp16_weight use_old_emphasis_implementation
use_old_karras_scheduler_sigmas no_dpmpp_sde_batch_determinism use_old_hires_fix_width_height
hires_fix_use_firstpass_conds use_old_scheduling use_downcasted_alpha_bar refiner_switch_by_sample_steps
interrogate_keep_models_in_memory interrogate_return_ranks interrogate_clip_num_beams
interrogate_clip_min_length interrogate_clip_max_length interrogate_clip_dict_limit
interrogate_clip_skip_categories interrogate_deepbooru_score_threshold deepbooru_sort_alpha
deepbooru_use_spaces deepbooru_escape deepbooru_filter_tags extra_networks_show_hidden_directories
extra_networks_dir_button_function extra_networks_hidden_models extra_networks_default_multiplier
extra_networks_card_width extra_networks_card_height extra_networks_card_text_scale
extra_networks_card_show_desc extra_networks_card_description_is_html extra_networks_card_order_field
extra_networks_card_order extra_networks_tree_view_style extra_networks_tree_view_default_enabled
extra_networks_tree_view_default_width extra_networks_add_text_separator ui_extra_networks_tab_reorder
textual_inversion_print_at_load textual_inversion_add_hashes_to_infotext sd_hypernetwork
keyedit_precision_attention keyedit_precision_extra keyedit_delimiters keyedit_delimiters_whitespace
keyedit_move disable_token_counters include_styles_into_token_counters extra_options_txt2img
extra_options_img2img extra_options_cols extra_options_accordion compact_prompt_box samplers_in_dropdown
dimensions_and_batch_together sd_checkpoint_dropdown_use_short hires_fix_show_sampler hires_fix_show_prompts
txt2img_settings_accordion img2img_settings_accordion interrupt_after_current localization
quicksettings_list ui_tab_order hidden_tabs ui_reorder_list gradio_theme gradio_themes_cache
show_progress_in_title send_seed send_size js_modal_lightbox js_modal_lightbox_initially_zoomed
js_modal_lightbox_gamepad js_modal_lightbox_gamepad_repeat sd_webui_modal_lightbox_icon_opacity
sd_webui_modal_lightbox_toolbar_opacity gallery_height open_dir_button_choice
add_model_name_to_info add_model_hash_to_info add_vae_name_to_info add_vae_hash_to_info
add_user_name_to_info add_version_to_infotext disable_weights_auto_swap infotext_skip_pasting
infotext_styles show_progress_grid show_progress_type live_preview_allow_lowvram_full
live_preview_refresh_period live_preview_fast_interrupt js_live_preview_in_modal_lightbox
prevent_screen_sleep_during_generation hide_samplers eta_ddim eta_ancestral ddim_discretize
s_churn s_tmin s_tmax s_noise sigma_min sigma_max rho eta_noise_seed_delta_legacy
always_discard_next_to_last_sigma sgm_noise_multiplier uni_pc_variant uni_pc_skip_type uni_pc_order
uni_pc_lower_order_final sd_noise_schedule skip_early_cond beta_dist_alpha beta_dist_beta
postprocessing_enable_in_main_ui postprocessing_disable_in_extras postprocessing_operation_order
upscaling_max_images_in_cache postprocessing_existing_caption_action disabled_extensions
disable_all_extensions restore_config_state_file sd_checkpoint_hash_legacy
lora_functional lora_preferred_name lora_add_hashes_to_infotext lora_bundled_ti_to_infotext
lora_show_all lora_hide_unknown_for_versions lora_in_memory_limit lora_not_found_warning_console
lora_not_found_gradio_warning canvas_hotkey_zoom canvas_hotkey_adjust canvas_hotkey_shrink_brush
canvas_hotkey_grow_brush canvas_hotkey_move canvas_hotkey_fullscreen canvas_hotkey_reset
canvas_hotkey_overlap canvas_show_tooltip canvas_auto_expand canvas_blur_prompt canvas_disabled_functions
extra_networks_tree_view_hidden
""".split())


def check_value(key: str, value: Any, outputs_dir: Path | None = None, field: str | None = None) -> Any:
    """`value` for option `key`, checked (and normalised); UserError naming the key when its
    type or range is wrong, or when a path leaves the outputs folder."""
    o, field = BY_KEY[key], field or key
    if o.kind == "bool":
        if not isinstance(value, bool):
            raise UserError(f"{key} must be true or false, got {value!r}", field=field)
        return value
    if o.kind == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{key} must be a whole number, got {value!r}", field=field)
        if not o.lo <= value <= o.hi:
            raise UserError(f"{key} must be between {o.lo} and {o.hi}, got {value}", field=field)
        return value
    if not isinstance(value, str) or len(value) > 500 or "\x00" in value:
        raise UserError(f"{key} must be text (at most 500 characters), got {value!r}", field=field)
    if o.kind == "choice":
        found = next((c for c in o.choices if c.lower() == value.strip().lower()), None)
        if found is None:
            raise UserError(f"{key} must be one of {', '.join(o.choices)}, got {value!r}", field=field)
        return found
    if o.kind == "path" and outputs_dir is not None:
        folder_inside(outputs_dir, value, key, field)
    return value


def folder_inside(outputs_dir: Path, value: str, key: str, field: str | None = None) -> Path | None:
    """The folder an outdir_* value names: relative to the outputs folder, or an absolute path
    inside it; None for "" (the default). Links are followed before the check, so a link in
    the outputs folder cannot lead out of it. UserError (400) otherwise."""
    if not value.strip():
        return None
    root = os.path.realpath(outputs_dir)
    target = os.path.realpath(os.path.join(root, os.path.expanduser(value.strip())))
    if os.path.commonpath([root, target]) != root:
        raise UserError(f"{key} must be a folder inside the outputs folder ({root}); {value!r} is not",
                        field=field or key)
    return Path(target)


class OptionStore:
    """The options' current values: the defaults, then what users set (kept in options.json
    beside the outputs, written whole or not at all). Thread-safe."""

    def __init__(self, outputs_dir: Path, defaults: dict[str, Any] | None = None):
        self.outputs_dir = Path(outputs_dir)
        self.path = self.outputs_dir / OPTIONS_FILE
        self.defaults = {o.key: o.default for o in OPTIONS if o.applies != "model"}
        self.defaults.update(defaults or {})
        self.changed: dict[str, Any] = {}
        self.problems: list[str] = []
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            self.problems.append(f"{self.path.name} could not be read ({e}); using the defaults")
            return
        if not isinstance(data, dict):
            self.problems.append(f"{self.path.name} is not a JSON object; using the defaults")
            return
        for key, value in data.items():
            if key in self.defaults and BY_KEY[key].applies != "fixed":
                try:
                    self.changed[key] = check_value(key, value, self.outputs_dir)
                except UserError as e:
                    self.problems.append(f"{self.path.name}: {e}")

    def values(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Every option's value, with checked `overrides` (see split) on top."""
        with self._lock:
            out = {**self.defaults, **self.changed}
        out.update(overrides or {})
        return out

    def split(self, body: dict[str, Any], field_prefix: str = "") -> tuple[dict[str, Any], list[str]]:
        """The keys of `body` that apply here, checked, and a warning for each key ignored.
        UserError (naming the key) for a wrong type or a path outside the outputs folder."""
        if not isinstance(body, dict):
            raise UserError("options must be an object of setting names and values", field=field_prefix or None)
        apply, warnings = {}, []
        current = self.values()
        for key, value in body.items():
            field = f"{field_prefix}{key}"
            if key in READ_ONLY:
                continue  # clients post back what they read; these are facts, not settings
            o = BY_KEY.get(key)
            if o is None:
                why = "it has no meaning in this app" if key in KNOWN_IGNORED else "it is not an A1111 option"
                warnings.append(f"{key}: ignored ({why})")
                continue
            value = check_value(key, value, self.outputs_dir, field)
            if o.applies == "fixed":
                if value != current.get(key):
                    warnings.append(f"{key}: ignored ({FIXED_WHY[key]}); it stays {current.get(key)!r}")
                continue
            apply[key] = value
        return apply, warnings

    def update(self, values: dict[str, Any]) -> None:
        """Set checked values (from split) and save them all to options.json."""
        values = {k: v for k, v in values.items() if k in self.defaults}
        if not values:
            return
        with self._lock:
            self.changed.update(values)
            data = json.dumps(self.changed, indent=2, sort_keys=True, ensure_ascii=False)
            write_atomic(self.path, (data + "\n").encode("utf-8"))


__all__ = ["BY_KEY", "GROUPS", "KNOWN_IGNORED", "OPTIONS", "Option", "OptionStore", "READ_ONLY",
           "check_value", "folder_inside"]
