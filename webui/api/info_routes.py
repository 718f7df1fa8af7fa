"""The REST routes that describe the server to A1111 clients: the listings some read at
start-up (the scripts honoured here; extensions, face restorers, hypernetworks: none), the start-up flags,
the refresh calls that have nothing to do (listings always read the folders) and /memory
(RAM and GPU memory use).
"""

from __future__ import annotations

from fastapi import APIRouter

from ..request.scripts import script_info, scripts_list
from ..request.xyz import axis_names


def add_info_routes(router: APIRouter, settings) -> None:
    """Add the server-description routes to `router`."""
    # The scripts honoured here (request/scripts.py): A1111 clients read these at start-up.
    @router.get("/scripts", summary="Scripts: x/y/z plot; always-on controlnet and adetailer")
    def scripts() -> dict:
        return scripts_list()

    @router.get("/script-info", summary="Each script's arguments, per tab")
    def script_info_route() -> list:
        return script_info(axis_names)

    @router.get("/face-restorers", summary="Face restorers (none here; see the face detailer)")
    def face_restorers() -> list:
        return []

    @router.get("/hypernetworks", summary="Hypernetworks (not supported)")
    def hypernetworks() -> list:
        return []

    @router.get("/extensions", summary="Extensions (none)")
    def extensions() -> list:
        return []

    @router.get("/cmd-flags", summary="Start-up flags")
    def cmd_flags() -> dict:
        return {"api": settings.api, "share": settings.share, "listen": settings.host != "127.0.0.1",
                "port": settings.port, "ckpt_dir": str(settings.checkpoints_dir),
                "lora_dir": str(settings.models_dir / "Lora"), "vae_dir": str(settings.models_dir / "VAE"),
                "data_dir": str(settings.models_dir.parent), "device": settings.device, "demo": settings.demo}

    @router.post("/refresh-loras", summary="Rescan models/Lora (listings always read the folder)")
    def refresh_loras():
        return None

    @router.post("/refresh-vae", summary="Rescan models/VAE (listings always read the folder)")
    def refresh_vae():
        return None

    @router.post("/refresh-embeddings", summary="Rescan embeddings (listings always read the folder)")
    def refresh_embeddings():
        return None

    @router.get("/memory", summary="RAM and GPU memory use")
    def memory() -> dict:
        return _memory()


def _memory() -> dict:
    import psutil
    import torch
    vm = psutil.virtual_memory()
    out: dict = {"ram": {"free": vm.available, "used": vm.total - vm.available, "total": vm.total}}
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        stats = torch.cuda.memory_stats()
        out["cuda"] = {
            "system": {"free": free, "used": total - free, "total": total},
            "active": {"current": stats.get("active_bytes.all.current", 0), "peak": stats.get("active_bytes.all.peak", 0)},
            "allocated": {"current": stats.get("allocated_bytes.all.current", 0),
                          "peak": stats.get("allocated_bytes.all.peak", 0)},
            "reserved": {"current": stats.get("reserved_bytes.all.current", 0),
                         "peak": stats.get("reserved_bytes.all.peak", 0)},
            "inactive": {"current": stats.get("inactive_split_bytes.all.current", 0),
                         "peak": stats.get("inactive_split_bytes.all.peak", 0)},
            "events": {"retries": stats.get("num_alloc_retries", 0), "oom": stats.get("num_ooms", 0)},
        }
    else:
        out["cuda"] = {"error": "no CUDA device"}
    return out
