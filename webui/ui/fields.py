"""A tab's request fields as one table: field name -> the Gradio component that holds it.

The table is the whole contract between a tab's controls, its handler and its named API
endpoint. The components go to the event by name (Gradio's `inputs_kwargs=table`), the
handler receives their values by name (`**values`), and the endpoint's parameters are the
table's keys, in the table's order. Nothing is matched by position.

    table = {"prompt": prompt, "steps": steps, **hires_controls(tab, service)}

    def txt2img(request, progress, **values):
        \"\"\"The endpoint's description on the API page.\"\"\"
        yield from run_generation(service, values, "txt2img", request, progress)

    generate.click(handler(txt2img, table), inputs_kwargs=table, outputs=..., api_name="txt2img")
"""

from __future__ import annotations

import inspect
from typing import Callable, Iterable

import gradio as gr

Table = dict[str, gr.components.Component]


def handler(body: Callable, table: Table, required: Iterable[str] = ()) -> Callable:
    """The event function for `body(request, progress, **values)` (a generator where it
    streams previews, as the Generate handlers do): `values` holds every field of `table`
    by name; `request` is the caller's gr.Request, `progress` a gr.Progress.

    Gradio names the endpoint's parameters from `inputs_kwargs`, but takes a parameter's
    default for gradio_client and the API page only from the component's initial value or,
    where that is None (an empty image, an unset dropdown), from a `None` default in the
    function's signature; without one the parameter would become required. So the
    signature is built here, once, from the table: `request` and `progress` (which Gradio
    fills in itself), then every field as a keyword-only parameter defaulting to None,
    except the `required` ones. This is the only place in the UI that builds a signature.
    """
    if inspect.isgeneratorfunction(body):  # Gradio streams only from generator functions
        def event(request: gr.Request = None, progress=gr.Progress(), **values):
            yield from body(request, progress, **values)
    else:
        def event(request: gr.Request = None, progress=gr.Progress(), **values):
            return body(request, progress, **values)

    required = set(required)
    unknown = required - set(table)
    if unknown:
        raise ValueError(f"required fields not in the table: {sorted(unknown)}")
    special = list(inspect.signature(event).parameters.values())[:2]  # request, progress
    named = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                               **({} if name in required else {"default": None}))
             for name in table]
    event.__signature__ = inspect.Signature(special + named)
    event.__name__ = event.__qualname__ = body.__name__  # Gradio names private events after it
    event.__doc__ = body.__doc__  # the API page's description of the endpoint
    event.fields = table  # the table it was built from (tests check the endpoint against it)
    return event
