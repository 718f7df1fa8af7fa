"""Preprocessors with weights (OpenPose body, line art) on random-weight files written in the
layout of the real lllyasviel/Annotators files, loaded through the real loading code; the
OpenPose keypoint decoder on synthetic heatmaps; clear errors for missing or broken files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from test_controlnet import cpu_service, edges_image, gen, px, sd1_models_dir, unit
from webui.models import annotators
from webui.errors import UserError
from webui.imaging.poses import load_poses
from webui.serving.service import Service


def body_pose_layers() -> list[tuple[str, int, int, int]]:
    """(name, in, out, kernel) of every convolution in body_pose_model.pth, as the file names them."""
    layers = [("conv1_1", 3, 64, 3), ("conv1_2", 64, 64, 3), ("conv2_1", 64, 128, 3), ("conv2_2", 128, 128, 3),
              ("conv3_1", 128, 256, 3), ("conv3_2", 256, 256, 3), ("conv3_3", 256, 256, 3), ("conv3_4", 256, 256, 3),
              ("conv4_1", 256, 512, 3), ("conv4_2", 512, 512, 3), ("conv4_3_CPM", 512, 256, 3),
              ("conv4_4_CPM", 256, 128, 3)]
    for branch, out in ((1, 38), (2, 19)):
        layers += [(f"conv5_{i}_CPM_L{branch}", 128, 128, 3) for i in (1, 2, 3)]
        layers += [(f"conv5_4_CPM_L{branch}", 128, 512, 1), (f"conv5_5_CPM_L{branch}", 512, out, 1)]
        for s in range(2, 7):
            layers += [(f"Mconv1_stage{s}_L{branch}", 185, 128, 7)]
            layers += [(f"Mconv{i}_stage{s}_L{branch}", 128, 128, 7) for i in (2, 3, 4, 5)]
            layers += [(f"Mconv6_stage{s}_L{branch}", 128, 128, 1), (f"Mconv7_stage{s}_L{branch}", 128, out, 1)]
    return layers


def sk_model_shapes() -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of sk_model.pth / sk_model2.pth (3 residual blocks)."""
    shapes = {"model0.1.weight": (64, 3, 7, 7), "model0.1.bias": (64,),
              "model1.0.weight": (128, 64, 3, 3), "model1.0.bias": (128,),
              "model1.3.weight": (256, 128, 3, 3), "model1.3.bias": (256,),
              "model3.0.weight": (256, 128, 3, 3), "model3.0.bias": (128,),
              "model3.3.weight": (128, 64, 3, 3), "model3.3.bias": (64,),
              "model4.1.weight": (1, 64, 7, 7), "model4.1.bias": (1,)}
    for b in range(3):
        for conv in (1, 5):
            shapes[f"model2.{b}.conv_block.{conv}.weight"] = (256, 256, 3, 3)
            shapes[f"model2.{b}.conv_block.{conv}.bias"] = (256,)
    return shapes


def midas_shapes(hidden=768, layers=12, mlp=3072, grid=24, stem=64, depths=(3, 4, 9), widths=(256, 512, 1024),
                 features=256) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of dpt_hybrid-midas-501f0c75.pt (timm ViT-B/16 on a ResNet-50 stem,
    MiDaS fusion); the defaults are the real file's sizes, smaller ones make a tiny file of the
    same layout."""
    vit, bit = "pretrained.model.", "pretrained.model.patch_embed.backbone."
    shapes = {vit + "cls_token": (1, 1, hidden), vit + "pos_embed": (1, grid * grid + 1, hidden),
              bit + "stem.conv.weight": (stem, 3, 7, 7), bit + "stem.norm.weight": (stem,),
              bit + "stem.norm.bias": (stem,), vit + "patch_embed.proj.weight": (hidden, widths[-1], 1, 1),
              vit + "patch_embed.proj.bias": (hidden,), vit + "norm.weight": (hidden,), vit + "norm.bias": (hidden,),
              vit + "head.weight": (1000, hidden), vit + "head.bias": (1000,)}

    def conv(name, cout, cin, k, bias=False, norm=False):
        shapes[f"{name}.weight"] = (cout, cin, k, k) if k else (cout, cin)
        if bias:
            shapes[f"{name}.bias"] = (cout,)
        if norm:
            shapes[f"{name.replace('conv', 'norm')}.weight"] = shapes[f"{name.replace('conv', 'norm')}.bias"] = (cout,)

    for s, (depth, width) in enumerate(zip(depths, widths)):
        cin, mid = stem if s == 0 else widths[s - 1], width // 4
        conv(f"{bit}stages.{s}.blocks.0.downsample.conv", width, cin, 1, norm=True)
        for b in range(depth):
            p = f"{bit}stages.{s}.blocks.{b}."
            conv(p + "conv1", mid, cin if b == 0 else width, 1, norm=True)
            conv(p + "conv2", mid, mid, 3, norm=True)
            conv(p + "conv3", width, mid, 1, norm=True)
    for i in range(layers):
        p = f"{vit}blocks.{i}."
        for n in ("norm1", "norm2"):
            shapes[f"{p}{n}.weight"] = shapes[f"{p}{n}.bias"] = (hidden,)
        conv(p + "attn.qkv", 3 * hidden, hidden, 0, bias=True)
        conv(p + "attn.proj", hidden, hidden, 0, bias=True)
        conv(p + "mlp.fc1", mlp, hidden, 0, bias=True)
        conv(p + "mlp.fc2", hidden, mlp, 0, bias=True)
    for n in (3, 4):  # the two ViT levels; the two shallow ones come from the ResNet stages
        conv(f"pretrained.act_postprocess{n}.0.project.0", hidden, 2 * hidden, 0, bias=True)
        conv(f"pretrained.act_postprocess{n}.3", hidden, hidden, 1, bias=True)
    conv("pretrained.act_postprocess4.4", hidden, hidden, 3, bias=True)
    for n, cin in enumerate((widths[0], widths[1], hidden, hidden), 1):
        conv(f"scratch.layer{n}_rn", features, cin, 3)
        conv(f"scratch.refinenet{n}.out_conv", features, features, 1, bias=True)
        for unit_ in (1, 2):
            for c in (1, 2):
                conv(f"scratch.refinenet{n}.resConfUnit{unit_}.conv{c}", features, features, 3, bias=True)
    conv("scratch.output_conv.0", features // 2, features, 3, bias=True)
    conv("scratch.output_conv.2", 32, features // 2, 3, bias=True)
    conv("scratch.output_conv.4", 1, 32, 1, bias=True)
    return shapes


TINY_MIDAS = dict(hidden=64, layers=4, mlp=128, grid=4, stem=32, depths=(1, 1, 1), widths=(128, 128, 128), features=64)


def random_weights(shapes: dict, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in shapes.items():
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        out[name] = (torch.randn(shape, generator=g) * (2 / fan_in) ** 0.5).half()  # half: smaller fixture files
    return out


def write_annotators(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    body = {}
    for name, cin, cout, k in body_pose_layers():
        body[f"{name}.weight"], body[f"{name}.bias"] = (cout, cin, k, k), (cout,)
    assert len(body) == 184  # as in the real file
    torch.save(random_weights(body, 1), folder / "body_pose_model.pth")
    torch.save(random_weights(sk_model_shapes(), 2), folder / "sk_model.pth")
    torch.save(random_weights(sk_model_shapes(), 3), folder / "sk_model2.pth")
    torch.save(random_weights(midas_shapes(**TINY_MIDAS), 4), folder / "dpt_hybrid-midas-501f0c75.pt")


@pytest.fixture(scope="module")
def models_dir(tiny_models, tmp_path_factory) -> Path:
    root = sd1_models_dir(tiny_models, tmp_path_factory, "annotator-models")
    write_annotators(root / "ControlNet" / "annotators")
    return root


@pytest.fixture(scope="module")
def service(models_dir, tmp_path_factory) -> Service:
    return cpu_service(models_dir, tmp_path_factory)


def photo(size=(80, 64)) -> Image.Image:
    rng = np.random.default_rng(5)
    base = np.asarray(edges_image(size), dtype=np.float32)
    return Image.fromarray(np.clip(base * 0.7 + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("module", ["openpose", "openpose_full", "lineart", "lineart_coarse", "depth_midas"])
def test_preprocessor_makes_a_map_and_runs_through_a_generation(service, module):
    cache = service.manager.controlnets.annotators
    u = unit(module=module, image=photo(), processor_res=64)
    r = gen(service, units=[u])
    assert f"Module: {module}" in r.infotexts[0]
    assert r.images[0].size == (64, 64)
    if module == "openpose_full":  # hands and face come from MediaPipe, so no "body only" warning
        assert not any("body skeleton only" in w for w in r.warnings)
    if module in ("openpose", "lineart", "depth_midas"):  # a map at another aspect than the picture's
        from webui.engine.extensions.controlnet import control_image, parse_units

        (parsed,) = parse_units([u])
        cmap = control_image(parsed, 96, 64, cache)
        assert cmap.size == (96, 64) and cmap.mode == "RGB"
    net = cache.get(module)
    assert next(net.parameters()).device == service.manager.device
    assert cache.get(module) is net  # loaded once, then cached


def test_lineart_map_is_white_lines_on_black_from_the_generator(service):
    """With the generator's last convolution forced to "no line anywhere" the map is black."""
    net = annotators.LineartNet()
    with torch.no_grad():
        net.model4[1].weight.zero_()
        net.model4[1].bias.fill_(30.0)  # sigmoid ~1: white paper, no lines
    out = np.asarray(annotators.lineart_map(net, photo(), 64))
    assert out.max() == 0
    with torch.no_grad():
        net.model4[1].bias.fill_(-30.0)  # all ink
    assert np.asarray(annotators.lineart_map(net, photo(), 64)).min() == 255


def synthetic_maps(people_kps, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps with a peak at each keypoint and affinity fields along each limb, as a
    trained network would produce for these people."""
    heat = np.zeros((h, w, 19), np.float32)
    paf = np.zeros((h, w, 38), np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for kps in people_kps:
        for i, p in enumerate(kps):
            if p is not None:
                heat[:, :, i] = np.maximum(heat[:, :, i], np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / 8))
        for (a, b), (cx, cy) in zip(annotators._LIMBS, annotators._PAF):
            if kps[a] is None or kps[b] is None:
                continue
            (x0, y0), (x1, y1) = kps[a], kps[b]
            length = max(1e-3, np.hypot(x1 - x0, y1 - y0))
            ux, uy = (x1 - x0) / length, (y1 - y0) / length
            along = (xx - x0) * ux + (yy - y0) * uy
            across = np.abs((xx - x0) * uy - (yy - y0) * ux)
            on = (along >= -1) & (along <= length + 1) & (across <= 2)
            paf[on, cx], paf[on, cy] = ux, uy
    return heat, paf


def library_people(keys, h: int, w: int):
    poses, _ = load_poses()
    people = []
    for n, key in enumerate(keys):
        part_w = w / len(keys)
        people.append([None if p is None else (n * part_w + p[0] * part_w, p[1] * h)
                       for p in poses[key].keypoints])
    return people


@pytest.mark.parametrize("keys", [["standing"], ["standing", "walking"]])
def test_decoder_finds_each_person_and_their_keypoints(keys):
    h, w = 192, 128 * len(keys)
    truth = library_people(keys, h, w)
    found = annotators.decode_poses(*synthetic_maps(truth, h, w))
    assert len(found) == len(truth)
    found.sort(key=lambda kps: next(p for p in kps if p is not None)[0])
    for got, want in zip(found, truth):
        for g, t in zip(got, want):
            assert (g is None) == (t is None)
            if t is not None:
                assert abs(g[0] - t[0]) <= 1.5 and abs(g[1] - t[1]) <= 1.5


def test_decoded_people_are_drawn_as_library_skeletons():
    from webui.imaging.poses import render_pose

    poses, _ = load_poses()
    h = 160
    w = round(h * poses["standing"].aspect)
    truth = library_people(["standing"], h, w)
    drawn = np.asarray(annotators.pose_map(truth, (w, h), (w, h)))
    expected = np.asarray(render_pose(poses["standing"], w, h))
    assert np.abs(drawn.astype(int) - expected).mean() < 2


def test_missing_file_names_file_and_folder(tmp_path):
    cache = annotators.AnnotatorCache(tmp_path / "annotators", torch.device("cpu"))
    for module, file in (("lineart_coarse", "sk_model2.pth"), ("openpose_hand", "body_pose_model.pth"),
                         ("depth", "dpt_hybrid-midas-501f0c75.pt")):
        with pytest.raises(UserError) as e:
            cache.get(module)
        assert file in str(e.value) and str(tmp_path / "annotators") in str(e.value)


def test_corrupt_or_wrong_file_is_a_clear_error(tmp_path, models_dir):
    folder = tmp_path / "annotators"
    folder.mkdir()
    (folder / "sk_model.pth").write_bytes(b"not a torch file at all")
    shutil.copy(models_dir / "ControlNet" / "annotators" / "sk_model.pth", folder / "body_pose_model.pth")
    cache = annotators.AnnotatorCache(folder, torch.device("cpu"))
    with pytest.raises(UserError, match="sk_model.pth .*cannot be read"):
        cache.get("lineart")
    with pytest.raises(UserError, match="body_pose_model.pth .*does not hold"):
        cache.get("openpose")


def test_unsupported_preprocessors_are_refused_at_the_request(service):
    for module in ("depth_leres", "lineart_anime", "dw_openpose_full"):
        with pytest.raises(UserError, match="not built in"):
            service.request({"controlnet_units": [unit(module=module)]})
    assert np.abs(px(gen(service).images[0])).sum() > 0  # the server keeps working


def test_depth_map_is_normalised_and_follows_the_network(service):
    net = service.manager.controlnets.annotators.get("depth")
    a = np.asarray(annotators.depth_map(net, photo(), 64))
    assert a.shape == (64, 64, 3) and a.min() == 0 and a.max() == 255  # nearest white, farthest black
    with torch.no_grad():
        head = net.net.head.head[4]
        saved = head.bias.clone()
        head.weight.neg_()  # flip the depth ordering of the last layer
        head.bias.fill_(0.0)
        try:
            b = np.asarray(annotators.depth_map(net, photo(), 64))
        finally:
            head.weight.neg_()
            head.bias.copy_(saved)
    assert np.abs(a.astype(int) - b).mean() > 5
    assert np.array_equal(np.asarray(annotators.depth_map(net, photo(), 64)), a)  # weights put back


def test_depth_converter_covers_every_tensor_of_the_real_layout():
    """The real file's names and sizes (no weights needed: shapes only) map onto the model."""
    from webui.models.depth import config_for, to_transformers

    shapes = midas_shapes()
    sd = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    with torch.device("meta"):
        from transformers import DPTForDepthEstimation

        model = DPTForDepthEstimation(config_for(sd))
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in to_transformers(sd).items()}
    assert got == want
