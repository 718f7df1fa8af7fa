"""Start the portrait web UI: `python app.py --demo` works offline with no GPU."""

from __future__ import annotations

import logging
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from webui.serving.service import Service
    from webui.settings import settings_from_args
    from webui.ui import build_ui, launch_kwargs

    settings = settings_from_args(argv)
    if settings.share and not settings.auth:
        logging.warning("--share without --auth: anyone with the link can use your GPU. Add --auth user:pass.")
    service = Service.create(settings)
    demo = build_ui(service)
    demo.queue(default_concurrency_limit=1)
    demo.launch(**launch_kwargs(service))


if __name__ == "__main__":
    main(sys.argv[1:])
