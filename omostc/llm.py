"""The LLM front: ask a model for Canvas code, compile the answer, keep the conversation.

Conversations are Omost's: the system prompt the models were trained with (byte for byte),
then alternating user and assistant turns; an edit is a new user turn after the scene's last
assistant turn (its stored conversation, or its decompiled Canvas code in a python fence).

Backends: any OpenAI-compatible chat endpoint (llama.cpp server, vLLM, Ollama, LM Studio),
streamed over plain HTTP. Every answer is compiled; one that does not compile is reported with
the compiler's located error and, with retries, asked for again with a new seed.
"""

from __future__ import annotations

import http.client
import json
import random
from dataclasses import dataclass, field
from typing import Callable, Iterator
from urllib.parse import urlparse

from .decompile import decompile
from .diagnostics import CompileError, OmostcError
from .parse import CompileResult, compile_canvas
from .spec import Message, Provenance, Scene
from .tables import system_prompt

TEMPERATURE, TOP_P, MAX_NEW_TOKENS = 0.6, 0.9, 4096  # Omost's app defaults (OMOST.md section 8)


class LLMError(OmostcError):
    pass


def new_conversation(prompt: str) -> list[Message]:
    return [Message("system", system_prompt()), Message("user", prompt)]


def edit_conversation(scene: Scene, request: str) -> list[Message]:
    """The scene's stored conversation, else its decompiled canvas as the last assistant turn,
    followed by the edit request."""
    stored = scene.provenance.conversation if scene.provenance and scene.provenance.conversation else None
    if stored:
        turns = list(stored)
        if turns[0].role != "system":
            turns.insert(0, Message("system", system_prompt()))
    else:
        prompt = scene.provenance.prompt if scene.provenance and scene.provenance.prompt else None
        turns = [Message("system", system_prompt())]
        if prompt:
            turns.append(Message("user", prompt))
        turns.append(Message("assistant", decompile(scene, fence=True)))
    if turns[-1].role != "assistant":
        turns.append(Message("assistant", decompile(scene, fence=True)))
    return turns + [Message("user", request)]


@dataclass
class SamplingOptions:
    temperature: float = TEMPERATURE
    top_p: float = TOP_P
    max_tokens: int = MAX_NEW_TOKENS
    seed: int | None = None


@dataclass
class OpenAIChatBackend:
    """An OpenAI-compatible ``/chat/completions`` endpoint, streamed (server-sent events)."""

    base_url: str  # e.g. http://127.0.0.1:8080/v1
    model: str
    api_key: str | None = None
    timeout: float = 600.0

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


@dataclass
class Generation:
    scene: Scene
    answer: str
    result: CompileResult
    attempts: int
    errors: list[CompileError] = field(default_factory=list)  # of the answers that did not compile


def generate(backend, messages: list[Message], *, retries: int = 0, sampling: SamplingOptions | None = None,
             on_text: Callable[[str], None] | None = None, prompt: str | None = None) -> Generation:
    """Ask for a canvas until an answer compiles (``retries`` more times, each with a new seed).

    Raises the last CompileError when no answer compiles. The scene records its provenance: the
    prompt, the model and the whole conversation, answer included."""
    sampling = sampling or SamplingOptions()
    rng = random.Random(sampling.seed)
    errors: list[CompileError] = []
    for attempt in range(retries + 1):
        seed = sampling.seed if attempt == 0 else rng.randrange(2**31)
        parts = []
        for text in backend.stream(messages, SamplingOptions(sampling.temperature, sampling.top_p,
                                                             sampling.max_tokens, seed)):
            parts.append(text)
            if on_text is not None:
                on_text(text)
        answer = "".join(parts)
        try:
            result = compile_canvas(answer, file=f"<answer {attempt + 1}>")
        except CompileError as exc:
            errors.append(exc)
            continue
        # Stored without the system prompt (it is the models' constant, restored on edits).
        conversation = [*(m for m in messages if m.role != "system"), Message("assistant", answer)]
        result.scene.provenance = Provenance(prompt=prompt or _last_user(messages), model=backend.model,
                                             conversation=conversation)
        return Generation(result.scene, answer, result, attempt + 1, errors)
    raise errors[-1]


def _last_user(messages: list[Message]) -> str | None:
    return next((m.content for m in reversed(messages) if m.role == "user"), None)
