"""The background download of the MarianMT model, against a local server that answers like the
Hugging Face Hub (HF_ENDPOINT points at it); nothing here reaches the internet."""

import hashlib
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import webui.prompts.translator_download as td
from test_translate import _build_tiny_marian
from webui.prompts.glossary import GlossaryTranslator
from webui.prompts.marian import MARIAN_REPO_ID, MarianTranslator, find_cached_marian
from webui.prompts.translate import make_translator, translate_prompt
from webui.serving.service import build_translator
from webui.settings import settings_from_args

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """Serves one model repo the way snapshot_download reads it: the revision and tree listings
    under /api/models/, and /{repo}/resolve/{rev}/{file} with X-Repo-Commit and ETag headers."""

    def __init__(self, folder: Path | None, repo_id: str = MARIAN_REPO_ID, delay: float = 0.0):
        self.files = {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder else {}
        self.repo_id, self.delay, self.requests = repo_id, delay, []
        self.release = threading.Event()
        if not delay:
            self.release.set()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body=b"", headers=None, content_type="application/json"):
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if code == 404:
                    self.send_header("X-Error-Code", "RepoNotFound")
                    self.send_header("X-Error-Message", "Repository not found")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_HEAD(self):
                self.do_GET()

            def do_GET(self):
                hub.requests.append((self.command, self.path))
                path = self.path.split("?")[0]
                api = f"/api/models/{hub.repo_id}/"
                resolve = f"/{hub.repo_id}/resolve/"
                if not hub.files:
                    return self._send(404, b'{"error": "Repository not found"}')
                if path.startswith(api + "revision/"):
                    info = {"id": hub.repo_id, "modelId": hub.repo_id, "sha": COMMIT, "private": False,
                            "siblings": [{"rfilename": n} for n in hub.files]}
                    return self._send(200, json.dumps(info).encode())
                if path.startswith(api + "tree/"):
                    tree = [{"type": "file", "path": n, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                            for n, b in hub.files.items()]
                    return self._send(200, json.dumps(tree).encode())
                if path.startswith(resolve):
                    name = path[len(resolve):].split("/", 1)[-1]
                    body = hub.files.get(name)
                    if body is None:
                        return self._send(404, b"{}")
                    if self.command == "GET":
                        hub.release.wait(10)
                    etag = '"' + hashlib.sha1(body).hexdigest() + '"'
                    return self._send(200, body, {"X-Repo-Commit": COMMIT, "ETag": etag},
                                      "application/octet-stream")
                return self._send(404, b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return _build_tiny_marian(tmp_path_factory.mktemp("hubrepo") / "opus-mt-tiny")


@pytest.fixture
def hub_env(monkeypatch, tmp_path):
    """An empty Hugging Face cache, the Hub online, HF_ENDPOINT set by each test."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    return tmp_path / "hub"


def test_download_runs_in_the_background_then_marian_is_used(hub_env, monkeypatch, tiny_model, caplog):
    hub = FakeHub(tiny_model, delay=1.0)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    try:
        assert find_cached_marian() is None
        caplog.set_level(logging.INFO, logger=td.__name__)
        translator, problems = build_translator("auto")
        assert problems == [] and isinstance(translator, td.DownloadingTranslator)
        # The first translation comes at once from the glossary while the files are held back.
        started = time.monotonic()
        result = translate_prompt("红色头发", translator)
        assert result.english == "red hair" and time.monotonic() - started < 0.5
        assert td.download_status(translator)[0] == "downloading"
        hub.release.set()
        assert translator.download.wait(60) and translator.download.state == "done", translator.download.error
        assert td.download_status(translator) == ("", 100)
        assert isinstance(translator.current, MarianTranslator)
        out = translate_prompt("红色头发", translator).english
        assert out and out != "红色头发"
        assert any("%" in r.getMessage() and "downloading" in r.getMessage() for r in caplog.records)
        assert any("resolve" in p for _, p in hub.requests)
        # Next start-up: the model is in the cache, so auto picks MarianMT without asking the Hub.
        assert find_cached_marian() is not None
        assert isinstance(make_translator("auto"), MarianTranslator)
        before = len(hub.requests)
        again, _ = build_translator("auto")
        assert isinstance(again, MarianTranslator) and len(hub.requests) == before
    finally:
        hub.close()


def test_setting_off_requests_nothing(hub_env, monkeypatch, tiny_model):
    hub = FakeHub(tiny_model)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    try:
        translator, _ = build_translator("auto", download=False)
        assert isinstance(translator, GlossaryTranslator)
        translator, _ = build_translator("glossary")
        assert isinstance(translator, GlossaryTranslator)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        translator, _ = build_translator("auto")
        assert isinstance(translator, GlossaryTranslator)
        time.sleep(0.2)
        assert hub.requests == []
    finally:
        hub.close()


def test_flag_and_environment_variable(monkeypatch):
    assert settings_from_args([]).translator_download is True
    assert settings_from_args(["--no-translator-download"]).translator_download is False
    monkeypatch.setenv("WEBUI_TRANSLATOR_DOWNLOAD", "0")
    assert settings_from_args([]).translator_download is False


def test_missing_repo_gives_one_warning_and_the_glossary_keeps_working(hub_env, monkeypatch, caplog):
    hub = FakeHub(None)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    try:
        translator, _ = build_translator("auto")
        assert isinstance(translator, td.DownloadingTranslator)
        assert translator.download.wait(60) and translator.download.state == "failed"
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == td.__name__]
        assert len(warnings) == 1 and "offline translator" in warnings[0].getMessage()
        assert td.download_status(translator) == ("failed", 0)
        assert translate_prompt("红色头发", translator).english == "red hair"
        assert find_cached_marian() is None
    finally:
        hub.close()


def test_unreachable_hub_and_broken_model_keep_the_glossary(hub_env, monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    translator, _ = build_translator("auto")
    assert translator.download.wait(60) and translator.download.state == "failed"
    assert translate_prompt("红色头发", translator).english == "red hair"
    # A download that finished but cannot be loaded: one warning, the glossary again.
    broken = tmp_path / "broken"
    broken.mkdir()
    translator.download.path, translator.download.state = broken, "done"
    assert translate_prompt("红色头发", translator).english == "red hair"
    assert translator.current is translator.fallback


def test_untranslated_words_are_highlighted_and_the_download_shown():
    from webui.ui import translation_view as view

    assert view.marks("red hair, 古风 girl, (微笑:1.2)") == [
        ("red hair, ", None), ("古风", view.UNTRANSLATED), (" girl, (", None), ("微笑", view.UNTRANSLATED),
        (":1.2)", None)]
    assert view.marks("red hair") == [("red hair", None)] and view.marks("") == []

    class _Service:
        state = ("downloading", 40)

        def translation_status(self):
            return self.state

    svc = _Service()
    assert "40%" in view.status_text(svc) and "正在下载翻译模型" in view.status_text(svc)
    svc.state = ("failed", 0)
    assert "could not be downloaded" in view.status_text(svc)
    svc.state = ("", 100)
    assert view.status_text(svc) == ""


def test_the_status_line_follows_a_running_download():
    import gradio as gr

    from webui.ui import translation_view as view

    class _Service:
        state = ("downloading", 10)

        def translation_status(self):
            return self.state

    svc = _Service()
    with gr.Blocks() as demo:
        status = gr.Markdown("")
        view.watch_download(svc, status)
    timers = [b for b in demo.blocks.values() if isinstance(b, gr.Timer)]
    assert len(timers) == 1
    tick = next(fn.fn for fn in demo.fns.values() if (timers[0]._id, "tick") in fn.targets)
    assert "10%" in tick()[0]
    svc.state = ("", 100)
    line, update = tick()
    assert line == "" and update.active is False
    with gr.Blocks() as idle:  # no download: no timer
        view.watch_download(svc, gr.Markdown(""))
    assert not [b for b in idle.blocks.values() if isinstance(b, gr.Timer)]


def test_demo_mode_never_downloads(hub_env, monkeypatch, tmp_path):
    from webui.serving.service import Service
    from webui.settings import Settings

    hub = FakeHub(None)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    try:
        svc = Service.create(Settings(models_dir=tmp_path / "m", outputs_dir=tmp_path / "o", device="cpu",
                                      demo=True), load_model=False)
        assert isinstance(svc.translator, GlossaryTranslator) and svc.translation_status() == ("", 0)
        time.sleep(0.2)
        assert hub.requests == []
    finally:
        hub.close()
