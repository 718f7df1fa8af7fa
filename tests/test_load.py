"""The load test in CI size: a demo server in a subprocess, 4 clients x 12 mixed requests at
64x64 / 2 steps through the REST and Gradio APIs, every image checked for its own seed."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import load_test  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = load_test.DemoServer(tmp_path_factory.mktemp("load-server"))
    yield srv
    srv.stop()


def test_mixed_load_every_request_answered_and_no_image_mixed_up(server, tmp_path):
    report = load_test.run(server.url, clients=4, requests=12, generations=24, size=64, steps=2, timeout=900,
                           server_pid=server.pid, command="tests/test_load.py")
    summary = load_test.write_report(report, tmp_path / "LOADTEST.md")
    assert summary["mixups"] == []
    assert summary["failed"] == [], summary["failed"]
    answered = [o for o in report.outcomes if o.status != "skipped"]
    assert answered and all(o.status == "ok" or (o.status == "refused" and o.detail) for o in answered)
    assert summary["by_kind"]["gradio_txt2img"].get("ok", 0) >= 1
    if any(o.kind.startswith("rest_") and o.status != "skipped" for o in report.outcomes):
        # With the REST API on, every REST kind ran and the over-limit request was refused.
        for kind in ("rest_txt2img", "rest_img2img", "rest_inpaint", "switch_model", "interrupt"):
            assert summary["by_kind"][kind].get("ok", 0) >= 1, kind
        assert summary["by_kind"]["refused"] == {"refused": 1}
    assert report.generations >= 24
    rss = report.memory["rss"]
    # A leak of one pipeline or image set per request would show as hundreds of MB here.
    assert rss["growth_mb"] < 200, rss
    assert "PASS" in (tmp_path / "LOADTEST.md").read_text()


def test_mixup_check_catches_an_image_with_another_seed():
    from webui.metadata.image_meta import png_bytes_with_infotext
    text = "portrait\nSteps: 2, Sampler: Euler a, CFG scale: 5, Seed: {}, Size: 64x64, Model: demo-tiny-sd15"
    img = Image.new("RGB", (64, 64))
    mine, theirs = (io.BytesIO(png_bytes_with_infotext(img, text.format(s))) for s in (100, 200))
    mixups: list[str] = []
    assert load_test.check_images([mine], 100, "demo-tiny-sd15", mixups, "x") == 1
    assert mixups == []
    load_test.check_images([theirs], 100, None, mixups, "x")
    assert mixups and "seed 200" in mixups[0]
    mixups.clear()
    mine.seek(0)
    load_test.check_images([mine], 100, "other-model", mixups, "x")
    assert mixups and "other-model" in mixups[0]


def test_only_loopback_urls_are_load_tested():
    assert load_test.check_loopback("http://127.0.0.1:7860/") == "http://127.0.0.1:7860"
    for url in ("http://example.com:7860", "http://10.0.0.5:7860", "https://x.gradio.live"):
        with pytest.raises(SystemExit):
            load_test.check_loopback(url)
