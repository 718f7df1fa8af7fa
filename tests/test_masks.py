import numpy as np
import pytest
from PIL import Image

from webui.errors import UserError
from webui.models.faces import FaceBox
from webui.imaging.masks import (
    FILL_MODES,
    blur_mask,
    composite,
    expand_canvas,
    expand_to_aspect,
    feathered_mask,
    mask_bbox,
    paste_crop,
)


def _noise(size, seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def test_feathered_mask_is_zero_outside_box_plus_blur():
    box = FaceBox(60, 40, 80, 100)
    blur = 12
    m = np.asarray(feathered_mask((256, 200), box, blur))
    assert m.dtype == np.uint8 and m.shape == (200, 256)
    assert m[40 + 50, 60 + 40] == 255  # the centre is fully on
    outside = np.ones_like(m, dtype=bool)
    outside[40 - blur : 40 + 100 + blur, 60 - blur : 60 + 80 + blur] = False
    assert m[outside].max() == 0
    assert 0 < m[40 + 50, 60 - blur // 2] < 255  # a soft edge
    # a sharp mask has only 0 and 255 and stays within the box
    hard = np.asarray(feathered_mask((256, 200), (60, 40, 140, 140), 0))
    assert set(np.unique(hard)) == {0, 255}
    assert hard[:, :60].max() == 0 and hard[:40].max() == 0
    for shape in ("rounded", "rect"):
        assert np.asarray(feathered_mask((256, 200), box, 4, shape=shape))[90, 100] == 255
    with pytest.raises(UserError):
        feathered_mask((256, 200), box, -1)


def test_feathered_mask_at_the_image_border():
    m = np.asarray(feathered_mask((100, 100), FaceBox(-20, -20, 60, 60), 8))
    assert m[5, 5] == 255 and m[60:, :].max() == 0 and m[:, 60:].max() == 0


def test_blur_mask():
    hard = Image.new("L", (64, 64), 0)
    hard.paste(255, (16, 16, 48, 48))
    assert np.array_equal(np.asarray(blur_mask(hard, 0)), np.asarray(hard))
    soft = np.asarray(blur_mask(hard, 4))
    assert soft[32, 32] == 255 and soft[0, 0] == 0
    assert 0 < soft[32, 16] < 255 and 0 < soft[32, 14] < 255
    with pytest.raises(UserError):
        blur_mask(hard, -2)


def test_composite_mask_zero_is_exactly_the_original():
    orig = _noise((97, 61), 1)
    gen = _noise((97, 61), 2)
    mask = feathered_mask(orig.size, (20, 10, 70, 50), 9)
    out = composite(orig, gen, mask)
    o, g, r, m = (np.asarray(x) for x in (orig, gen, out, mask))
    assert r.dtype == np.uint8 and r.shape == o.shape
    assert np.array_equal(r[m == 0], o[m == 0])
    assert np.array_equal(r[m == 255], g[m == 255])
    mid = (m > 0) & (m < 255)
    assert mid.any()
    lo, hi = np.minimum(o, g), np.maximum(o, g)
    assert np.all(r[mid] >= lo[mid]) and np.all(r[mid] <= hi[mid])
    # half mask is the average (rounded)
    half = composite(orig, gen, Image.new("L", orig.size, 128))
    expect = np.rint(o + (g.astype(np.float32) - o) * (128 / 255)).astype(np.uint8)
    assert np.abs(np.asarray(half).astype(int) - expect).max() <= 1
    with pytest.raises(UserError):
        composite(orig, gen.resize((10, 10)), mask)


def test_paste_crop_changes_only_pixels_inside_the_mask():
    orig = _noise((200, 150), 3)
    region = (40, 30, 140, 130)
    box = FaceBox(60, 50, 60, 60)
    mask = feathered_mask(orig.size, box, 10)
    crop_result = _noise((512, 512), 4)  # model output at its own size
    out = paste_crop(orig, crop_result, region, mask)
    o, r, m = np.asarray(orig), np.asarray(out), np.asarray(mask)
    changed = np.any(o != r, axis=2)
    assert changed.any()
    assert not changed[m == 0].any()
    ys, xs = np.nonzero(changed)
    assert xs.min() >= region[0] and xs.max() < region[2] and ys.min() >= region[1] and ys.max() < region[3]
    # a region-sized mask works the same
    region_mask = mask.crop(region)
    out2 = paste_crop(orig, crop_result, region, region_mask)
    assert np.array_equal(np.asarray(out2), r)
    with pytest.raises(UserError):
        paste_crop(orig, crop_result, (150, 100, 250, 200), mask)


def test_mask_bbox_padding_clamp_and_aspect():
    mask = Image.new("L", (400, 300), 0)
    mask.paste(255, (100, 120, 150, 160))  # 50x40
    assert mask_bbox(mask, 0) == (100, 120, 150, 160)
    assert mask_bbox(mask, 10) == (90, 110, 160, 170)
    x0, y0, x1, y1 = mask_bbox(mask, 10, (512, 512))
    assert (x1 - x0, y1 - y0) == (70, 70) and x0 <= 90 and y0 <= 110 and x1 >= 160 and y1 >= 170
    x0, y0, x1, y1 = mask_bbox(mask, 0, (768, 512))  # wide target
    assert abs((x1 - x0) / (y1 - y0) - 1.5) < 0.03 and x0 <= 100 and x1 >= 150
    # near the border: clamped and shifted inside
    corner = Image.new("L", (400, 300), 0)
    corner.paste(255, (0, 0, 20, 10))
    x0, y0, x1, y1 = mask_bbox(corner, 32, (512, 512))
    assert (x0, y0) == (0, 0) and x1 - x0 == y1 - y0 and x1 <= 400 and y1 <= 300
    # bigger than the image allows: full height, aspect as close as possible
    tall = Image.new("L", (400, 300), 0)
    tall.paste(255, (180, 0, 220, 300))
    x0, y0, x1, y1 = mask_bbox(tall, 0, (512, 1024))
    assert (y0, y1) == (0, 300) and x0 <= 180 and x1 >= 220
    assert mask_bbox(Image.new("L", (50, 50), 0), 8) is None
    with pytest.raises(UserError):
        mask_bbox(mask, -1)


def test_expand_to_aspect_always_contains_the_region():
    rng = np.random.default_rng(0)
    for _ in range(300):
        W, H = (int(v) for v in rng.integers(8, 300, 2))
        x0, y0 = int(rng.integers(0, W - 1)), int(rng.integers(0, H - 1))
        x1, y1 = int(rng.integers(x0 + 1, W + 1)), int(rng.integers(y0 + 1, H + 1))
        aspect = float(rng.uniform(0.3, 3.0))
        a0, b0, a1, b1 = expand_to_aspect((x0, y0, x1, y1), aspect, (W, H))
        assert 0 <= a0 <= x0 and x1 <= a1 <= W and 0 <= b0 <= y0 and y1 <= b1 <= H
        w, h = a1 - a0, b1 - b0
        if w < W and h < H:  # not limited by the image: the aspect is met
            assert min(abs(w - h * aspect), abs(h - w / aspect)) <= 0.5 + 1e-9  # within rounding


@pytest.mark.parametrize("fill", FILL_MODES)
def test_expand_canvas_keeps_original_and_marks_new_area(fill):
    img = _noise((50, 40), 5)
    out, mask = expand_canvas(img, left=10, right=20, top=5, bottom=0, fill=fill, seed=1)
    assert out.size == (80, 45) and mask.size == (80, 45) and mask.mode == "L"
    o, m = np.asarray(out), np.asarray(mask)
    assert np.array_equal(o[5:45, 10:60], np.asarray(img))
    expected = np.full((45, 80), 255, np.uint8)
    expected[5:45, 10:60] = 0
    assert np.array_equal(m, expected)


def test_expand_canvas_fills_overlap_and_errors():
    img = _noise((50, 40), 6)
    out, mask = expand_canvas(img, right=16, fill="edge")
    assert np.array_equal(np.asarray(out)[:, 50:], np.repeat(np.asarray(img)[:, 49:50], 16, axis=1))
    out, mask = expand_canvas(img, left=8, bottom=8, overlap=4)
    m = np.asarray(mask)
    assert m[:40, :12].min() == 255  # 8 new + 4 overlap on the left
    assert m[36:, :].min() == 255  # 4 overlap + 8 new at the bottom
    assert m[:36, 12:].max() == 0  # the rest of the original stays
    assert np.array_equal(np.asarray(out)[:40, 8:], np.asarray(img))  # pixels still in place
    same, none = expand_canvas(img)
    assert np.array_equal(np.asarray(same), np.asarray(img)) and np.asarray(none).max() == 0
    a, _ = expand_canvas(img, top=10, fill="noise", seed=3)
    b, _ = expand_canvas(img, top=10, fill="noise", seed=3)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(UserError):
        expand_canvas(img, left=-1)
    with pytest.raises(UserError):
        expand_canvas(img, left=4, fill="plasma")
