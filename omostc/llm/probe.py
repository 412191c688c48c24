"""What an OpenAI-compatible server is, asked before a request: which grammar field it reads,
and the model's context length where it says.

* llama.cpp answers ``GET /props`` (``default_generation_settings.n_ctx``): the ``grammar`` field.
* SGLang answers ``GET /get_model_info``: the ``ebnf`` field.
* vLLM answers ``GET /version``: ``structured_outputs`` from v0.12 (``guided_grammar`` before).
* ``GET /v1/models`` gives ``max_model_len`` (vLLM, SGLang) for the context.

Each probe is one small GET with a short timeout; a server that answers none of them is not
guessed at: the caller asks the user for ``--grammar``.
"""

from __future__ import annotations

import http.client
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

PROBE_TIMEOUT = 5.0  # seconds for each probe
PROBE_BYTES = 256 * 1024  # of a probe's reply read


@dataclass(frozen=True)
class ServerInfo:
    kind: str | None  # llama.cpp, vllm, vllm-legacy, sglang; None: not recognised
    context: int | None  # the model's context length in tokens, where the server says


def _get(base_url: str, path: str, api_key: str | None) -> Any:
    """``path`` on the server's root (``base_url`` without its ``/v1``), as JSON; None on any failure."""
    url = urlparse(base_url.rstrip("/"))
    if url.scheme not in ("http", "https") or not url.hostname:
        return None
    root = re.sub(r"/v1$", "", url.path)
    cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    conn = cls(url.hostname, url.port, timeout=PROBE_TIMEOUT)
    headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    try:
        conn.request("GET", root + path, headers=headers)
        response = conn.getresponse()
        if response.status != 200:
            return None
        return json.loads(response.read(PROBE_BYTES))
    except (OSError, http.client.HTTPException, ValueError, RecursionError):
        return None
    finally:
        conn.close()


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _version(text: Any) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", str(text))[:2]) if isinstance(text, str) else ()


def probe(base_url: str, model: str, api_key: str | None = None) -> ServerInfo:
    """Which server answers at ``base_url``, and the model's context length."""
    kind: str | None = None
    context: int | None = None
    props = _get(base_url, "/props", api_key)
    if isinstance(props, dict) and ("default_generation_settings" in props or "build_info" in props):
        kind = "llama.cpp"
        settings = props.get("default_generation_settings")
        context = _positive(settings.get("n_ctx")) if isinstance(settings, dict) else None
        context = context or _positive(props.get("n_ctx"))
    if kind is None:
        info = _get(base_url, "/get_model_info", api_key)
        if isinstance(info, dict) and "model_path" in info:
            kind = "sglang"
    if kind is None:
        version = _get(base_url, "/version", api_key)
        if isinstance(version, dict) and isinstance(version.get("version"), str):
            kind = "vllm" if _version(version["version"]) >= (0, 12) else "vllm-legacy"
    if context is None:
        models = _get(base_url, "/v1/models", api_key)
        entries = models.get("data") if isinstance(models, dict) else None
        entries = entries if isinstance(entries, list) else []
        for entry in entries:
            if isinstance(entry, dict) and (entry.get("id") == model or len(entries) == 1):
                context = _positive(entry.get("max_model_len"))
    return ServerInfo(kind, context)
