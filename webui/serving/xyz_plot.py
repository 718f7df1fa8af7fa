"""Running the X/Y/Z plot: every cell becomes a request of its own, all checked before anything
runs (a bad cell refuses the whole plot), then all are submitted to the GPU queue at once from
their own threads, so compatible cells share UNet batches; a cell's pixels are those of the
single generation with its settings. The result holds the labelled grid first (saved in
outputs/<task>-grids/ when the request saves images), then the z sub-grids and the cells when
asked for, each cell with its own infotext.
"""

from __future__ import annotations

import datetime as _dt
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..engine.manager import GenerationResult
from ..errors import UserError
from ..imaging.grids import labelled_grid
from ..request import GenerationRequest
from ..request.scripts import XYZ_PLOT, selected_script
from ..request.xyz import FIELD, XYZPlot, parse_plot, plan_cells
from .outputs import save_numbered
from .memory_budget import estimate


@dataclass(frozen=True)
class PlotPlan:
    plot: XYZPlot
    cells: list[tuple[tuple[int, int, int], GenerationRequest]]

    @property
    def first(self) -> GenerationRequest:
        return self.cells[0][1]


def plan_plot(service, fields: dict, task: str) -> PlotPlan | None:
    """The checked plan of the script `fields` select (None when they select none)."""
    name = selected_script(fields.get("script_name"))
    if name is None:
        return None
    if name != XYZ_PLOT:  # pragma: no cover - the only selectable script honoured
        raise UserError(f"script_name {name!r} is not supported", field="script_name")
    plot, cells = plan_cells(parse_plot(fields.get("script_args") or [], task), fields)
    out = []
    for pos, cell in cells:
        try:
            req = service.request(cell, task)
            if req.sd_model_checkpoint:
                service.checkpoint_title(req.sd_model_checkpoint)
        except UserError as e:
            where = ", ".join(f"{a}={v}" for a, v in zip("xyz", pos) if v or a == "x")
            raise UserError(f"X/Y/Z plot cell ({where}): {e}", field=e.field or FIELD) from None
        out.append((pos, req))
    return PlotPlan(plot, out)


def _labels(plot: XYZPlot, which: str) -> list[str]:
    axis = getattr(plot, which)
    return [axis.label(v) for v in axis.values] if axis.field and plot.draw_legend else []


def run_plot(service, plan: PlotPlan, owner=None, job=None) -> GenerationResult:
    """Run every cell (concurrently through the GPU queue) and draw the grid."""
    plot = plan.plot
    job = job or service.new_job(owner)
    if getattr(job, "caller", None) is not None:
        service.admit(job.caller)  # the plot counts once against the rate limit
    client = job.caller.rate_key(service.settings.rate_limit_by) if job.caller is not None else None
    results: list = [None] * len(plan.cells)
    # The cells' jobs have an owner key of their own, so "my latest job" (REST progress and
    # interrupt without an id) stays the plot's job; stopping it stops them.
    cell_jobs = [service.new_job(f"{job.owner}/xyz-plot") for _ in plan.cells]

    def work(i: int, req: GenerationRequest):
        try:
            results[i] = service.generate(req, job=cell_jobs[i])
        except BaseException as e:  # noqa: BLE001 - reported below
            results[i] = e

    with service.client_bytes.hold(client, max(estimate(r).total for _, r in plan.cells)):
        threads = [threading.Thread(target=work, args=(i, r), daemon=True, name=f"xyz-{i}")
                   for i, (_, r) in enumerate(plan.cells)]
        with service.hold_queue():  # every cell waits in the queue before the first starts
            for t in threads:
                t.start()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not all(
                    r is not None or j.queue_position is not None for r, j in zip(results, cell_jobs)):
                time.sleep(0.005)
            _pass_on_interrupt(job, cell_jobs)  # stopped already: no cell reaches the GPU
        job.state, job.image_count, job.total_steps = "running", len(threads), 1  # progress: cells done
        for t in threads:
            while t.is_alive():
                t.join(0.1)
                _pass_on_interrupt(job, cell_jobs)
            job.image_index = sum(1 for r in results if r is not None)
            job.notify()
    job.state = "done"
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise errors[0]
    return _assemble(service, plan, results)


def _pass_on_interrupt(job, cell_jobs) -> None:
    if job.interrupted:
        for j in cell_jobs:
            j.interrupt()


def _assemble(service, plan: PlotPlan, results: list[GenerationResult]) -> GenerationResult:
    plot = plan.plot
    nx, ny, nz = plot.shape()
    first = next((r for r in results if r.images), None)
    if first is None:  # interrupted before any cell finished
        return GenerationResult(plan.first, [], [], [], results[0].model_name, results[0].model_hash,
                                interrupted=True)
    blank = Image.new("RGB", first.images[0].size, "gray")  # a cell stopped before its picture
    images = [r.images[0] if r.images else blank for r in results]
    subgrids = []
    for iz in range(nz):
        rows = [[images[iz * nx * ny + iy * nx + ix] for ix in range(nx)] for iy in range(ny)]
        subgrids.append(labelled_grid(rows, _labels(plot, "x"), _labels(plot, "y"), plot.margin_size))
    zlab = _labels(plot, "z")
    grid = subgrids[0] if nz == 1 else labelled_grid([subgrids], zlab, [], plot.margin_size * 2)
    base_info = first.infotexts[0] if first.infotexts else ""
    grid_info = _with_params(base_info, plot.infotext_params())
    out_images, out_infos, out_seeds = [grid], [grid_info], [first.seeds[0] if first.seeds else plan.first.seed]
    if plot.include_sub_grids and nz > 1:
        out_images += subgrids
        out_infos += [grid_info] * nz
        out_seeds += [out_seeds[0]] * nz
    if plot.include_lone_images:
        for r in results:
            out_images += r.images[:1]
            out_infos += r.infotexts[:1]
            out_seeds += r.seeds[:1]
    result = GenerationResult(first.request, out_images, out_seeds, out_infos, first.model_name, first.model_hash,
                              warnings=[w for r in results for w in r.warnings],
                              interrupted=any(r.interrupted for r in results))
    if plan.first.save_images:
        folder = Path(service.settings.outputs_dir) / f"{_kind(plan.first.task)}-grids" / _dt.date.today().isoformat()
        try:
            result.paths.append(save_numbered(folder, lambda n: f"{n:05d}-grid.png", grid, grid_info))
        except OSError as e:
            result.warnings.append(f"the grid was not saved to {folder} ({e.strerror or e})")
        if plot.include_lone_images and len(out_images) == 1 + len(results):
            cell_paths = [r.paths[0] for r in results if r.paths]
            if len(cell_paths) == len(results):
                result.paths += cell_paths
    return result


def _kind(task: str) -> str:
    return "txt2img" if task == "txt2img" else "img2img"


def _with_params(infotext: str, params: list[tuple[str, str]]) -> str:
    """`infotext` with the plot's own entries added to its parameter line."""
    if not infotext:
        return ""
    extra = ", ".join(f'{k}: "{v}"' if ("," in v or ":" in v) else f"{k}: {v}" for k, v in params)
    lines = infotext.rstrip("\n").split("\n")
    lines[-1] = f"{lines[-1]}, {extra}"
    return "\n".join(lines)


__all__ = ["PlotPlan", "plan_plot", "run_plot"]
