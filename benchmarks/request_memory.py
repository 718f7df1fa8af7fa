"""Server memory of one big request, against its --max-request-bytes estimate (CPU, demo model).

The adversarial probe's request: a 4096x4096 inpaint (the model works at 512x512, results are
pasted back at the input's size). Runs it through Service.generate (the call the UI and the API
make) with the budget lifted, and prints the estimate and the growth of the process's peak RSS:

    python benchmarks/request_memory.py --batch 1 8

Each batch size runs in a fresh process, so one run's peak does not hide the next one's.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def one(batch: int, size: int) -> None:
    import numpy as np
    from PIL import Image

    from webui.serving.memory_budget import estimate, human
    from webui.serving.service import Service
    from webui.settings import settings_from_args

    root = Path(tempfile.mkdtemp())
    svc = Service.create(settings_from_args(["--demo", "--device", "cpu", "--models-dir", str(root / "models"),
                                             "--outputs-dir", str(root / "out"), "--max-request-bytes", str(1 << 40)]))
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8))
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    svc.generate(svc.request(dict(prompt="warm-up", steps=1, width=64, height=64, save_images=False)))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    req = svc.request(dict(prompt="portrait", steps=2, width=512, height=512, batch_size=batch, init_image=img,
                           mask=mask, save_images=False), "inpaint")
    t = time.perf_counter()
    result = svc.generate(req)
    grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    print(f"{size}x{size} inpaint, batch {batch}: estimate {human(estimate(req).total)}, peak RSS grew "
          f"{grew:.0f} MiB (uploads already held), {time.perf_counter() - t:.1f} s, {len(result.images)} images")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one is not None:
        one(a.one, a.size)
        return
    for b in a.batch:
        subprocess.run([sys.executable, __file__, "--one", str(b), "--size", str(a.size)], check=True)


if __name__ == "__main__":
    main()
