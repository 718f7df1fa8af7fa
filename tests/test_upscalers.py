import importlib.util
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from webui.errors import UserError
from webui.models.spandrel_upscalers import SpandrelUpscaler, clear_model_cache
from webui.models.upscaler_base import LanczosUpscaler, NearestUpscaler, Upscaler
from webui.models.upscalers import LATENT_UPSCALE_MODES, get_upscaler, is_latent_upscaler, list_upscalers
from webui.validate import check_pixel_limit

if importlib.util.find_spec("spandrel") is None:  # imported through webui.models.spandrel_upscalers (torchvision-free)
    pytest.skip("spandrel is not installed", allow_module_level=True)
safetensors_torch = pytest.importorskip("safetensors.torch")


def rrdbnet_state_dict(nf: int = 8, nb: int = 1, gc: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the Real-ESRGAN RRDBNet layout (x4: two nearest+conv up-steps)."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def conv(name: str, cout: int, cin: int) -> None:
        sd[f"{name}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (1.0 / (cin * 9)) ** 0.5
        sd[f"{name}.bias"] = torch.randn(cout, generator=g) * 0.01

    conv("conv_first", nf, 3)
    for b in range(nb):
        for r in (1, 2, 3):
            for c in range(1, 5):
                conv(f"body.{b}.rdb{r}.conv{c}", gc, nf + (c - 1) * gc)
            conv(f"body.{b}.rdb{r}.conv5", nf, nf + 4 * gc)
    conv("conv_body", nf, nf)
    conv("conv_up1", nf, nf)
    conv("conv_up2", nf, nf)
    conv("conv_hr", nf, nf)
    conv("conv_last", 3, nf)
    return sd


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("upscalers")
    models = root / "models"
    folder = models / "ESRGAN"
    folder.mkdir(parents=True)
    sd = rrdbnet_state_dict()
    torch.save(sd, folder / "4x-Tiny.pth")
    safetensors_torch.save_file(sd, str(folder / "4x-TinySafe.safetensors"))
    torch.save({"params_ema": sd}, folder / "4x-TinyWrapped.pth")
    (folder / "NotAModel.pth").write_text("this is a text file, not weights\n")
    with open(folder / "Evil.pth", "wb") as f:
        pickle.dump({"weight": _Evil(str(root / "pwned"))}, f, protocol=2)
    safetensors_torch.save_file({"foo.weight": torch.zeros(4, 4)}, str(folder / "Unknown.safetensors"))
    (folder / "readme.txt").write_text("ignored")
    outside = root / "outside"
    outside.mkdir()
    torch.save(sd, outside / "x.pth")
    os.symlink(outside / "x.pth", folder / "LinkOut.pth")
    os.symlink(folder / "4x-Tiny.pth", folder / "LinkIn.pth")
    yield models
    clear_model_cache()


@pytest.fixture(scope="module")
def small_image():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    img = Image.fromarray(base).resize((40, 30), Image.Resampling.BICUBIC)
    return img


def test_list_upscalers(models_dir, tmp_path):
    names = list_upscalers(models_dir)
    assert names[:5] == ["None", "Lanczos", "Nearest", "Latent", "Latent (antialiased)"]
    assert "Latent (nearest-exact)" in names
    for stem in ("4x-Tiny", "4x-TinySafe", "4x-TinyWrapped", "LinkIn"):
        assert stem in names
    assert "LinkOut" not in names and "readme" not in names
    assert len(names) == len(set(names))
    assert "Latent" not in list_upscalers(models_dir, include_latent=False)
    assert list_upscalers(tmp_path) == ["None", "Lanczos", "Nearest", *LATENT_UPSCALE_MODES]


def test_builtin_and_latent_names(models_dir, small_image):
    assert get_upscaler("None", models_dir) is None
    lz = get_upscaler("Lanczos", models_dir)
    nn = get_upscaler("Nearest", models_dir)
    assert isinstance(lz, LanczosUpscaler) and isinstance(nn, NearestUpscaler)
    assert isinstance(lz, Upscaler)
    assert lz.upscale(small_image, 2.5).size == (100, 75)
    up = nn.upscale(small_image, 2)
    assert np.array_equal(np.asarray(up)[::2, ::2], np.asarray(small_image))
    assert is_latent_upscaler("Latent (nearest-exact)") and is_latent_upscaler("Latent")
    assert not is_latent_upscaler("Lanczos") and not is_latent_upscaler("4x-Tiny")
    with pytest.raises(ValueError):
        get_upscaler("Latent", models_dir)
    with pytest.raises(UserError):
        lz.upscale(small_image, 0)


@pytest.mark.parametrize("name", ["4x-Tiny", "4x-TinySafe", "4x-TinyWrapped", "LinkIn"])
def test_model_file_upscales_to_requested_size(models_dir, small_image, name):
    up = get_upscaler(name, models_dir, device="cpu")
    assert isinstance(up, SpandrelUpscaler) and isinstance(up, Upscaler)
    assert up.native_scale == 4
    out = up.upscale(small_image, 2)
    assert out.size == (80, 60) and out.mode == "RGB"
    assert up.upscale(small_image, 4).size == (160, 120)
    assert up.upscale(small_image, 1.5).size == (60, 45)


def test_pth_and_safetensors_give_the_same_pixels(models_dir, small_image):
    a = get_upscaler("4x-Tiny", models_dir).upscale(small_image, 4)
    b = get_upscaler("4x-TinySafe", models_dir).upscale(small_image, 4)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert np.asarray(a).std() > 1  # not a flat image


def test_tiled_equals_untiled(models_dir, small_image):
    up = get_upscaler("4x-Tiny", models_dir, tile_size=16, tile_overlap=16)
    calls = []
    tiled = up.upscale(small_image, 4, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (6, 6)  # 3 x 2 tiles of 16 px for 40x30
    whole = get_upscaler("4x-Tiny", models_dir, tile_size=0).upscale(small_image, 4)
    diff = np.abs(np.asarray(tiled).astype(int) - np.asarray(whole).astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.05


def test_larger_factor_than_native_runs_more_passes(models_dir):
    img = Image.new("RGB", (6, 5), (120, 60, 30))
    out = get_upscaler("4x-Tiny", models_dir).upscale(img, 6)
    assert out.size == (36, 30)


def test_not_a_model_is_a_user_error_naming_the_file(models_dir):
    with pytest.raises(UserError) as e:
        get_upscaler("NotAModel", models_dir)
    assert "NotAModel.pth" in str(e.value)
    with pytest.raises(UserError) as e:
        get_upscaler("Unknown", models_dir)
    assert "Unknown.safetensors" in str(e.value)


def test_pickle_code_is_not_run(models_dir):
    with pytest.raises(UserError) as e:
        get_upscaler("Evil", models_dir)
    assert "Evil.pth" in str(e.value)
    assert not (models_dir.parent / "pwned").exists()


@pytest.mark.parametrize("name", ["../x", "../outside/x", "..", "/etc/passwd", "sub/4x-Tiny", "..\\x", "LinkOut"])
def test_names_cannot_leave_the_folder(models_dir, name):
    with pytest.raises(UserError):
        get_upscaler(name, models_dir)


def test_unknown_name_lists_choices(models_dir):
    with pytest.raises(UserError) as e:
        get_upscaler("R-ESRGAN 4x+", models_dir)
    assert "4x-Tiny" in str(e.value) and "ESRGAN" in str(e.value)


def test_check_pixel_limit():
    check_pixel_limit(1024, 1024, 2048 * 2048)
    check_pixel_limit(4096, 4096, 0)  # 0 = no limit
    with pytest.raises(UserError) as e:
        check_pixel_limit(4096, 4096, 2048 * 2048)
    msg = str(e.value)
    assert "4096x4096" in msg and str(2048 * 2048) in msg and "Lower" in msg
    with pytest.raises(UserError):
        check_pixel_limit(0, 10, 100)
