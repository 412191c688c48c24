"""Any OpenAI-compatible chat endpoint (llama.cpp server, vLLM, Ollama, LM Studio), streamed
over plain HTTP as server-sent events."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlparse

from omostc.compiler.grammar import Limits, canvas_gbnf
from omostc.diagnostics import LLMError
from omostc.llm.conversation import SamplingOptions
from omostc.spec.model import Message


@dataclass
class OpenAIChatBackend:
    """An OpenAI-compatible ``/chat/completions`` endpoint, streamed (server-sent events)."""

    base_url: str  # e.g. http://127.0.0.1:8080/v1
    model: str
    api_key: str | None = None
    timeout: float = 600.0
    # None, "llama.cpp" (the server's `grammar`), "vllm" (`guided_grammar`), or "json-schema" (OpenAI's
    # `response_format`, for servers that take only that: the answer is then a scene spec as JSON)
    grammar: str | None = None
    limits: Limits = field(default_factory=Limits)

    def stream(self, messages: list[Message], sampling: SamplingOptions) -> Iterator[str]:
        url = urlparse(self.base_url.rstrip("/") + "/chat/completions")
        if url.scheme not in ("http", "https") or not url.hostname:
            raise LLMError(f"base URL must be http(s)://host[:port]/path, not {self.base_url!r}")
        body = {
            "model": self.model, "stream": True,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "temperature": sampling.temperature, "top_p": sampling.top_p, "max_tokens": sampling.max_tokens,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if self.grammar == "llama.cpp":
            body["grammar"] = canvas_gbnf(self.limits)
        elif self.grammar == "vllm":
            body["guided_grammar"] = canvas_gbnf(self.limits)
        elif self.grammar == "json-schema":
            from omostc.spec.schema import scene_schema

            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "omostc_scene", "strict": True, "schema": scene_schema()},
            }
        elif self.grammar is not None:
            raise LLMError(f"grammar mode must be 'llama.cpp', 'vllm' or 'json-schema', not {self.grammar!r}")
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        conn = cls(url.hostname, url.port, timeout=self.timeout)
        try:
            conn.request("POST", url.path, body=json.dumps(body).encode("utf-8"), headers=headers)
            response = conn.getresponse()
            if response.status != 200:
                detail = response.read(2000).decode("utf-8", "replace")
                raise LLMError(f"{self.base_url}: HTTP {response.status}: {detail}")
            yield from _server_sent_text(response)
        except OSError as exc:
            raise LLMError(f"cannot reach {self.base_url}: {exc}") from None
        finally:
            conn.close()


def _server_sent_text(response) -> Iterator[str]:
    """The text deltas of an OpenAI streaming response."""
    for raw in response:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            continue
        for choice in chunk.get("choices", []):
            text = (choice.get("delta") or {}).get("content")
            if text:
                yield text
