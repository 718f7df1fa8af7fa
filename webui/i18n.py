"""UI strings in English and Chinese, for Gradio's built-in i18n.

How the UI uses it::

    from webui.i18n import I18N, t

    with gr.Blocks() as demo:
        with gr.Tab(t("tab_txt2img")):
            prompt = gr.Textbox(label=t("prompt"), placeholder=t("prompt_placeholder"))
            gr.Button(t("generate"), variant="primary")
            gr.Radio(choices=[(t("masked_content_fill"), "fill"), ...], label=t("masked_content"))
    demo.launch(i18n=I18N)

``t(key)`` returns a :class:`gradio.i18n.I18nData`; the browser shows the text for its
language (Chinese for zh, zh-CN, zh-TW, ...; English otherwise). It works for labels, info,
placeholders, button values, tab/accordion labels, Markdown values and the display names of
Dropdown/Radio/CheckboxGroup choices, not for values computed in Python at run time. For those
(messages in gr.Info/gr.Warning, generated text) use ``text(key, lang)``, which returns a plain
string. An unknown key raises KeyError, so typos are caught at start-up.

Keys are flat snake_case names and avoid the top-level names Gradio uses for its own strings
(``common``, ``image``, ``gallery`` ...; see ``GRADIO_RESERVED_KEYS``).
"""

from __future__ import annotations

import gradio as gr

__all__ = ["EN", "ZH", "I18N", "LANGUAGES", "GRADIO_RESERVED_KEYS", "t", "text"]

EN: dict[str, str] = {
    # Tabs
    "tab_txt2img": "txt2img",
    "tab_img2img": "img2img",
    "tab_inpaint": "Inpaint",
    "tab_extras": "Extras",
    "tab_png_info": "PNG Info",
    "tab_history": "History",
    "tab_settings": "Settings",
    # Prompting
    "prompt": "Prompt",
    "prompt_placeholder": "Describe the portrait, in Chinese or English (Ctrl+Enter to generate)",
    "negative_prompt": "Negative prompt",
    "negative_prompt_placeholder": "What to keep out of the picture",
    "translated_prompt": "Translated prompt (sent to the model)",
    "translated_negative_prompt": "Translated negative prompt",
    "translation_notes": "Translation notes",
    "translate_preview": "Preview translation",
    "translation_setting": "Prompt translation",
    "translation_auto": "Automatic (model if installed, else glossary)",
    "translation_glossary": "Built-in glossary (offline)",
    "translation_marian": "MarianMT model",
    "translation_off": "Off (prompt used as typed)",
    # Main buttons
    "generate": "Generate",
    "interrupt": "Interrupt",
    "skip": "Skip",
    "refresh": "Refresh",
    # Sampling
    "sampling_settings": "Sampling",
    "sampler": "Sampling method",
    "scheduler": "Schedule type",
    "steps": "Sampling steps",
    "cfg_scale": "CFG scale",
    "seed": "Seed",
    "seed_info": "-1 picks a new random seed each time",
    "seed_random": "Random seed",
    "seed_reuse": "Reuse seed from last generation",
    "width": "Width",
    "height": "Height",
    "swap_dimensions": "Swap width and height",
    "batch_count": "Batch count",
    "batch_size": "Batch size",
    "checkpoint": "Checkpoint",
    "vae": "VAE",
    "clip_skip": "Clip skip",
    "model_family": "Model family",
    # Presets and styles
    "presets": "Preset",
    "preset_none": "None",
    "preset_apply": "Apply preset",
    "preset_description": "About this preset",
    "preset_recommended": "Recommended models",
    "styles": "Styles",
    "styles_info": "Applied in the order selected",
    "styles_apply": "Write styles into the prompt",
    "styles_reload": "Reload styles",
    # img2img / inpaint
    "input_image": "Source image",
    "mask": "Mask",
    "draw_mask": "Paint over the area to redraw",
    "denoising_strength": "Denoising strength",
    "resize_mode": "Resize mode",
    "resize_just_resize": "Just resize",
    "resize_crop_and_resize": "Crop and resize",
    "resize_and_fill": "Resize and fill",
    "mask_blur": "Mask blur",
    "mask_mode": "Mask mode",
    "mask_mode_inpaint_masked": "Inpaint masked",
    "mask_mode_inpaint_not_masked": "Inpaint not masked",
    "masked_content": "Masked content",
    "masked_content_fill": "Fill",
    "masked_content_original": "Original",
    "masked_content_latent_noise": "Latent noise",
    "masked_content_latent_nothing": "Latent nothing",
    "inpaint_area": "Inpaint area",
    "inpaint_area_whole": "Whole picture",
    "inpaint_area_masked": "Only masked",
    "only_masked_padding": "Only masked padding, pixels",
    # Hires fix
    "hires_fix": "Hires. fix",
    "hr_upscaler": "Upscaler",
    "hr_scale": "Upscale by",
    "hr_second_pass_steps": "Hires steps",
    "hr_second_pass_steps_info": "0 uses the same number as sampling steps",
    "hr_denoising_strength": "Hires denoising strength",
    "hr_resize_x": "Resize width to",
    "hr_resize_y": "Resize height to",
    "hr_target_size": "Final size",
    # Face detail
    "face_detail": "Face detail",
    "face_detail_enable": "Enable face detail",
    "face_detail_info": "Finds faces and redraws them at higher resolution",
    "face_detail_prompt": "Face prompt",
    "face_detail_prompt_placeholder": "Leave empty to use the main prompt",
    "face_detail_negative_prompt": "Face negative prompt",
    "face_detail_denoising_strength": "Face denoising strength",
    "face_detail_confidence": "Detection confidence",
    "face_detail_mask_blur": "Face mask blur",
    "face_detail_padding": "Face padding, pixels",
    "face_detail_steps": "Face steps",
    "face_detail_no_face": "No face was found; the picture is unchanged",
    # Output
    "output_gallery": "Output",
    "generation_info": "Generation info",
    "save": "Save",
    "open_folder": "Open output folder",
    "send_to_txt2img": "Send to txt2img",
    "send_to_img2img": "Send to img2img",
    "send_to_inpaint": "Send to inpaint",
    "send_to_extras": "Send to extras",
    "progress_generating": "Generating…",
    "progress_loading_model": "Loading model…",
    "interrupted": "Interrupted",
    # Extras
    "extras_upscaler": "Upscaler",
    "extras_scale": "Scale by",
    "extras_upscale": "Upscale",
    "extras_restore_faces": "Restore faces",
    # PNG info
    "png_info_drop": "Drop a generated image here",
    "png_info_parameters": "Parameters",
    "png_info_none": "This image has no generation parameters",
    # History
    "history_refresh": "Refresh history",
    "history_empty": "No pictures yet",
    "history_delete": "Delete",
    "history_delete_confirm": "Delete this picture for good?",
    "history_search": "Search prompts",
    # Settings
    "settings_apply": "Apply settings",
    "settings_saved": "Settings saved",
    "settings_reload_ui": "Reload UI",
    "settings_outputs_dir": "Output folder",
    "settings_models_dir": "Models folder",
    "settings_language": "Language",
    "settings_save_metadata": "Save generation parameters in PNG files",
    # Notices
    "demo_model_notice": (
        "A tiny demo model is loaded, so pictures will look like noise. Put a real "
        "Stable Diffusion checkpoint in the models folder and press Refresh."
    ),
    "no_checkpoint_notice": "No checkpoint found. Put a .safetensors model in the models folder and press Refresh.",
    "load_problems": "Some files could not be loaded",
    "error_title": "Something went wrong",
}

ZH: dict[str, str] = {
    # Tabs
    "tab_txt2img": "文生图",
    "tab_img2img": "图生图",
    "tab_inpaint": "局部重绘",
    "tab_extras": "后期处理",
    "tab_png_info": "图片信息",
    "tab_history": "历史记录",
    "tab_settings": "设置",
    # Prompting
    "prompt": "提示词",
    "prompt_placeholder": "描述你想画的人物，中文英文都可以（Ctrl+Enter 生成）",
    "negative_prompt": "反向提示词",
    "negative_prompt_placeholder": "不希望出现在画面里的内容",
    "translated_prompt": "翻译后的提示词（实际发送给模型）",
    "translated_negative_prompt": "翻译后的反向提示词",
    "translation_notes": "翻译提示",
    "translate_preview": "预览翻译",
    "translation_setting": "提示词翻译",
    "translation_auto": "自动（有翻译模型就用模型，否则用内置词库）",
    "translation_glossary": "内置词库（离线）",
    "translation_marian": "MarianMT 翻译模型",
    "translation_off": "关闭（按原文使用）",
    # Main buttons
    "generate": "生成",
    "interrupt": "中止",
    "skip": "跳过",
    "refresh": "刷新",
    # Sampling
    "sampling_settings": "采样设置",
    "sampler": "采样方法",
    "scheduler": "调度类型",
    "steps": "采样步数",
    "cfg_scale": "提示词引导系数（CFG）",
    "seed": "随机种子",
    "seed_info": "填 -1 则每次随机",
    "seed_random": "随机种子",
    "seed_reuse": "沿用上一张的种子",
    "width": "宽度",
    "height": "高度",
    "swap_dimensions": "交换宽高",
    "batch_count": "生成批次",
    "batch_size": "每批数量",
    "checkpoint": "大模型",
    "vae": "VAE",
    "clip_skip": "CLIP 跳过层数",
    "model_family": "模型类型",
    # Presets and styles
    "presets": "预设",
    "preset_none": "不使用",
    "preset_apply": "应用预设",
    "preset_description": "预设说明",
    "preset_recommended": "推荐模型",
    "styles": "风格",
    "styles_info": "按选择的先后顺序叠加",
    "styles_apply": "把风格写进提示词",
    "styles_reload": "重新加载风格",
    # img2img / inpaint
    "input_image": "原图",
    "mask": "蒙版",
    "draw_mask": "涂抹需要重画的区域",
    "denoising_strength": "重绘幅度",
    "resize_mode": "缩放模式",
    "resize_just_resize": "仅调整大小",
    "resize_crop_and_resize": "裁剪后缩放",
    "resize_and_fill": "缩放后填充空白",
    "mask_blur": "蒙版边缘模糊",
    "mask_mode": "蒙版模式",
    "mask_mode_inpaint_masked": "重绘蒙版内容",
    "mask_mode_inpaint_not_masked": "重绘非蒙版内容",
    "masked_content": "蒙版区域内容处理",
    "masked_content_fill": "填充",
    "masked_content_original": "原图",
    "masked_content_latent_noise": "潜空间噪声",
    "masked_content_latent_nothing": "空白潜空间",
    "inpaint_area": "重绘区域",
    "inpaint_area_whole": "整张图片",
    "inpaint_area_masked": "仅蒙版区域",
    "only_masked_padding": "仅重绘蒙版区域时的边缘预留像素",
    # Hires fix
    "hires_fix": "高清修复",
    "hr_upscaler": "放大算法",
    "hr_scale": "放大倍数",
    "hr_second_pass_steps": "高清修复步数",
    "hr_second_pass_steps_info": "填 0 则与采样步数相同",
    "hr_denoising_strength": "高清修复重绘幅度",
    "hr_resize_x": "宽度调整为",
    "hr_resize_y": "高度调整为",
    "hr_target_size": "最终尺寸",
    # Face detail
    "face_detail": "面部精修",
    "face_detail_enable": "启用面部精修",
    "face_detail_info": "自动找到人脸，放大后重新绘制，让五官更精细",
    "face_detail_prompt": "面部提示词",
    "face_detail_prompt_placeholder": "留空则沿用主提示词",
    "face_detail_negative_prompt": "面部反向提示词",
    "face_detail_denoising_strength": "面部重绘幅度",
    "face_detail_confidence": "人脸检测置信度",
    "face_detail_mask_blur": "面部蒙版模糊",
    "face_detail_padding": "面部外扩像素",
    "face_detail_steps": "面部重绘步数",
    "face_detail_no_face": "没有检测到人脸，图片保持不变",
    # Output
    "output_gallery": "生成结果",
    "generation_info": "生成参数",
    "save": "保存",
    "open_folder": "打开输出文件夹",
    "send_to_txt2img": "发送到文生图",
    "send_to_img2img": "发送到图生图",
    "send_to_inpaint": "发送到局部重绘",
    "send_to_extras": "发送到后期处理",
    "progress_generating": "正在生成…",
    "progress_loading_model": "正在加载模型…",
    "interrupted": "已中止",
    # Extras
    "extras_upscaler": "放大算法",
    "extras_scale": "放大倍数",
    "extras_upscale": "放大",
    "extras_restore_faces": "面部修复",
    # PNG info
    "png_info_drop": "把生成的图片拖到这里",
    "png_info_parameters": "生成参数",
    "png_info_none": "这张图片里没有生成参数",
    # History
    "history_refresh": "刷新历史记录",
    "history_empty": "还没有生成过图片",
    "history_delete": "删除",
    "history_delete_confirm": "确定永久删除这张图片吗？",
    "history_search": "搜索提示词",
    # Settings
    "settings_apply": "保存设置",
    "settings_saved": "设置已保存",
    "settings_reload_ui": "重新加载界面",
    "settings_outputs_dir": "输出文件夹",
    "settings_models_dir": "模型文件夹",
    "settings_language": "界面语言",
    "settings_save_metadata": "在 PNG 图片中保存生成参数",
    # Notices
    "demo_model_notice": (
        "当前加载的是演示用的微型模型，生成的图片只会是一片噪点。"
        "请把正式的 Stable Diffusion 大模型放进模型文件夹，然后点击“刷新”。"
    ),
    "no_checkpoint_notice": "没有找到大模型。请把 .safetensors 模型文件放进模型文件夹，然后点击“刷新”。",
    "load_problems": "部分文件未能加载",
    "error_title": "出错了",
}

LANGUAGES: dict[str, dict[str, str]] = {"en": EN, "zh": ZH}

# Top-level names Gradio's own translations use; a custom key with one of these names would
# shadow Gradio's built-in strings for that component.
GRADIO_RESERVED_KEYS = frozenset({
    "_name", "annotated_image", "audio", "blocks", "chat_interface", "chatbot", "checkbox",
    "code", "color_picker", "common", "dataframe", "dropdown", "errors", "file",
    "highlighted_text", "image", "image_editor", "label", "login", "number", "plot", "radio",
    "slider", "status", "upload_text", "video", "gallery", "textbox", "upload", "form",
    "interface", "model3d", "json", "html", "markdown", "button", "tabs",
})

# "zh" covers zh-CN, zh-TW ... through the browser's locale fallback; zh-CN is listed as well
# because Gradio ships its own zh-CN strings and picks that locale for Chinese browsers.
I18N = gr.I18n(en=EN, zh=ZH, **{"zh-CN": ZH})


def t(key: str):
    """Translatable text for a Gradio component (label, info, placeholder, button value...)."""
    if key not in EN:
        raise KeyError(f"unknown UI string key {key!r}")
    return I18N(key)


def text(key: str, lang: str = "en") -> str:
    """Plain text of ``key`` in ``lang`` ("en", "zh", "zh-CN" ...), English as a fallback."""
    table = LANGUAGES.get((lang or "en").split("-")[0].lower(), EN)
    return table.get(key) or EN[key]
