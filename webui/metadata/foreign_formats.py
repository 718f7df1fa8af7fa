"""Other tools' metadata turned into an A1111 infotext: NovelAI (`Comment` JSON), InvokeAI
(`invokeai_metadata`) and ComfyUI (the executed `prompt` graph, followed from the first-pass
sampler to its prompts, model, LoRAs, size and a hires pass). Pure text and JSON work; the
image reader calls it when a file carries no infotext of its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from webui.metadata.infotext_syntax import build_infotext
from webui.samplers_names import a1111_sampler_name, a1111_schedule_label, split_legacy_sampler


def _format_weight(value: object) -> str:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "1"
    return str(int(number)) if number.is_integer() else f"{number:g}"


def _model_stem(name: object) -> str | None:
    if not isinstance(name, str) or not name.strip():
        return None
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft"):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


def novelai_to_infotext(items: Mapping[str, str], size: tuple[int, int]) -> str | None:
    try:
        data = json.loads(items.get("Comment", ""))
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    sampler = a1111_sampler_name(str(data.get("sampler", ""))) or data.get("sampler")
    params = {
        "Steps": data.get("steps"),
        "Sampler": sampler,
        "CFG scale": data.get("scale"),
        "Seed": data.get("seed"),
        "Size": size,
    }
    if data.get("strength") is not None and data.get("noise") is not None:
        params["Denoising strength"] = data.get("strength")
    prompt = items.get("Description") or str(data.get("prompt", ""))
    return build_infotext(prompt, str(data.get("uc", "") or ""), params)


_INVOKE_SAMPLERS = {"kdpm_2": "DPM2", "kdpm_2_a": "DPM2 a", "dpmpp_2s": "DPM++ 2S a", "ddpm": "DDPM"}


def invokeai_to_infotext(raw: str) -> str | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or "positive_prompt" not in data:
        return None
    scheduler = str(data.get("scheduler") or "")
    schedule = None
    if scheduler.endswith("_k"):
        scheduler, schedule = scheduler[:-2], "Karras"
    sampler = _INVOKE_SAMPLERS.get(scheduler) or a1111_sampler_name(scheduler) or scheduler or None
    model = data.get("model")
    model_name = None
    if isinstance(model, dict):
        model_name = model.get("name") or model.get("model_name")
    elif isinstance(model, str):
        model_name = model
    size = None
    if isinstance(data.get("width"), int) and isinstance(data.get("height"), int):
        size = (data["width"], data["height"])
    params = {
        "Steps": data.get("steps"),
        "Sampler": sampler,
        "Schedule type": schedule or ("Automatic" if sampler else None),
        "CFG scale": data.get("cfg_scale"),
        "Seed": data.get("seed"),
        "Size": size,
        "Model": _model_stem(model_name),
        "Denoising strength": data.get("strength"),
    }
    return build_infotext(
        str(data.get("positive_prompt") or ""), str(data.get("negative_prompt") or ""), params
    )


# ComfyUI: the `prompt` chunk is the executed graph {node id: {class_type, inputs}}; an input
# is either a literal or a link [source node id, output index].

_COMFY_MAX_DEPTH = 24
_LATENT_INPUTS = ("latent_image", "samples", "latent", "latents", "pixels", "image")
_NO_FOLLOW = frozenset(
    {*_LATENT_INPUTS, "model", "clip", "vae", "positive", "negative", "conditioning", "mask"}
)


def _comfy_node(graph: Mapping[str, object], ref: object) -> dict | None:
    if isinstance(ref, list) and len(ref) == 2 and isinstance(ref[0], (str, int)):
        node = graph.get(str(ref[0]))
        if isinstance(node, dict) and isinstance(node.get("inputs"), dict):
            return node
    return None


def _comfy_ref_id(ref: object) -> str | None:
    if isinstance(ref, list) and len(ref) == 2 and isinstance(ref[0], (str, int)):
        return str(ref[0])
    return None


def _comfy_literal(graph: Mapping[str, object], value: object, kinds: tuple[type, ...], depth: int = 0):
    """A literal of one of `kinds`, following links into primitive-like nodes."""
    if isinstance(value, bool):
        return None
    if isinstance(value, kinds):
        return value
    node = _comfy_node(graph, value)
    if node is None or depth > _COMFY_MAX_DEPTH:
        return None
    inputs = node["inputs"]
    for key in ("value", "seed", "noise_seed", "int", "float", "number", "text", "string", "Text"):
        if key in inputs:
            found = _comfy_literal(graph, inputs[key], kinds, depth + 1)
            if found is not None:
                return found
    for item in inputs.values():
        found = _comfy_literal(graph, item, kinds, depth + 1) if not isinstance(item, list) else None
        if found is not None:
            return found
    return None


def _comfy_param(graph, node: dict, keys: tuple[str, ...], kinds: tuple[type, ...], depth: int = 2):
    """Value of the first of `keys` in `node`'s inputs or in nodes linked to it (e.g. the
    guider / sigmas / noise nodes of SamplerCustomAdvanced), not crossing latents or models."""
    inputs = node["inputs"]
    for key in keys:
        if key in inputs:
            found = _comfy_literal(graph, inputs[key], kinds)
            if found is not None:
                return found
    if depth > 0:
        for key, value in inputs.items():
            if key in _NO_FOLLOW:
                continue
            sub = _comfy_node(graph, value)
            if sub is not None:
                found = _comfy_param(graph, sub, keys, kinds, depth - 1)
                if found is not None:
                    return found
    return None


def _comfy_link(graph, node: dict, keys: tuple[str, ...], depth: int = 2):
    """The link value of the first of `keys` in `node` or in linked non-latent nodes."""
    inputs = node["inputs"]
    for key in keys:
        if key in inputs and isinstance(inputs[key], list):
            return inputs[key]
    if depth > 0:
        for key, value in inputs.items():
            if key in _NO_FOLLOW:
                continue
            sub = _comfy_node(graph, value)
            if sub is not None:
                found = _comfy_link(graph, sub, keys, depth - 1)
                if found is not None:
                    return found
    return None


def _comfy_text(graph, ref: object, role: str, depth: int = 0) -> str | None:
    """Prompt text behind a conditioning link (CLIPTextEncode and pass-through nodes)."""
    node = _comfy_node(graph, ref)
    if node is None or depth > _COMFY_MAX_DEPTH:
        return None
    inputs = node["inputs"]
    for key in ("text", "text_g", "text_l", "prompt", "string", "Text"):
        if key in inputs:
            text = _comfy_literal(graph, inputs[key], (str,))
            if text is not None:
                return text
    for key in (role, "conditioning", "conditioning_to", "conditioning_1", "conditioning_from",
                "conditioning_2", "base_" + role):
        if key in inputs:
            text = _comfy_text(graph, inputs[key], role, depth + 1)
            if text is not None:
                return text
    return None


def _comfy_model(graph, ref: object) -> tuple[str | None, list[tuple[str, object]]]:
    """(checkpoint name, [(lora name, weight), ...]) behind a model link."""
    loras: list[tuple[str, object]] = []
    node = _comfy_node(graph, ref)
    for _ in range(_COMFY_MAX_DEPTH):
        if node is None:
            break
        inputs = node["inputs"]
        for key in ("ckpt_name", "unet_name", "model_name", "base_ckpt_name"):
            name = _comfy_literal(graph, inputs.get(key), (str,))
            if name:
                return name, loras
        lora = _comfy_literal(graph, inputs.get("lora_name"), (str,))
        if lora:
            weight = _comfy_literal(graph, inputs.get("strength_model", 1.0), (int, float))
            loras.append((lora, 1.0 if weight is None else weight))
        node = _comfy_node(graph, inputs.get("model"))
    return None, loras


def _comfy_latent_chain(graph, node: dict):
    """Walk a sampler's latent input: yields nodes until a sampler or a source is reached."""
    ref = next((node["inputs"][k] for k in _LATENT_INPUTS if k in node["inputs"]), None)
    for _ in range(_COMFY_MAX_DEPTH):
        current = _comfy_node(graph, ref)
        if current is None:
            return
        yield _comfy_ref_id(ref), current
        inputs = current["inputs"]
        ref = next((inputs[k] for k in _LATENT_INPUTS if isinstance(inputs.get(k), list)), None)


def _is_comfy_sampler(node: dict) -> bool:
    class_type = str(node.get("class_type", ""))
    return "KSampler" in class_type or class_type.startswith("SamplerCustom")


def _comfy_size(graph, node: dict) -> tuple[int, int] | None:
    width = _comfy_literal(graph, node["inputs"].get("width"), (int,))
    height = _comfy_literal(graph, node["inputs"].get("height"), (int,))
    if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
        return width, height
    return None


def comfyui_to_infotext(prompt_graph: object, image_size: tuple[int, int] | None = None) -> str | None:
    """An A1111 infotext derived from a ComfyUI `prompt` graph (JSON text or dict), or None.

    Takes the first-pass sampler (the one fed by an empty latent): its positive / negative
    prompt texts, seed, steps, cfg, sampler and scheduler, the latent size, the checkpoint
    behind its model (LoRA loaders on the way become `<lora:name:weight>` in the prompt),
    and a second sampler fed by an upscaled copy of its output as the hires pass.
    """
    graph = prompt_graph
    if isinstance(graph, (str, bytes)):
        try:
            graph = json.loads(graph)
        except ValueError:
            return None
    if not isinstance(graph, dict):
        return None
    graph = {str(k): v for k, v in graph.items() if isinstance(v, dict)}
    samplers = [(nid, node) for nid, node in graph.items()
                if isinstance(node.get("inputs"), dict) and _is_comfy_sampler(node)]
    if not samplers:
        return None
    samplers.sort(key=lambda item: (0, int(item[0])) if item[0].isdigit() else (1, item[0]))
    sampler_ids = {nid for nid, _ in samplers}

    base_id, base = samplers[0]
    size = None
    for nid, node in samplers:
        chain = list(_comfy_latent_chain(graph, node))
        if any(cid in sampler_ids for cid, _ in chain):
            continue
        sizes = [_comfy_size(graph, n) for _, n in chain if "latent" in str(n.get("class_type", "")).lower()]
        sizes = [s for s in sizes if s]
        if sizes:
            base_id, base, size = nid, node, sizes[-1]
            break

    positive = _comfy_text(graph, _comfy_link(graph, base, ("positive", "conditioning")), "positive")
    negative_link = _comfy_link(graph, base, ("negative",))
    negative = _comfy_text(graph, negative_link, "negative") if negative_link else None

    sampler_raw = _comfy_param(graph, base, ("sampler_name", "sampler"), (str,))
    scheduler_raw = _comfy_param(graph, base, ("scheduler",), (str,))
    sampler = None
    schedule = None
    if sampler_raw:
        sampler, legacy = split_legacy_sampler(sampler_raw)
        sampler = a1111_sampler_name(sampler) or sampler_raw
        schedule = legacy if legacy != "Automatic" else None
    if scheduler_raw:
        schedule = a1111_schedule_label(scheduler_raw) or scheduler_raw

    checkpoint, loras = _comfy_model(graph, _comfy_link(graph, base, ("model",)))
    prompt = positive or ""
    for lora, weight in loras:
        tag = f"<lora:{_model_stem(lora)}:{_format_weight(weight)}>"
        prompt = f"{prompt}, {tag}" if prompt else tag

    params: dict[str, object] = {
        "Steps": _comfy_param(graph, base, ("steps",), (int,)),
        "Sampler": sampler,
        "Schedule type": schedule or ("Automatic" if sampler else None),
        "CFG scale": _comfy_param(graph, base, ("cfg", "guidance"), (int, float)),
        "Seed": _comfy_param(graph, base, ("seed", "noise_seed"), (int,)),
        "Size": size or image_size,
        "Model": _model_stem(checkpoint),
    }
    denoise = _comfy_param(graph, base, ("denoise",), (int, float))
    if isinstance(denoise, (int, float)) and denoise < 1:
        params["Denoising strength"] = denoise

    # A later sampler whose latent comes from the base sampler through an upscale: hires.
    for nid, node in samplers:
        if nid == base_id:
            continue
        chain = list(_comfy_latent_chain(graph, node))
        ids = [cid for cid, _ in chain]
        if base_id not in ids:
            continue
        hires: dict[str, object] = {}
        upscaler = None
        for _, step in chain[: ids.index(base_id)]:
            class_type = str(step.get("class_type", ""))
            scale = _comfy_literal(graph, step["inputs"].get("scale_by"), (int, float))
            if scale:
                hires["Hires upscale"] = scale
            elif "upscale" in class_type.lower() and _comfy_size(graph, step):
                hires["Hires resize"] = _comfy_size(graph, step)
            model_node = _comfy_node(graph, step["inputs"].get("upscale_model"))
            if model_node is not None:
                upscaler = _model_stem(_comfy_literal(graph, model_node["inputs"].get("model_name"), (str,)))
                hires["upscale model"] = True
            elif class_type.startswith("Latent") and upscaler is None and hires:
                upscaler = "Latent"
        if not hires:
            continue  # e.g. an SDXL refiner pass: same size, not a hires fix
        if hires.pop("upscale model", False) and size and image_size:
            # Model upscales (often followed by a rescale): the factor is what came out.
            hires.pop("Hires resize", None)
            hires["Hires upscale"] = round(image_size[0] / size[0], 3)
        hires["Hires steps"] = _comfy_param(graph, node, ("steps",), (int,))
        hires["Hires upscaler"] = upscaler
        hires_denoise = _comfy_param(graph, node, ("denoise",), (int, float))
        if hires_denoise is not None:
            params["Denoising strength"] = hires_denoise
        params.update(hires)
        break

    if not any(params.get(k) is not None for k in ("Steps", "Seed", "CFG scale")) and not prompt:
        return None
    return build_infotext(prompt, negative or "", params)
