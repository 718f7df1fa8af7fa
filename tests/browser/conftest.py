"""Playwright harness for the browser tests: the app runs in demo mode in a subprocess on a free
loopback port, Debian's Chromium drives it headless.

Fixtures:
- `app_url`   (session) the running app's URL; models and outputs live in temporary folders.
- `new_page`  factory: new_page(locale="zh-CN") -> a fresh page in its own browser context.
- `page`      a page with the default (en-US) locale.
- `shot`      shot("typed-prompt") saves test-artifacts/browser/<test>/NN-typed-prompt.png.
A failed test also gets FAILED-<page>.png of every page it opened, next to its step screenshots.

The browser comes from Debian (`apt-get install chromium`); `playwright install` is never used.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
START_TIMEOUT_S = 180  # importing torch/diffusers/gradio and building the demo model on 2 busy cores
STEP_TIMEOUT_MS = 60_000


def _missing_browser() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "python playwright not installed (pip install -r requirements-dev.txt)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def browser_available():
    reason = _missing_browser()
    if reason:
        # CI installs both, so there a missing browser is a failure, not a skip.
        if os.environ.get("REQUIRE_BROWSER_TESTS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def app_url(browser_available, tmp_path_factory):
    """Start `app.py --demo` once for the browser suite and stop it at the end."""
    tmp = tmp_path_factory.mktemp("browser-app")
    port = _free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False",
               GRADIO_TEMP_DIR=str(tmp / "gradio-tmp"), PYTHONUNBUFFERED="1")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / "app.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--demo", "--host", "127.0.0.1", "--port", str(port),
         "--models-dir", str(tmp / "models"), "--outputs-dir", str(tmp / "outputs")],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(url):
            if proc.poll() is not None:
                pytest.fail(f"app exited with code {proc.returncode} before answering:\n{_tail(log_path)}")
            if time.monotonic() > deadline:
                pytest.fail(f"app did not answer on {url} within {START_TIMEOUT_S}s:\n{_tail(log_path)}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _tail(path: Path, n: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


@pytest.fixture(scope="session")
def browser(browser_available):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Keep each phase's report on the item so fixtures can tell, at teardown, that the test failed.
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def artifacts_dir(request) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    d = ARTIFACTS / name
    shutil.rmtree(d, ignore_errors=True)  # screenshots of an earlier run would mislead
    d.mkdir(parents=True)
    return d


@pytest.fixture
def new_page(request, browser, app_url, artifacts_dir):
    """Factory for pages, each in its own context (own locale, cookies, downloads)."""
    contexts, pages = [], []

    def make(locale: str = "en-US", path: str = ""):
        ctx = browser.new_context(locale=locale, accept_downloads=True, viewport={"width": 1280, "height": 1000})
        ctx.set_default_timeout(STEP_TIMEOUT_MS)
        page = ctx.new_page()
        contexts.append(ctx)
        pages.append(page)
        page.goto(app_url + path)
        page.wait_for_selector("gradio-app .gradio-container", state="attached")
        return page

    yield make
    failed = any(getattr(request.node, f"rep_{w}", None) is not None and getattr(request.node, f"rep_{w}").failed
                 for w in ("setup", "call"))
    for i, page in enumerate(pages):
        if failed:
            try:
                page.screenshot(path=str(artifacts_dir / f"FAILED-{i}.png"), full_page=True)
            except Exception:  # a crashed page must not hide the test's own failure
                pass
    for ctx in contexts:
        ctx.close()


@pytest.fixture
def page(new_page):
    return new_page()


@pytest.fixture
def shot(artifacts_dir, request):
    """shot(name, page=None): screenshot of a step; numbered so the folder reads in order."""
    counter = {"n": 0}

    def take(name: str, page=None):
        page = page or request.getfixturevalue("page")
        counter["n"] += 1
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        page.screenshot(path=str(artifacts_dir / f"{counter['n']:02d}-{safe}.png"), full_page=True)

    return take
