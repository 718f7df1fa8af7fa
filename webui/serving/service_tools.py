"""Service's tool methods behind A1111's extra routes: freeing and reloading the checkpoint,
captions (interrogate), ControlNet preprocessor maps. Service inherits them; each GPU piece of
work takes its caller's turn on the GPU queue like a generation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import UserError
from ..request.controlnet import ControlUnit, module_kind

if TYPE_CHECKING:
    from PIL import Image

    from .identity import Caller

INTERROGATE_MODELS = ("clip", "deepdanbooru")


class ServiceTools:
    def _on_gpu(self, work, caller: Caller | None):
        job = self.jobs.new(caller)
        try:
            return self.queue.call(work, job)
        finally:
            job.state = "done"

    def unload_checkpoint(self, caller: Caller | None = None) -> str | None:
        """Free the loaded checkpoints (device and CPU memory); the next request, or
        reload_checkpoint, loads the selected one again. Returns its name."""
        return self._on_gpu(self.manager.unload_models, caller)

    def reload_checkpoint(self, caller: Caller | None = None) -> str:
        """Load the selected checkpoint (after unload_checkpoint); its title."""
        model = self._on_gpu(self.manager.reload_model, caller)
        return self.catalog.title(model.ckpt)

    def caption(self, image: Image.Image, model: str = "clip", caller: Caller | None = None) -> str:
        """A caption of `image` (A1111's interrogate): "clip" runs the BLIP model in models/BLIP."""
        from ..models.captioner import Captioner

        name = (model or "clip").strip().lower() if isinstance(model, str) else ""
        if name == "deepdanbooru":
            raise UserError("model 'deepdanbooru' is not available here (no DeepDanbooru tagger); use model 'clip' "
                            "with a BLIP captioning folder in models/BLIP", field="model")
        if name != "clip":
            raise UserError(f"model must be one of {', '.join(INTERROGATE_MODELS)}", field="model")
        captioner = getattr(self, "_captioner", None)
        if captioner is None:
            captioner = self._captioner = Captioner(self.settings.models_dir, self.manager.device)
        return self._on_gpu(lambda: captioner.caption(image), caller)

    def controlnet_models(self) -> list[str]:
        """The ControlNet models in models/ControlNet (names a unit's `model` takes)."""
        from ..engine.extensions.controlnet import list_models

        return list_models(self.settings.models_dir)

    def preprocess(self, image: Image.Image, module: str, processor_res: int = 512, threshold_a: float = 100.0,
                   threshold_b: float = 200.0, caller: Caller | None = None) -> Image.Image:
        """The map a ControlNet preprocessor makes of `image`, at the image's size (the
        ControlNet extension's /controlnet/detect); an unknown module is a UserError naming it."""
        from ..engine.extensions.controlnet import control_image

        try:
            module_kind(module)
        except UserError as e:
            raise UserError(f"controlnet_module {module!r}: {e}", field="controlnet_module") from None
        unit = ControlUnit(model="", module=module, image=image, resize_mode=0, processor_res=int(processor_res),
                           threshold_a=float(threshold_a), threshold_b=float(threshold_b))
        cache = self.manager.controlnets.annotators
        return self._on_gpu(lambda: control_image(unit, image.width, image.height, cache), caller)
