"""Load test: several clients at once through the REST API and the Gradio API, with a mix-up
check and a memory trend. Bounded and loopback only; it stops by itself.

    python scripts/load_test.py                      # starts `app.py --demo` on a free port
    python scripts/load_test.py --url http://127.0.0.1:7860 --clients 10 --requests 50

Phase 1 (mix): N clients send M requests in all -- txt2img, img2img and inpaint through
/sdapi/v1 and through gradio_client, model switches, interrupts, and a few requests that must
be refused. Every request must complete or be refused with a message; every image must carry
its own request's seed (and model) in its infotext, so an image delivered to the wrong client
is caught. Phase 2 (memory): generations until --generations in all, sampling the server's
RSS (and VRAM where /sdapi/v1/memory reports it); start, end and peak are reported.

Results go to --report (markdown) and the same name with .json. Kinds whose endpoint the
server does not have (e.g. the REST API turned off) are reported as skipped, not failed.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from PIL import Image  # noqa: E402

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MODEL_A, MODEL_B = "demo-tiny-sd15", "demo-tiny-sd15-b"
MIX = [  # (kind, weight)
    ("rest_txt2img", 5), ("rest_img2img", 3), ("rest_inpaint", 3), ("gradio_txt2img", 4),
    ("gradio_img2img", 2), ("gradio_inpaint", 2), ("switch_model", 2), ("interrupt", 2), ("refused", 1),
]


@dataclass
class Outcome:
    client: int
    kind: str
    status: str            # ok | refused | skipped | failed
    seconds: float
    detail: str = ""
    images: int = 0


@dataclass
class Report:
    command: str
    url: str
    clients: int
    requests: int
    size: int
    steps: int
    outcomes: list[Outcome] = field(default_factory=list)
    memory: dict = field(default_factory=dict)
    generations: int = 0
    mixups: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    server: str = ""


# ---- server ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_loopback(url: str) -> str:
    host = urllib.parse.urlparse(url).hostname
    if host not in LOOPBACK:
        raise SystemExit(f"refusing to load-test {url}: only 127.0.0.1 / localhost")
    return url.rstrip("/")


class DemoServer:
    """`app.py --demo` in a subprocess with its own models/outputs folders (two copies of the
    demo model, so model switches are real loads)."""

    def __init__(self, workdir: Path, extra_args: list[str] | None = None, start_timeout: float = 300):
        self.workdir = workdir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        models = workdir / "models"
        from webui.models.tiny_models import ensure_demo_model
        first = ensure_demo_model(models)
        shutil.copy(first, first.with_name(MODEL_B + ".safetensors"))
        env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1",
                   GRADIO_TEMP_DIR=str(workdir / "gradio-tmp"))
        self.log_path = workdir / "server.log"
        self._log = open(self.log_path, "w")
        cmd = [sys.executable, str(ROOT / "app.py"), "--demo", "--host", "127.0.0.1", "--port", str(self.port),
               "--models-dir", str(models), "--outputs-dir", str(workdir / "outputs"), *(extra_args or [])]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log_path}:\n"
                                   + self.log_path.read_text()[-3000:])
            try:
                if httpx.get(self.url + "/", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"server did not answer within {start_timeout:.0f}s; see {self.log_path}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        self._log.close()


# ---- memory -----------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def vram_bytes(http: httpx.Client, url: str) -> int | None:
    """Allocated CUDA memory as /sdapi/v1/memory reports it (A1111 shape), if it does."""
    try:
        r = http.get(url + "/sdapi/v1/memory", timeout=10)
        if r.status_code != 200:
            return None
        cuda = r.json().get("cuda") or {}
        sys_ = cuda.get("system") or {}
        used = sys_.get("used") or (cuda.get("allocated") or {}).get("current")
        return int(used) if used is not None else None
    except (httpx.HTTPError, ValueError, TypeError, AttributeError):
        return None


class MemorySampler(threading.Thread):
    def __init__(self, pid: int | None, url: str, every: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.url, self.every = pid, url, every
        self.samples: list[tuple[float, int, int | None, int | None]] = []  # (t, generations, rss, vram)
        self.generations = 0
        self._halt = threading.Event()
        self._http = httpx.Client(timeout=10)

    def sample(self) -> None:
        rss = rss_bytes(self.pid) if self.pid else None
        self.samples.append((time.monotonic(), self.generations, rss, vram_bytes(self._http, self.url)))

    def run(self) -> None:
        while not self._halt.wait(self.every):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)
        self.sample()
        self._http.close()

    def summary(self, warmup: int) -> dict:
        """Start = first sample after `warmup` generations (caches filled); end = last."""
        out = {}
        for i, name in ((2, "rss"), (3, "vram")):
            vals = [(g, s[i]) for s in self.samples if (g := s[1]) >= warmup and s[i] is not None]
            if not vals:
                continue
            start, end = vals[0][1], vals[-1][1]
            peak = max(v for _, v in vals)
            # MB at 0, 25, 50, 75 and 100 % of the way: a leak climbs, a warm cache levels off.
            trend = [round(vals[min(len(vals) - 1, i * (len(vals) - 1) // 4)][1] / 2**20, 1) for i in range(5)]
            out[name] = {"start_mb": round(start / 2**20, 1), "end_mb": round(end / 2**20, 1),
                         "peak_mb": round(peak / 2**20, 1), "growth_mb": round((end - start) / 2**20, 1),
                         "trend_mb": trend, "samples": len(vals), "from_generation": vals[0][0],
                         "to_generation": vals[-1][0]}
        return out


# ---- requests ---------------------------------------------------------------------------------


def _png_b64(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _init_image(size: int, seed: int) -> Image.Image:
    rnd = random.Random(seed)
    return Image.new("RGB", (size, size), tuple(rnd.randrange(256) for _ in range(3)))


def _mask(size: int) -> Image.Image:
    m = Image.new("L", (size, size), 0)
    m.paste(255, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    return m


def _infotext_of(img_source) -> dict:
    from webui.metadata.image_meta import read_infotext
    from webui.metadata.infotext import parse_infotext
    text, _ = read_infotext(img_source)
    return parse_infotext(text or "")


def check_images(sources: list, seed: int, model: str | None, mixups: list[str], where: str) -> int:
    """Every image must be this request's: its infotext seed is seed + i (and the model, if named)."""
    for i, src in enumerate(sources):
        params = _infotext_of(src)
        got = str(params.get("Seed"))
        if got != str(seed + i):
            mixups.append(f"{where}: image {i} has seed {got}, expected {seed + i}")
        if model and params.get("Model") not in (model, None):
            mixups.append(f"{where}: image {i} made by model {params.get('Model')}, expected {model}")
    return len(sources)


class Runner:
    def __init__(self, url: str, size: int, steps: int, deadline: float, report: Report):
        self.url, self.size, self.steps, self.deadline, self.report = url, size, steps, deadline, report
        self.lock = threading.Lock()
        self.generations = 0
        self.sampler: MemorySampler | None = None
        self.available: dict[str, bool] = {}
        self.gradio_fill: dict[str, dict] = {}

    # what the server offers
    def probe(self) -> None:
        with httpx.Client(timeout=30) as http:
            self.available["rest"] = http.get(self.url + "/sdapi/v1/options").status_code == 200
        from gradio_client import Client
        api = Client(self.url, verbose=False).view_api(print_info=False, return_format="dict")
        endpoints = (api or {}).get("named_endpoints", {})
        names = set(endpoints)
        # Arguments a client need not care about (hires, face detail...): text fields with no
        # default get "", the rest their defaults, so new optional controls do not break the test.
        self.gradio_fill = {
            name: {p["parameter_name"]: ("" if p.get("component") == "Textbox" else None)
                   for p in ep.get("parameters", []) if not p.get("parameter_has_default")}
            for name, ep in endpoints.items()}
        for kind in ("txt2img", "img2img", "inpaint"):
            self.available[f"gradio_{kind}"] = f"/{kind}" in names
            self.available[f"rest_{kind}"] = self.available["rest"]

    def _count(self, n: int) -> None:
        with self.lock:
            self.generations += n
            if self.sampler:
                self.sampler.generations = self.generations

    def _timeout(self) -> float:
        return max(5.0, self.deadline - time.monotonic())

    def payload(self, seed: int, kind: str, **extra) -> dict:
        p = dict(prompt=f"portrait number {seed}, soft light", negative_prompt="blurry", seed=seed,
                 steps=self.steps, width=self.size, height=self.size, sampler_name="Euler a", cfg_scale=5,
                 batch_size=1, n_iter=1, save_images=True)
        if kind in ("img2img", "inpaint"):
            p.update(init_images=[_png_b64(_init_image(self.size, seed))], denoising_strength=0.6)
        if kind == "inpaint":
            p.update(mask=_png_b64(_mask(self.size)), inpainting_fill=1)
        p.update(extra)
        return p

    def rest(self, http, kind: str, seed: int, model: str | None = None, **extra) -> tuple[str, str, int]:
        body = self.payload(seed, kind, **extra)
        if model:
            body["override_settings"] = {"sd_model_checkpoint": model}
        path = "/sdapi/v1/txt2img" if kind == "txt2img" else "/sdapi/v1/img2img"
        r = http.post(self.url + path, json=body, timeout=self._timeout())
        if 400 <= r.status_code < 500:
            return "refused", _message(r), 0
        if r.status_code != 200:
            return "failed", f"HTTP {r.status_code}: {r.text[:200]}", 0
        images = [io.BytesIO(base64.b64decode(b)) for b in r.json().get("images", [])]
        expected = body["batch_size"] * body["n_iter"]
        n = check_images(images, seed, model, self.report.mixups, f"REST {kind} seed {seed}")
        self._count(n)
        if n != expected:
            return "failed", f"{n} images for {expected} asked", n
        return "ok", "", n

    def gradio(self, client, kind: str, seed: int) -> tuple[str, str, int]:
        from gradio_client import handle_file
        from gradio_client.exceptions import AppError
        p = self.payload(seed, "txt2img")
        args = dict(prompt=p["prompt"], negative_prompt=p["negative_prompt"], steps=p["steps"],
                    cfg_scale=p["cfg_scale"], seed=seed, width=p["width"], height=p["height"],
                    sampler_name=p["sampler_name"], batch_size=1, n_iter=1)
        if kind != "txt2img":
            tmp = Path(tempfile.mkdtemp(prefix="loadtest-"))
            init = tmp / "init.png"
            _init_image(self.size, seed).save(init)
            args.update(init_image=handle_file(str(init)), denoising_strength=0.6)
            if kind == "inpaint":
                mask = tmp / "mask.png"
                _mask(self.size).save(mask)
                args.update(mask=handle_file(str(mask)))
        fill = {k: v for k, v in self.gradio_fill.get(f"/{kind}", {}).items() if k not in args and v is not None}
        try:
            out = client.predict(api_name=f"/{kind}", **fill, **args)
        except AppError as e:
            return "refused", str(e)[:300], 0
        gallery = out[0] if isinstance(out, (list, tuple)) else out
        paths = [g["image"] if isinstance(g, dict) else g for g in gallery]
        paths = [p["path"] if isinstance(p, dict) else p for p in paths]
        n = check_images(paths, seed, None, self.report.mixups, f"Gradio {kind} seed {seed}")
        self._count(n)
        return ("ok", "", n) if n == 1 else ("failed", f"{n} images for 1 asked", n)

    def switch_model(self, http, seed: int) -> tuple[str, str, int]:
        target = MODEL_B if seed % 2 else MODEL_A
        r = http.post(self.url + "/sdapi/v1/options", json={"sd_model_checkpoint": target}, timeout=self._timeout())
        if 400 <= r.status_code < 500:
            return "refused", _message(r), 0
        if r.status_code != 200:
            return "failed", f"HTTP {r.status_code}: {r.text[:200]}", 0
        # A request that names its model must be made by that model, whatever others switch to.
        return self.rest(http, "txt2img", seed, model=target)

    def interrupt(self, http, seed: int) -> tuple[str, str, int]:
        """A longer request, interrupted by the same client while it runs: it must come back
        (with the images finished before the interrupt), not hang or fail."""
        box: dict = {}
        task_id = f"loadtest-{seed}"  # interrupt this client's own job, not whichever is latest

        def long_job():
            box["r"] = self.rest(http, "txt2img", seed, steps=max(self.steps, 8), n_iter=3, force_task_id=task_id)

        t = threading.Thread(target=long_job)
        t.start()
        time.sleep(0.3)
        r = http.post(self.url + "/sdapi/v1/interrupt", json={"id_task": task_id}, timeout=30)
        t.join(timeout=self._timeout())
        if t.is_alive():
            return "failed", "interrupted request did not return", 0
        status, detail, n = box["r"]
        if status == "failed" and "images for" in detail:
            status, detail = "ok", f"interrupted after {n} image(s)"  # fewer images is the point
        if r.status_code != 200:
            return "failed", f"interrupt: HTTP {r.status_code}", n
        return status, detail, n

    def refused(self, http, seed: int) -> tuple[str, str, int]:
        body = self.payload(seed, "txt2img", steps=100000)
        r = http.post(self.url + "/sdapi/v1/txt2img", json=body, timeout=self._timeout())
        msg = _message(r)
        if 400 <= r.status_code < 500 and "steps" in msg:
            return "refused", msg, 0
        return "failed", f"an over-limit request got HTTP {r.status_code}: {msg[:200]}", 0

    def one(self, client_id: int, kind: str, seed: int, http, gclient) -> Outcome:
        t0 = time.monotonic()
        needs = {"switch_model": "rest", "interrupt": "rest", "refused": "rest"}.get(kind, kind)
        if not self.available.get(needs):
            return Outcome(client_id, kind, "skipped", 0.0, f"server has no {needs} endpoint")
        try:
            if kind.startswith("rest_"):
                status, detail, n = self.rest(http, kind[5:], seed)
            elif kind.startswith("gradio_"):
                status, detail, n = self.gradio(gclient, kind[7:], seed)
            else:
                status, detail, n = getattr(self, kind)(http, seed)
        except Exception as e:  # noqa: BLE001 - a load test reports, it does not stop
            status, detail, n = "failed", f"{type(e).__name__}: {e}"[:300], 0
        if kind != "refused" and status == "refused":
            status = "failed" if not detail else status  # refused without a message is a failure
        return Outcome(client_id, kind, status, round(time.monotonic() - t0, 3), detail, n)


def _message(r: httpx.Response) -> str:
    try:
        data = r.json()
        return str(data.get("detail") or data.get("error") or data.get("message") or data)[:300]
    except ValueError:
        return r.text[:300]


def run(url: str, clients: int, requests: int, generations: int, size: int, steps: int, timeout: float,
        server_pid: int | None, command: str, seed: int = 0) -> Report:
    report = Report(command=command, url=url, clients=clients, requests=requests, size=size, steps=steps)
    deadline = time.monotonic() + timeout
    runner = Runner(url, size, steps, deadline, report)
    runner.probe()
    runner.sampler = MemorySampler(server_pid, url)
    runner.sampler.start()
    rnd = random.Random(seed)
    # One of every kind first (so a small run covers them all), then a weighted random mix.
    order = [k for k, _ in MIX] + rnd.choices([k for k, _ in MIX], [w for _, w in MIX], k=max(0, requests - len(MIX)))
    plan = [[] for _ in range(clients)]
    for i, kind in enumerate(order[:requests]):
        plan[i % clients].append(kind)
    t0 = time.monotonic()

    def client_loop(cid: int, jobs: list[str], phase_seed: int):
        from gradio_client import Client
        with httpx.Client() as http:
            gclient = Client(url, verbose=False) if any(k.startswith("gradio_") for k in jobs) else None
            for j, kind in enumerate(jobs):
                if time.monotonic() > deadline:
                    report.outcomes.append(Outcome(cid, kind, "failed", 0.0, "load test deadline reached"))
                    continue
                s = phase_seed + cid * 100_000 + j * 100
                report.outcomes.append(runner.one(cid, kind, s, http, gclient))

    threads = [threading.Thread(target=client_loop, args=(c, plan[c], 1_000_000)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, deadline - time.monotonic()))
    warmup = runner.generations
    # Phase 2: plain generations until the total reaches `generations`, from all clients at once.
    remaining = max(0, generations - runner.generations)
    per = [remaining // clients + (1 if c < remaining % clients else 0) for c in range(clients)]
    gen_kinds = [k for k in ("rest_txt2img", "gradio_txt2img") if runner.available.get(k)]
    if gen_kinds and remaining:
        threads = [threading.Thread(target=client_loop, args=(c, [gen_kinds[(c + j) % len(gen_kinds)]
                                                                   for j in range(per[c])], 50_000_000))
                   for c in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(1.0, deadline - time.monotonic()))
    runner.sampler.stop()
    report.generations = runner.generations
    report.memory = runner.sampler.summary(warmup=min(warmup, max(0, runner.generations - 1)))
    report.memory["sampled_from"] = "the server process (/proc)" if server_pid else "/sdapi/v1/memory"
    report.wall_s = round(time.monotonic() - t0, 1)
    return report


# ---- report -----------------------------------------------------------------------------------


def summarize(report: Report) -> dict:
    by_kind: dict[str, dict[str, int]] = {}
    for o in report.outcomes:
        by_kind.setdefault(o.kind, {}).setdefault(o.status, 0)
        by_kind[o.kind][o.status] += 1
    failed = [asdict(o) for o in report.outcomes if o.status == "failed"]
    return {"by_kind": by_kind, "failed": failed, "mixups": report.mixups,
            "ok": not failed and not report.mixups}


def write_report(report: Report, path: Path) -> dict:
    s = summarize(report)
    data = {**{k: v for k, v in asdict(report).items() if k != "outcomes"}, "summary": s,
            "outcomes": [asdict(o) for o in report.outcomes]}
    path.with_suffix(".json").write_text(json.dumps(data, indent=1))
    lines = [
        "# Load test", "",
        f"Command: `{report.command}`", "",
        f"Server: {report.server or report.url}. {report.clients} clients, {report.requests} mixed requests, "
        f"then plain generations up to {report.generations} images in all ({report.size}x{report.size}, "
        f"{report.steps} steps); {report.wall_s} s wall time.", "",
        f"Result: **{'PASS' if s['ok'] else 'FAIL'}** -- {len(s['failed'])} failed requests, "
        f"{len(report.mixups)} images delivered with another request's seed or model.", "",
        "| kind | ok | refused (with message) | skipped | failed |", "|---|---|---|---|---|",
    ]
    for kind, counts in sorted(s["by_kind"].items()):
        lines.append(f"| {kind} | {counts.get('ok', 0)} | {counts.get('refused', 0)} | {counts.get('skipped', 0)} "
                     f"| {counts.get('failed', 0)} |")
    lines += ["", "Memory (" + report.memory.get("sampled_from", "") + "), after the mixed phase as warm-up:", "",
              "| what | start MB | end MB | peak MB | growth MB | at 0/25/50/75/100 % | samples | generations |",
              "|---|---|---|---|---|---|---|---|"]
    for name in ("rss", "vram"):
        m = report.memory.get(name)
        if m:
            lines.append(f"| {name.upper()} | {m['start_mb']} | {m['end_mb']} | {m['peak_mb']} | {m['growth_mb']} "
                         f"| {' / '.join(map(str, m['trend_mb']))} | {m['samples']} "
                         f"| {m['from_generation']}-{m['to_generation']} |")
    if s["failed"]:
        lines += ["", "Failures:", ""] + [f"- client {f['client']} {f['kind']}: {f['detail']}" for f in s["failed"][:20]]
    if report.mixups:
        lines += ["", "Mix-ups:", ""] + [f"- {m}" for m in report.mixups[:20]]
    skipped = sorted({o.detail for o in report.outcomes if o.status == "skipped"})
    if skipped:
        lines += ["", "Skipped: " + "; ".join(skipped) + "."]
    path.write_text("\n".join(lines) + "\n")
    return s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="a running server on 127.0.0.1 (default: start app.py --demo)")
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--requests", type=int, default=50, help="mixed requests in all (phase 1)")
    p.add_argument("--generations", type=int, default=200, help="images in all, for the memory trend")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--timeout", type=float, default=1800, help="the whole test stops after this many seconds")
    p.add_argument("--report", default=str(ROOT / "LOADTEST.md"))
    p.add_argument("--server-args", default="", help="extra app.py flags for the started server")
    a = p.parse_args(argv)
    command = "python scripts/load_test.py " + " ".join(argv if argv is not None else sys.argv[1:])
    server = None
    work = Path(tempfile.mkdtemp(prefix="loadtest-"))
    try:
        if a.url:
            url, pid = check_loopback(a.url), None
        else:
            server = DemoServer(work, a.server_args.split())
            url, pid = server.url, server.pid
        report = run(url, a.clients, a.requests, a.generations, a.size, a.steps, a.timeout, pid, command.strip())
        report.server = _describe_device()
        s = write_report(report, Path(a.report))
    finally:
        if server:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(Path(a.report).read_text())
    return 0 if s["ok"] else 1


def _describe_device() -> str:
    try:
        import torch
        if torch.cuda.is_available():
            return f"app.py --demo on {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"app.py --demo on the CPU ({os.cpu_count()} cores)"


if __name__ == "__main__":
    sys.exit(main())
