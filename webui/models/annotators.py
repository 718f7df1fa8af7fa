"""ControlNet preprocessors that need weights ("annotators"), in plain torch.

They read the files users already have from the lllyasviel/Annotators repository, placed in
``models/ControlNet/annotators``:

* OpenPose body (``body_pose_model.pth``): the CMU two-branch network (VGG-19 front, six
  stages of part heatmaps + part affinity fields), as converted to PyTorch by pytorch-openpose
  (MIT) and used by controlnet_aux (Apache-2.0). Keypoints are decoded from heatmap peaks and
  grouped into people along the affinity fields, then drawn with :mod:`webui.imaging.poses`.
  Without that file, and for hands and face (``openpose_hand``/``_face``/``_full``), MediaPipe's
  shipped models find the points (:mod:`webui.models.mediapipe_pose`).
* Line art (``sk_model.pth``, coarse: ``sk_model2.pth``): the "informative drawings" ResNet
  generator (3 residual blocks, instance norm) that ControlNet 1.1's line-art model was trained on.

* Depth (``dpt_hybrid-midas-501f0c75.pt``): MiDaS DPT-hybrid, see :mod:`webui.models.depth`.

Written here instead of importing controlnet_aux: that package imports torchvision and timm at
start-up, and the PyPI torchvision wheel does not load with a CPU build of torch.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from .depth import DEPTH_FILE, MidasDepth, depth_map
from . import mediapipe_models, mediapipe_pose, model_files
from ..errors import UserError
from ..imaging.openpose_draw import draw_bodies, draw_openpose
from ..request.controlnet import ANNOTATOR_MODULES, annotator_module, openpose_parts

FIELD = "controlnet_units"
SOURCE = "the lllyasviel/Annotators repository on Hugging Face"


# ---- OpenPose body network -------------------------------------------------------------------

def _convs(layers: list[tuple], no_relu: str = "") -> nn.Sequential:
    """('name', in, out, kernel) convolutions (padding keeps the size) with ReLU, or ('poolN',)."""
    mods: list[tuple[str, nn.Module]] = []
    for name, *spec in layers:
        if name.startswith("pool"):
            mods.append((name, nn.MaxPool2d(2, 2)))
            continue
        cin, cout, k = spec
        mods.append((name, nn.Conv2d(cin, cout, k, padding=k // 2)))
        if name != no_relu:
            mods.append((f"relu_{name}", nn.ReLU(inplace=True)))
    return nn.Sequential(OrderedDict(mods))


def _front() -> nn.Sequential:
    spec = [("conv1_1", 3, 64), ("conv1_2", 64, 64), ("pool1_stage1",), ("conv2_1", 64, 128), ("conv2_2", 128, 128),
            ("pool2_stage1",), ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256),
            ("conv3_4", 256, 256), ("pool3_stage1",), ("conv4_1", 256, 512), ("conv4_2", 512, 512),
            ("conv4_3_CPM", 512, 256), ("conv4_4_CPM", 256, 128)]
    return _convs([s if len(s) == 1 else (*s, 3) for s in spec])


def _stage(stage: int, branch: int, out: int) -> nn.Sequential:
    """Branch 1 predicts the 38 affinity-field channels, branch 2 the 19 heatmaps."""
    if stage == 1:
        names = [f"conv5_{i}_CPM_L{branch}" for i in range(1, 6)]
        spec = [(names[0], 128, 128, 3), (names[1], 128, 128, 3), (names[2], 128, 128, 3), (names[3], 128, 512, 1),
                (names[4], 512, out, 1)]
    else:
        names = [f"Mconv{i}_stage{stage}_L{branch}" for i in range(1, 8)]
        spec = [(names[0], 185, 128, 7)] + [(n, 128, 128, 7) for n in names[1:5]] + [
            (names[5], 128, 128, 1), (names[6], 128, out, 1)]
    return _convs(spec, no_relu=names[-1])


class BodyPoseNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.model0 = _front()
        for s in range(1, 7):
            setattr(self, f"model{s}_1", _stage(s, 1, 38))
            setattr(self, f"model{s}_2", _stage(s, 2, 19))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.model0(x)
        paf, heat = self.model1_1(feats), self.model1_2(feats)
        for s in range(2, 7):
            both = torch.cat([paf, heat, feats], 1)
            paf, heat = getattr(self, f"model{s}_1")(both), getattr(self, f"model{s}_2")(both)
        return paf, heat

    def load_file_dict(self, sd: dict) -> None:
        """The .pth names layers without their block ("conv1_1.weight", not "model0.conv1_1.weight")."""
        self.load_state_dict({k: sd[k.split(".", 1)[1]] for k in self.state_dict()})


# ---- OpenPose keypoint decoding --------------------------------------------------------------

# Limbs as 0-based OpenPose keypoint pairs and the affinity-field channels (x, y) of each; the
# last two (ear-shoulder) only join people, they start none.
_LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
          (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17))
_PAF = ((12, 13), (20, 21), (14, 15), (16, 17), (22, 23), (24, 25), (0, 1), (2, 3), (4, 5), (6, 7), (8, 9),
        (10, 11), (28, 29), (30, 31), (34, 35), (32, 33), (36, 37), (18, 19), (26, 27))
PEAK_THRESHOLD, PAF_THRESHOLD, SAMPLES, MAX_PEAKS = 0.1, 0.05, 10, 32


def _peaks(heat: np.ndarray) -> list[list[tuple[float, float, float, int]]]:
    """Per part: (x, y, score, id) at local maxima of the smoothed heatmap above the threshold."""
    out, next_id = [], 0
    for part in range(18):
        raw = heat[:, :, part]
        smooth = cv2.GaussianBlur(raw, (0, 0), 3)
        pad = np.pad(smooth, 1, constant_values=-np.inf)
        centre = pad[1:-1, 1:-1]
        is_peak = ((centre >= pad[:-2, 1:-1]) & (centre >= pad[2:, 1:-1]) & (centre >= pad[1:-1, :-2])
                   & (centre >= pad[1:-1, 2:]) & (centre > PEAK_THRESHOLD))
        ys, xs = np.nonzero(is_peak)
        if len(xs) > MAX_PEAKS:  # a noisy map: keep the strongest, the grouping below is quadratic
            best = np.argsort(raw[ys, xs])[::-1][:MAX_PEAKS]
            ys, xs = ys[best], xs[best]
        out.append([(float(x), float(y), float(raw[y, x]), next_id + i) for i, (x, y) in enumerate(zip(xs, ys))])
        next_id += len(xs)
    return out


def _connections(paf: np.ndarray, cand_a, cand_b, channels, height: int) -> list[tuple[int, int, float]]:
    """(id a, id b, score) of the limbs the affinity field supports, best first, each end used once."""
    h, w = paf.shape[:2]
    scored = []
    for i, a in enumerate(cand_a):
        for j, b in enumerate(cand_b):
            vec = np.array([b[0] - a[0], b[1] - a[1]])
            norm = max(1e-3, float(np.hypot(*vec)))
            xs = np.clip(np.round(np.linspace(a[0], b[0], SAMPLES)).astype(int), 0, w - 1)
            ys = np.clip(np.round(np.linspace(a[1], b[1], SAMPLES)).astype(int), 0, h - 1)
            along = paf[ys, xs, channels[0]] * vec[0] / norm + paf[ys, xs, channels[1]] * vec[1] / norm
            score = along.mean() + min(0.5 * height / norm - 1, 0)  # long limbs need strong support
            if (along > PAF_THRESHOLD).sum() > 0.8 * SAMPLES and score > 0:
                scored.append((score, i, j))
    used_a, used_b, out = set(), set(), []
    for score, i, j in sorted(scored, reverse=True):
        if i not in used_a and j not in used_b:
            used_a.add(i), used_b.add(j)
            out.append((cand_a[i][3], cand_b[j][3], score))
            if len(out) >= min(len(cand_a), len(cand_b)):
                break
    return out


def decode_poses(heat: np.ndarray, paf: np.ndarray) -> list[list[tuple[float, float] | None]]:
    """People as 18 (x, y) pixel keypoints (None: not found) from H x W x 19 heatmaps and
    H x W x 38 affinity fields, grouped the OpenPose way."""
    peaks = _peaks(heat)
    by_id = {p[3]: p for part in peaks for p in part}
    people: list[dict] = []  # {"parts": [id or -1] * 18, "score": float, "count": int}
    for k, ((pa, pb), channels) in enumerate(zip(_LIMBS, _PAF)):
        if not peaks[pa] or not peaks[pb]:
            continue
        for ida, idb, score in _connections(paf, peaks[pa], peaks[pb], channels, heat.shape[0]):
            found = [p for p in people if p["parts"][pa] == ida or p["parts"][pb] == idb]
            if len(found) == 2 and not any(x >= 0 and y >= 0 for x, y in zip(found[0]["parts"], found[1]["parts"])):
                one, two = found  # two halves of one person: merge them
                one["parts"] = [max(x, y) for x, y in zip(one["parts"], two["parts"])]
                one["score"] += two["score"] + score
                one["count"] += two["count"]
                people.remove(two)
            elif found:
                person = found[0]
                if person["parts"][pb] != idb:
                    person["parts"][pb] = idb
                    person["count"] += 1
                    person["score"] += by_id[idb][2] + score
            elif k < 17:
                parts = [-1] * 18
                parts[pa], parts[pb] = ida, idb
                people.append({"parts": parts, "count": 2, "score": by_id[ida][2] + by_id[idb][2] + score})
    keep = [p for p in people if p["count"] >= 4 and p["score"] / p["count"] >= 0.4]
    return [[(by_id[i][0], by_id[i][1]) if i >= 0 else None for i in p["parts"]] for p in keep]


@torch.no_grad()
def detect_bodies(net: BodyPoseNet, img: Image.Image) -> list[list[tuple[float, float] | None]]:
    """Keypoints (pixels of `img`) of the people in an RGB picture."""
    rgb = np.asarray(img.convert("RGB"), dtype=np.float32)
    h, w = rgb.shape[:2]
    scale = 184 / h  # the network's training box: 368 px at half scale, as the reference decoder runs it
    sw, sh = max(8, round(w * scale)), max(8, round(h * scale))
    small = cv2.resize(rgb[:, :, ::-1], (sw, sh), interpolation=cv2.INTER_CUBIC)  # the model was trained on BGR
    pw, ph = -(-sw // 8) * 8, -(-sh // 8) * 8
    padded = np.full((ph, pw, 3), 128, np.float32)
    padded[:sh, :sw] = small
    param = next(net.parameters())
    x = torch.from_numpy(padded / 256 - 0.5).permute(2, 0, 1)[None].to(param.device, param.dtype)
    paf, heat = net(x)
    maps = F.interpolate(torch.cat([heat, paf], 1).float(), size=(ph, pw), mode="bicubic")[:, :, :sh, :sw]
    maps = F.interpolate(maps, size=(h, w), mode="bicubic")[0].permute(1, 2, 0).cpu().numpy()
    return decode_poses(np.ascontiguousarray(maps[:, :, :19]), np.ascontiguousarray(maps[:, :, 19:]))


def pose_map(people, size: tuple[int, int], out_size: tuple[int, int]) -> Image.Image:
    """Draw detected people (pixels of a `size` picture) as OpenPose skeletons at `out_size`."""
    return Image.fromarray(draw_bodies(people, size, out_size))


# ---- line art --------------------------------------------------------------------------------

class _Residual(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv_block = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch),
                                        nn.ReLU(inplace=True), nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3),
                                        nn.InstanceNorm2d(ch))

    def forward(self, x):
        return x + self.conv_block(x)


class LineartNet(nn.Module):
    """RGB in 0..1 -> one channel, dark lines on white, in 0..1."""

    def __init__(self, residual_blocks: int = 3):
        super().__init__()
        self.model0 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(3, 64, 7), nn.InstanceNorm2d(64), nn.ReLU(True))
        self.model1 = nn.Sequential(nn.Conv2d(64, 128, 3, 2, 1), nn.InstanceNorm2d(128), nn.ReLU(True),
                                    nn.Conv2d(128, 256, 3, 2, 1), nn.InstanceNorm2d(256), nn.ReLU(True))
        self.model2 = nn.Sequential(*[_Residual(256) for _ in range(residual_blocks)])
        self.model3 = nn.Sequential(nn.ConvTranspose2d(256, 128, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(128),
                                    nn.ReLU(True), nn.ConvTranspose2d(128, 64, 3, 2, 1, output_padding=1),
                                    nn.InstanceNorm2d(64), nn.ReLU(True))
        self.model4 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(64, 1, 7), nn.Sigmoid())

    def forward(self, x):
        return self.model4(self.model3(self.model2(self.model1(self.model0(x)))))

    def load_file_dict(self, sd: dict) -> None:
        self.load_state_dict(sd)


@torch.no_grad()
def lineart_map(net: LineartNet, img: Image.Image, resolution: int) -> Image.Image:
    """White lines on black (what line-art ControlNets expect), short side ~ `resolution`."""
    scale = resolution / min(img.size)
    w, h = (max(8, round(v * scale / 8) * 8) for v in img.size)
    rgb = np.asarray(img.convert("RGB").resize((w, h), Image.LANCZOS), dtype=np.float32) / 255
    param = next(net.parameters())
    line = net(torch.from_numpy(rgb).permute(2, 0, 1)[None].to(param.device, param.dtype))[0, 0]
    grey = 255 - (line.float().cpu().numpy() * 255).clip(0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


# ---- which file each preprocessor needs, loading, caching ------------------------------------

# module name -> (network class, file); the openpose family falls back on MediaPipe (openpose_map).
MODELS = {
    "openpose": (BodyPoseNet, "body_pose_model.pth"),
    "lineart": (LineartNet, "sk_model.pth"),
    "lineart_realistic": (LineartNet, "sk_model.pth"),
    "lineart_coarse": (LineartNet, "sk_model2.pth"),
    "depth": (MidasDepth, DEPTH_FILE),
    "depth_midas": (MidasDepth, DEPTH_FILE),
}
assert set(MODELS) == set(ANNOTATOR_MODULES), "request.controlnet.ANNOTATOR_MODULES names these modules"


def resolve(module: str) -> tuple[str, type, str]:
    """(canonical module, network class, file) for a module name, or a UserError saying why not."""
    m = annotator_module(module)
    return m, *MODELS[m]


def notes(module: str) -> list[str]:
    _, hands, face = openpose_parts(module)
    if (hands or face) and mediapipe_models.unavailable():
        return [f"the {module} preprocessor draws the body skeleton only here (hands and face need "
                f"mediapipe=={mediapipe_models.VERSION})"]
    return []


class AnnotatorCache:
    """Annotator networks on the manager's device, each file loaded once."""

    def __init__(self, folder: Path, device: torch.device):
        self.folder, self.device = Path(folder), device
        self._nets: dict[str, nn.Module] = {}

    def _find(self, filename: str):
        return model_files.lookup(self.folder, filename, (Path(filename).suffix,), what="annotator", field=FIELD,
                                  recursive=False)

    def has(self, module: str) -> bool:
        """Whether the file `module` needs is in the folder."""
        return self._find(resolve(module)[2]) is not None

    def get(self, module: str) -> nn.Module:
        _, cls, filename = resolve(module)
        found = self._find(filename)
        if found is None:  # missing, or a link out of the folder
            raise UserError(f"the {module} preprocessor needs {filename} in {self.folder} (from {SOURCE}); or "
                            f"choose preprocessor 'none' and upload a ready map", field=FIELD)
        path = found.path
        key = str(path)
        if key not in self._nets:
            self._nets[key] = load(cls, path).to(self.device).eval()
        return self._nets[key]

    def loaded(self) -> list[str]:
        return [Path(k).name for k in self._nets]


def load(cls: type, path: Path) -> nn.Module:
    """A network from an annotator file, in fp32 (small nets; heatmap peaks need the precision)."""
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's file
        raise UserError(f"{path.name} in {path.parent} cannot be read ({str(e)[:160]}); download it again from "
                        f"{SOURCE}", field=FIELD) from None
    if isinstance(sd, dict) and isinstance(sd.get("model"), dict):
        sd = sd["model"]  # a training checkpoint (MiDaS saves some that way)
    net = cls()
    try:
        if not isinstance(sd, dict):
            raise KeyError("not a state dict")
        net.load_file_dict({k: v.float() for k, v in sd.items() if isinstance(v, torch.Tensor)})
    except (KeyError, RuntimeError) as e:
        raise UserError(f"{path.name} in {path.parent} does not hold the weights this preprocessor needs "
                        f"({str(e)[:160]}); download it again from {SOURCE}", field=FIELD) from None
    return net


def run(cache: AnnotatorCache, module: str, img: Image.Image, resolution: int, size: tuple[int, int]) -> Image.Image:
    """The control map of `img` at `size` (width, height) for a weight-needing preprocessor."""
    if resolve(module)[0] == "openpose":
        return openpose_map(cache, module, img, resolution, size)
    net = cache.get(module)
    if isinstance(net, MidasDepth):
        return depth_map(net, img, resolution).resize(size, Image.BILINEAR)
    return lineart_map(net, img, resolution).resize(size, Image.BILINEAR)



def openpose_map(cache: AnnotatorCache, module: str, img: Image.Image, resolution: int,
                 size: tuple[int, int]) -> Image.Image:
    """An OpenPose map: the body from body_pose_model.pth when it is in the folder, else from
    MediaPipe's BlazePose; hands and face (openpose_hand/_face/_full) from MediaPipe."""
    body, hands, face = openpose_parts(module)
    use_file = body and cache.has(module)
    why = mediapipe_models.unavailable()
    if why and not use_file:
        filename = resolve(module)[2]
        raise UserError(f"the {module} preprocessor needs {filename} in {cache.folder} (from {SOURCE}), or {why}; "
                        "or choose preprocessor 'none' and upload a ready map", field=FIELD)
    frame, bodies = img.size, []
    if use_file:
        # The network always sees 184 px of height; the resolution only sets how finely its maps
        # are decoded, and 57 maps beyond 1024 px cost memory for nothing.
        scale = min(resolution, 1024) / min(img.size)
        work = img.resize((max(8, round(img.width * scale)), max(8, round(img.height * scale))), Image.LANCZOS)
        frame, bodies = work.size, detect_bodies(cache.get(module), work)
    found = mediapipe_pose.Detection(img.size)
    if not why and (hands or face or not use_file):
        found = mediapipe_pose.detect(img, body=body and not use_file, hands=hands, face=face, field_name=FIELD)
    sx, sy = frame[0] / img.width, frame[1] / img.height  # MediaPipe's pixels -> the frame's

    def fit(points):
        return [None if p is None else (p[0] * sx, p[1] * sy) for p in points]

    if found.body is not None:
        bodies.append(fit(found.body))
    return draw_openpose(frame, size, bodies, [fit(h) for h in found.hands], [fit(f) for f in found.faces])
