"""Fetching the MarianMT zh->en model once, in the background, when ``--translator auto`` finds
none in the local Hugging Face cache.

:class:`ModelDownload` runs ``huggingface_hub.snapshot_download`` of the model repo in a daemon
thread (``HF_ENDPOINT`` is read at that moment, ``HF_HUB_OFFLINE`` means no attempt at all) and
keeps a state the UI can show: ``downloading`` with a fraction, ``done`` with the folder, or
``failed`` with one logged warning. :class:`DownloadingTranslator` translates with the offline
translator meanwhile and with MarianMT from the first call after the download finished; a model
that then fails to load puts the offline translator back, again with one warning. Nothing here
raises into the app.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from webui.prompts.marian import MARIAN_REPO_ID, MarianTranslator, _check_marian_dir

log = logging.getLogger(__name__)

# Only what the translator reads: the tokenizer, the config and one weights format.
ALLOW_PATTERNS = ["*.json", "*.spm", "model.safetensors", "pytorch_model.bin", "*.txt"]


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it, looked up now (tests and shells set it late)."""
    value = os.environ.get("HF_HUB_OFFLINE", "")
    if value.strip().upper() in ("1", "ON", "YES", "TRUE"):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE) and "HF_HUB_OFFLINE" not in os.environ
    except Exception:  # pragma: no cover - huggingface_hub missing
        return True


def _progress_class(download: ModelDownload):
    """A tqdm class that writes nowhere and reports the byte bars' progress to `download`."""
    from tqdm import tqdm as base_tqdm

    class _Progress(base_tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            kwargs["disable"] = False
            kwargs["file"] = open(os.devnull, "w")  # noqa: SIM115 - closed with the bar
            super().__init__(*args, **kwargs)
            download._bars.append(self)

        def update(self, n=1):
            out = super().update(n)
            download._report()
            return out

        def close(self):
            handle = self.fp
            super().close()
            try:
                handle.close()
            except Exception:
                pass

    return _Progress


class ModelDownload:
    """One background download of a Hub model repo into the Hugging Face cache."""

    def __init__(self, repo_id: str = MARIAN_REPO_ID, cache_dir: str | Path | None = None):
        self.repo_id = repo_id
        self.cache_dir = cache_dir
        self.state = "idle"  # idle, downloading, done, failed
        self.fraction = 0.0
        self.path: Path | None = None
        self.error: str | None = None
        self._bars: list = []
        self._logged = -1
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> bool:
        """Start the download thread once; False (and nothing requested) when the Hub is offline."""
        with self._lock:
            if self._thread is not None:
                return True
            if hub_offline():
                log.info("HF_HUB_OFFLINE is set: not downloading the translation model %s", self.repo_id)
                return False
            self.state = "downloading"
            self._thread = threading.Thread(target=self._run, name="translator-download", daemon=True)
            self._thread.start()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.state in ("done", "failed")

    def _report(self) -> None:
        byte_bars = [b for b in self._bars if getattr(b, "unit", "") == "B" and (b.total or 0) > 0]
        bars = byte_bars or [b for b in self._bars if (b.total or 0) > 0]
        total = sum(b.total for b in bars)
        if total:
            self.fraction = max(self.fraction, min(1.0, sum(b.n for b in bars) / total))
        percent = int(self.fraction * 100)
        if percent // 10 != self._logged // 10 or (percent == 100 and self._logged != 100):
            self._logged = percent
            log.info("downloading the translation model %s: %d%%", self.repo_id, percent)

    def _run(self) -> None:
        try:
            from huggingface_hub import snapshot_download

            log.info("downloading the translation model %s in the background", self.repo_id)
            path = Path(snapshot_download(
                self.repo_id, cache_dir=self.cache_dir, endpoint=os.environ.get("HF_ENDPOINT") or None,
                allow_patterns=ALLOW_PATTERNS, tqdm_class=_progress_class(self),
            ))
            _check_marian_dir(path)
        except BaseException as exc:  # offline, 404, disk full, a broken repo: keep the fallback
            self.error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.state = "failed"
            log.warning("could not download the translation model %s (%s); the offline translator stays "
                        "in use", self.repo_id, self.error)
            return
        self.path, self.fraction, self.state = path, 1.0, "done"
        log.info("translation model %s downloaded to %s; new translations use it", self.repo_id, path)

    def status(self) -> tuple[str, int]:
        """(state, percent) for the UI: "" when there is nothing to show."""
        if self.state == "downloading":
            return "downloading", int(self.fraction * 100)
        if self.state == "failed":
            return "failed", 0
        return "", 100 if self.state == "done" else 0


class DownloadingTranslator:
    """The offline translator until `download` is done, then MarianMT from the downloaded folder."""

    def __init__(self, fallback, download: ModelDownload):
        self.fallback = fallback
        self.download = download
        self._marian: MarianTranslator | None = None
        self._broken = False

    @property
    def current(self):
        if self._marian is None and not self._broken and self.download.path is not None:
            try:
                self._marian = MarianTranslator(self.download.path)
            except Exception as exc:
                self._give_up(exc)
        return self._marian or self.fallback

    def _give_up(self, exc: Exception) -> None:
        self._broken, self._marian = True, None
        log.warning("the downloaded translation model does not work (%s); the offline translator stays in "
                    "use", exc)

    def translate(self, text: str) -> str:
        return self.translate_many([text])[0]

    def translate_many(self, texts: Sequence[str]) -> list[str]:
        translator = self.current
        if translator is self._marian:
            try:
                return translator.translate_many(texts)
            except Exception as exc:
                self._give_up(exc)
                translator = self.fallback
        many = getattr(translator, "translate_many", None)
        if callable(many):
            return list(many(list(texts)))
        return [translator.translate(t) for t in texts]


def with_download(translator, setting: str | None, enabled: bool, cache_dir: str | Path | None = None):
    """`translator` for the setting; for ``auto`` without a cached model (an offline translator came
    back) and downloads allowed, one that switches to MarianMT once the background download ends."""
    if not enabled or (setting or "auto").strip().lower() != "auto" or translator is None:
        return translator
    if isinstance(translator, MarianTranslator):
        return translator
    download = ModelDownload(cache_dir=cache_dir)
    if not download.start():
        return translator
    return DownloadingTranslator(translator, download)


def download_status(translator) -> tuple[str, int]:
    """The background download's (state, percent) for `translator`; ("", 0) when there is none."""
    download = getattr(translator, "download", None)
    return download.status() if isinstance(download, ModelDownload) else ("", 0)
