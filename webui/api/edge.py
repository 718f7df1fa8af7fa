"""The REST edge: every /sdapi JSON body is checked (validate.check_fields) before FastAPI
reads it into the route's body model.

Python's JSON reader takes NaN, Infinity and 1e400 (as inf), and "\\ud800" (a lone
surrogate); FastAPI's own 422 echoes the offending input, and neither it nor the echo of a
request in `parameters` can encode such values: the client got a 500. Refused here, every
such body gets the API's 422 naming the field, as any other UserError.
"""

from __future__ import annotations

import json

from fastapi.routing import APIRoute
from starlette.requests import Request

from .access import error_response
from ..errors import UserError
from ..validate import check_fields, check_value


def check_body(body) -> None:
    """A parsed JSON body: each field of an object, or the whole of anything else ("body")."""
    if isinstance(body, dict):
        check_fields(body)
    else:
        check_value(body, "body")


class CheckedRoute(APIRoute):
    """An APIRoute whose JSON body goes through check_body first. The parsed body is kept on
    the request (Starlette caches request.json()), so FastAPI does not parse it again."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def checked(request: Request):
            if await request.body():
                try:
                    body = await request.json()
                except (json.JSONDecodeError, UnicodeDecodeError):
                    pass  # FastAPI answers a body that is not JSON with its own 422
                except RecursionError:
                    return error_response(UserError("the JSON body is nested too deeply", field="body"))
                except ValueError:  # Python reads at most 4300 digits of an integer
                    return error_response(UserError("the JSON body holds a number too long to read (over 4300 "
                                              "digits)", field="body"))
                else:
                    try:
                        check_body(body)
                    except UserError as e:
                        return error_response(e)
            return await handler(request)

        return checked


__all__ = ["CheckedRoute", "check_body"]
