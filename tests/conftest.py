"""Shared pytest fixtures. Everything runs offline on the CPU with tiny random-weight models."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: never reach for the network in tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """family -> TinyModel (diffusers folder + original-layout .safetensors), built once per session."""
    from webui.tiny_models import build_tiny_model

    out = tmp_path_factory.mktemp("tiny-models")
    return {family: build_tiny_model(family, out) for family in ("sd1", "sd1-inpaint", "sdxl")}
