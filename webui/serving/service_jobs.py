"""Service's job methods: the jobs the UI and the REST API look up, stop and list, and the
Extras work that runs on the GPU queue. Service inherits them; they read its `jobs`, `queue`,
`manager` and `settings`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .identity import Caller, ui_owner
from ..engine.jobs import Job

if TYPE_CHECKING:
    from PIL import Image

    from ..engine.manager import GenerationResult
    from ..request import GenerationRequest


class ServiceJobs:
    def new_job(self, owner: Caller | str | None, job_id: str | None = None) -> Job:
        """A job to hand to `generate` (the REST API makes it first, to stop it on hang-up)."""
        return self.jobs.new(owner, job_id)

    def find_job(self, caller: Caller, id_task: str | None, session_hash: str | None) -> Job | None:
        """The job REST progress/interrupt/skip address: by `id_task`, by a UI page's
        `session_hash` (hashed with the caller's verified user and session cookie, so only that
        page's own browser reaches it), or else the caller's own latest API job. Under --auth a
        job of another user is never reached, even by its id."""
        if id_task:
            job = self.jobs.get(id_task)
            if job is None:
                return None
            job_user = getattr(job.caller, "user", None)
            return job if caller.may_see(job_user, bool(self.settings.auth)) else None
        if session_hash:
            return self.jobs.latest_for(ui_owner(caller.user, caller.sid, session_hash))
        return self.jobs.latest_for(caller.owner) if caller.owner else None

    def interrupt_jobs(self, owner: str | None) -> int:
        """Stop the owner's running jobs now (finished images are kept); how many there were."""
        return self.jobs.interrupt(owner)

    def skip_jobs(self, owner: str | None) -> int:
        """Skip the image the owner's running jobs are making; how many there were."""
        return self.jobs.skip(owner)

    def history(self, owner: str | None) -> list[tuple[object, str]]:
        """The owner's results this session, oldest first: (image or saved path, infotext)."""
        return self.jobs.history(owner)

    def upscale_image(self, image: Image.Image, upscaler: str, size: tuple[int, int],
                      owner: Caller | str | None = None) -> Image.Image:
        """Extras' upscale, run in the owner's turn on the GPU queue."""
        job = self.jobs.new(owner)
        try:
            return self.queue.call(lambda: self.manager.upscale_image(image, upscaler, size), job)
        finally:
            job.state = "done"

    def detail_faces(self, req: GenerationRequest, owner: Caller | str | None = None) -> GenerationResult:
        """Extras' face detail pass on `req.init_image`, run in the owner's turn on the GPU queue."""
        job = self.jobs.new(owner)
        return self.queue.call(lambda: self.manager.detail_faces(req, job), job, req)

    def hold_queue(self):
        """`with service.hold_queue():` nothing starts on the GPU until the block ends, so work
        submitted together from several threads (an X/Y/Z plot's cells) can share batches."""
        return self.queue.hold()

    def plot(self, fields: dict, task: str = "txt2img"):
        """The checked X/Y/Z plot plan `fields` select with `script_name`/`script_args` (A1111's),
        None when they select no script; an unknown script or bad axis is a UserError."""
        from .xyz_plot import plan_plot

        return plan_plot(self, fields, task)

    def run_plot(self, plan, owner: Caller | str | None = None, job: Job | None = None) -> GenerationResult:
        """Run a plan from `plot`: its cells go to the GPU queue together (compatible ones share
        a batch); the result holds the labelled grid first, then the cells when asked for."""
        from .xyz_plot import run_plot

        job = job or self.jobs.new(owner)
        result = run_plot(self, plan, owner, job)
        self.jobs.record(job.owner, result)  # the grid and the cells, in the owner's History
        return result
