"""Any OpenAI-compatible chat endpoint (llama.cpp server, vLLM, SGLang, TabbyAPI, Ollama, LM
Studio, OpenAI), streamed over plain HTTP as server-sent events. The Canvas grammar goes in the
field the server reads (``GRAMMAR_FIELDS``), bounded so that any program fits ``max_tokens``.

A request waits ``timeout`` seconds (600 by default, ``--timeout``) to connect, then for the
first text, then between one text and the next: a server that stalls, or drips bytes that never
make an event with text, is given up on; one that answers slowly but steadily is not. The reply is
read by ``omostc.llm.replies``, within bounds derived from ``max_tokens``. Everything a server says
that ends up in an error message is escaped for the terminal.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from omostc.compiler.budget import server_limits
from omostc.compiler.grammar import Limits, canvas_gbnf
from omostc.diagnostics import LLMError, printable
from omostc.llm.conversation import DEFAULT_TIMEOUT, MAX_TIMEOUT, SamplingOptions
from omostc.llm.replies import ERROR_BODY, ReplyBounds, reply_text, said
from omostc.spec.model import Message

# The request field each server reads a GBNF grammar from (a server ignores fields it does not know).
GRAMMAR_FIELDS = {
    "llama.cpp": lambda g: {"grammar": g},
    "vllm": lambda g: {"structured_outputs": {"grammar": g}},  # vLLM 0.12 and later
    "vllm-legacy": lambda g: {"guided_grammar": g},  # vLLM before 0.12
    "sglang": lambda g: {"ebnf": g},
    "tabbyapi": lambda g: {"grammar_string": g},
}



@dataclass
class OpenAIChatBackend:
    """An OpenAI-compatible ``/chat/completions`` endpoint, streamed (server-sent events)."""

    base_url: str  # e.g. http://127.0.0.1:8080/v1
    model: str
    api_key: str | None = None
    timeout: float = DEFAULT_TIMEOUT  # seconds to connect, for the first text, and between texts
    # None, or how the server takes the grammar (GRAMMAR_FIELDS); "json-schema" sends OpenAI's
    # `response_format` instead (the answer is then a scene spec as JSON)
    grammar: str | None = None
    limits: Limits | None = None  # None: bounds derived from max_tokens, so every program fits them
    warnings: list[str] = field(default_factory=list)  # about the last stream: malformed events skipped
    context: int | None = None  # the model's context in tokens, where the server said (omostc.llm.probe)
    constraint_note: str = ""  # why no grammar is sent, where one would have been

    def _body(self, messages: list[Message], sampling: SamplingOptions) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model, "stream": True,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "temperature": sampling.temperature, "top_p": sampling.top_p, "max_tokens": sampling.max_tokens,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if self.grammar == "json-schema":
            from omostc.spec.schema import scene_schema

            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "omostc_scene", "strict": True, "schema": scene_schema()},
            }
        elif self.grammar in GRAMMAR_FIELDS:
            gbnf = canvas_gbnf(self.limits or server_limits(sampling.max_tokens))
            body.update(GRAMMAR_FIELDS[self.grammar](gbnf))
        elif self.grammar is not None:
            raise LLMError(f"grammar mode must be one of {', '.join([*GRAMMAR_FIELDS, 'json-schema'])}, "
                           f"not {self.grammar!r}")
        return body

    def stream(self, messages: list[Message], sampling: SamplingOptions) -> Iterator[str]:
        url = urlparse(self.base_url.rstrip("/") + "/chat/completions")
        if url.scheme not in ("http", "https") or not url.hostname:
            raise LLMError(f"base URL must be http(s)://host[:port]/path, not {self.base_url!r}")
        body = json.dumps(self._body(messages, sampling)).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream", "Accept-Encoding": "identity"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        where = self.base_url
        timeout = min(self.timeout, MAX_TIMEOUT) if self.timeout > 0 else DEFAULT_TIMEOUT
        cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        conn = cls(url.hostname, url.port, timeout=timeout)
        watchdog = _Watchdog(timeout)
        self.warnings = []
        answered = False
        try:
            conn.connect()
            watchdog.watch(conn.sock)
            conn.request("POST", url.path + (f"?{url.query}" if url.query else ""), body=body, headers=headers)
            response = conn.getresponse()
            answered = True
            if response.status != 200:
                raise LLMError(f"HTTP {response.status} {printable(response.reason or '')}".rstrip()
                               + f": {said(response.read(ERROR_BODY))}", file=where)
            for text in reply_text(response, ReplyBounds.for_tokens(sampling.max_tokens), where, self.warnings):
                watchdog.progress()
                yield text
        except (OSError, http.client.HTTPException, LLMError) as exc:
            if watchdog.expired or isinstance(exc, TimeoutError):
                raise LLMError(watchdog.message(), file=where) from None
            if isinstance(exc, LLMError):
                raise
            if not answered and not isinstance(exc, http.client.HTTPException):
                raise LLMError(f"cannot reach the server: {printable(str(exc))}", file=where) from None
            raise LLMError(f"the server's reply broke off or is not HTTP: {_describe(exc)}", file=where) from None
        finally:
            watchdog.cancel()
            conn.close()


class _Watchdog:
    """Ends a request that makes no progress for ``timeout`` seconds: while connecting, while
    waiting for the first text, and between texts. Shutting the socket down wakes a read blocked
    on a server that stalls, or that sends a byte now and then (each read in time, none with text)."""

    def __init__(self, timeout: float):
        self.timeout, self.expired, self.phase = timeout, False, "connecting"  # then "waiting", "streaming"
        self._sock: socket.socket | None = None
        self._deadline = time.monotonic() + timeout
        self._done = threading.Event()
        threading.Thread(target=self._run, name="omostc-watchdog", daemon=True).start()

    def watch(self, sock: socket.socket | None) -> None:
        """Connected: the first text is awaited for ``timeout`` seconds from now."""
        self._sock = sock
        self._deadline = time.monotonic() + self.timeout
        self.phase = "waiting"

    def progress(self) -> None:
        """Text came: the next is awaited for ``timeout`` seconds from now."""
        self._deadline = time.monotonic() + self.timeout
        self.phase = "streaming"

    def message(self) -> str:
        t = f"{self.timeout:g} s (--timeout)"
        if self.phase == "connecting":
            return f"cannot connect to the server within {t}"
        if self.phase == "streaming":
            return f"the server stalled: no more text within {t}"
        return f"the server sent no text within {t}"

    def _run(self) -> None:
        while not self._done.wait(max(0.0, self._deadline - time.monotonic())):
            if time.monotonic() >= self._deadline:
                self._expire()
                return

    def _expire(self) -> None:
        self.expired = True
        if self._sock is not None:
            try:  # the plain socket's shutdown: an SSL socket's would drop its state under the reader
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self._done.set()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, http.client.IncompleteRead):
        return "the connection closed in the middle of a chunk"
    if isinstance(exc, http.client.LineTooLong):
        return "a header or chunk line is too long"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without a reply"
    if isinstance(exc, http.client.BadStatusLine):
        return f"not an HTTP status line: {said(exc.args[0] if exc.args else '')!s}"
    return printable(str(exc)) or type(exc).__name__
