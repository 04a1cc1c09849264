"""The example user filter in Python (componentize-py): tags requests with
`x-filter-lang: python`, answers the blocked path with 403, and counts every
request in `requests_total`."""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import metrics
from wit_world.imports.types import (
    Action_AddRequestHeader,
    Action_Respond,
    FilterInfo,
    HeaderSelection_Only,
    Hooks,
    LocalResponse,
    RetryDecision_GiveUp,
)

LANG = "python"
DEFAULT_BLOCKED_PATH = "/blocked"


def parse_config(config: bytes) -> str:
    """Returns the blocked path; raises ValueError("invalid config: ...")."""
    try:
        text = config.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"invalid config: {e}")
    if text.strip() == "":
        return DEFAULT_BLOCKED_PATH
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid config: {e}")
    if not isinstance(value, dict):
        raise ValueError("invalid config: expected a JSON object")
    for key in value:
        if key != "blocked_path":
            raise ValueError(f"invalid config: unknown field `{key}`, expected `blocked_path`")
    path = value.get("blocked_path", DEFAULT_BLOCKED_PATH)
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError("invalid config: blocked_path must be a string starting with '/'")
    return path


class Handler(exports.Handler):
    blocked_path = DEFAULT_BLOCKED_PATH

    def configure(self, config: bytes) -> FilterInfo:
        try:
            Handler.blocked_path = parse_config(config)
        except ValueError as e:
            raise Err(str(e))
        # Only the path is read: no header is copied into the filter.
        return FilterInfo(
            hooks=Hooks.REQUEST_HEADERS,
            request_body_limit=0,
            response_body_limit=0,
            request_headers=HeaderSelection_Only([]),
            response_headers=HeaderSelection_Only([]),
        )

    def on_request_headers(self, ctx, req):
        metrics.counter_add("requests_total", [("lang", LANG)], 1)
        if req.path == Handler.blocked_path:
            body = f"blocked by {LANG} filter".encode()
            return [Action_Respond(LocalResponse(403, [("content-type", "text/plain")], body))]
        return [Action_AddRequestHeader(("x-filter-lang", LANG))]

    def on_request_body(self, ctx, body):
        return []

    def on_response_headers(self, ctx, resp):
        return []

    def on_response_body(self, ctx, body):
        return []

    def on_attempt(self, ctx, attempt):
        return RetryDecision_GiveUp()
