"""The face detail pass: find faces, repaint each one at the model's native resolution, and
blend it back with a feathered mask.

For each selected face (largest first by default): the face's outline from the detector's face
mesh (MediaPipe), grown a little, becomes a soft mask (``masks.feathered_polygon``) -- or, for
detectors without outlines, the face box, widened a little, a soft ellipse
(``masks.feathered_mask``); a crop around it (mask plus ``padding``, grown
to the aspect of the inpaint size) is resized to that size -- 512x512 for SD1, 1024x1024 for
SDXL by default -- and inpainted with the face prompt at the face denoising strength; the
result goes back through ``masks.paste_crop``, so every pixel outside the feathered masks is
exactly the input pixel. Faces are done one after another on the updated picture.

Prompts: the face prompt defaults to the main prompt; ``[SEP]`` separates one prompt per face
(in face order; the last one repeats), and ``[PROMPT]`` inside it stands for the main prompt.

The request fields are ``face_detail*`` (see request/face.py). Clients of the ADetailer extension's
API send ``alwayson_scripts: {"ADetailer": {"args": [...]}}`` with ``ad_*`` keys; the common
ones are translated by :func:`face_fields_from_alwayson` (its detection models are not: any
``ad_model`` selects our default detector).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable

from PIL import Image

from ...models.faces import DEFAULT_DETECTOR, FaceBox, face_crop_region, make_detector, resolve_detector, select_faces
from ...imaging.masks import feathered_mask, feathered_polygon, paste_crop
from ..denoise import run_pass
from ..plan import PassSpec, Prompts
from ...request.face import PROMPT_TOKEN, SEP, face_fields_from_alwayson  # noqa: F401 - re-exported

# The mask ellipse is the detector's box widened by this fraction on each side: detector
# boxes are tight (brows to mouth) and the repainted area should reach forehead and jaw. A
# face-mesh outline (already forehead to chin) is scaled by 1 + this about its centre.
MASK_GROW = 0.1


@dataclass(frozen=True)
class FaceDetailOptions:
    prompt: str = ""
    negative_prompt: str = ""
    denoising_strength: float = 0.4
    steps: int = 0
    max_faces: int = 4
    confidence: float = 0.3
    padding: int = 32
    blur: int = 4
    detector: str = DEFAULT_DETECTOR
    order: str = "largest"
    width: int = 0
    height: int = 0

    @classmethod
    def from_request(cls, req) -> "FaceDetailOptions":
        return cls(req.face_detail_prompt, req.face_detail_negative_prompt, req.face_detail_denoising_strength,
                   req.face_detail_steps, req.face_detail_max_faces, req.face_detail_confidence,
                   req.face_detail_padding, req.face_detail_blur, req.face_detail_detector, req.face_detail_order,
                   req.face_detail_width, req.face_detail_height)


@dataclass
class FaceDetailResult:
    image: Image.Image
    faces: list[FaceBox] = field(default_factory=list)
    masks: list[Image.Image] = field(default_factory=list)  # full-size feathered masks, one per face
    warnings: list[str] = field(default_factory=list)


# An inpainting function: (crop, crop mask, prompt, negative prompt, the crop's box in the
# picture) -> repainted crop.
InpaintFn = Callable[[Image.Image, Image.Image, str, str, tuple], Image.Image]


def native_size(model) -> tuple[int, int]:
    """The resolution the model was trained at: UNet sample size x VAE factor."""
    pipe = model.pipe
    s = pipe.unet.config.sample_size
    w, h = (s, s) if isinstance(s, int) else (s[1], s[0])
    f = pipe.vae_scale_factor
    return int(w * f), int(h * f)


def face_prompts(template: str, main: str, count: int) -> list[str]:
    """One prompt per face: [SEP]-separated parts in order, the last repeating; empty -> main."""
    parts = [p.strip() for p in (template or "").split(SEP)]
    out = []
    for i in range(count):
        p = parts[min(i, len(parts) - 1)]
        out.append(p.replace(PROMPT_TOKEN, main) if p else main)
    return out


def _grow(box: FaceBox, size: tuple[int, int]) -> tuple[int, int, int, int]:
    gx, gy = round(box.w * MASK_GROW), round(box.h * MASK_GROW)
    return max(0, box.x - gx), max(0, box.y - gy), min(size[0], box.x + box.w + gx), min(size[1], box.y + box.h + gy)


@dataclass(frozen=True)
class FacePlan:
    box: FaceBox
    mask: Image.Image                  # full-size feathered mask
    region: tuple[int, int, int, int]  # crop box in the image


def plan_faces(image: Image.Image, options: FaceDetailOptions, detector, size: tuple[int, int]) -> list[FacePlan]:
    """Detect and select faces, and for each the feathered mask and the crop region."""
    faces = select_faces(detector.detect(image), options.max_faces, options.confidence, options.order)
    outline = getattr(detector, "face_outline", None)  # detectors with a face mesh offer it
    plans = []
    for face in faces:
        points = outline(image, face) if outline is not None else None
        if points:
            mask = feathered_polygon(image.size, points, options.blur, grow=MASK_GROW)
            outer = mask.getbbox() or face.region  # the feathered edge is inside the bbox already
        else:
            shape_box = _grow(face, image.size)
            mask = feathered_mask(image.size, shape_box, options.blur, "ellipse")
            r = options.blur
            outer = (shape_box[0] - r, shape_box[1] - r, shape_box[2] + r, shape_box[3] + r)
        # The crop holds the whole feathered mask plus padding, so no edge of it is cut hard.
        plans.append(FacePlan(face, mask, face_crop_region(outer, image.size, options.padding, size[0] / size[1])))
    return plans


def detail_faces(image: Image.Image, options: FaceDetailOptions, detector, inpaint: InpaintFn,
                 size: tuple[int, int], main_prompt: str = "", main_negative: str = "") -> FaceDetailResult:
    """Run the face pass on ``image`` with ``inpaint`` doing the repainting at ``size``."""
    image = image.convert("RGB")
    plans = plan_faces(image, options, detector, size)
    result = FaceDetailResult(image, [p.box for p in plans], [p.mask for p in plans])
    if not plans:
        result.warnings.append("face detail: no face found, the image is unchanged (lower the confidence or "
                               "try another detector)")
        return result
    prompts = face_prompts(options.prompt, main_prompt, len(plans))
    negatives = face_prompts(options.negative_prompt, main_negative, len(plans))
    for plan, prompt, negative in zip(plans, prompts, negatives):
        crop = image.crop(plan.region).resize(size, Image.Resampling.LANCZOS)
        crop_mask = plan.mask.crop(plan.region).resize(size, Image.Resampling.LANCZOS)
        repainted = inpaint(crop, crop_mask, prompt, negative, plan.region)
        image = paste_crop(image, repainted, plan.region, plan.mask)
    result.image = image
    return result


def infotext_params(options: FaceDetailOptions, size: tuple[int, int], faces: int, main_prompt: str,
                    main_negative: str) -> dict:
    return {
        "Face detail detector": options.detector,
        "Face detail faces": faces,
        "Face detail prompt": options.prompt if options.prompt and options.prompt != main_prompt else None,
        "Face detail negative prompt": (options.negative_prompt if options.negative_prompt
                                        and options.negative_prompt != main_negative else None),
        "Face detail denoising strength": options.denoising_strength,
        "Face detail steps": options.steps or None,
        "Face detail confidence": options.confidence,
        "Face detail max faces": options.max_faces,
        "Face detail order": options.order if options.order != "largest" else None,
        "Face detail padding": options.padding,
        "Face detail mask blur": options.blur,
        "Face detail size": f"{size[0]}x{size[1]}",
    }


def engine_pass(ctx, image: Image.Image, seed: int) -> tuple[Image.Image, dict]:
    """The face pass inside a generation: one inpaint pass per face over the shared weights,
    seeded with the image's seed, with the run's extensions that apply in sub-passes (ControlNet
    maps of the face's crop, the reference images). Returns the image and its infotext keys."""
    req, model, job = ctx.request, ctx.model, ctx.job
    options = FaceDetailOptions.from_request(req)
    name, fallback = resolve_detector(options.detector)
    options = replace(options, detector=name)
    if fallback:
        ctx.note(fallback)
    size = (options.width or native_size(model)[0], options.height or native_size(model)[1])
    detector = make_detector(options.detector, ctx.engine.settings.models_dir, confidence=options.confidence)
    steps = options.steps or req.steps
    t0 = time.perf_counter()

    def inpaint(crop: Image.Image, crop_mask: Image.Image, prompt: str, negative: str, region) -> Image.Image:
        if job.stop_requested or int(steps * options.denoising_strength) < 1:
            return crop
        spec = PassSpec(task="inpaint", groups=(Prompts(prompt, negative, 1),), seeds=(seed,), width=size[0],
                        height=size[1], steps=steps, cfg_scale=req.cfg_scale, sampler=req.sampler_name,
                        schedule=req.scheduler, clip_skip=req.clip_skip, strength=options.denoising_strength,
                        image=crop, mask=crop_mask, region=region, source_size=image.size, label="face ")
        out = run_pass(ctx, spec, ctx.for_subpass(prompt, negative))
        ctx.note(*out.notes[0])
        if job.cut_short:  # stopped inside this face: keep the face as it was
            return crop
        return paste_crop(crop, out.images[0], (0, 0, *size), crop_mask)

    out = detail_faces(image, options, detector, inpaint, size, req.prompt, req.negative_prompt)
    ctx.note(*(f"{w} (seed {seed})" for w in out.warnings))
    ctx.time("face detail", time.perf_counter() - t0)
    return out.image, infotext_params(options, size, len(out.faces), req.prompt, req.negative_prompt)
