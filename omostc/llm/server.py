"""Any OpenAI-compatible chat endpoint (llama.cpp server, vLLM, SGLang, TabbyAPI, Ollama, LM
Studio, OpenAI), streamed over plain HTTP as server-sent events. The Canvas grammar goes in the
field the server reads (``GRAMMAR_FIELDS``), bounded so that any program fits ``max_tokens``.

A server's reply is read within bounds derived from the tokens asked for (``max_tokens``), so a
server that ignores ``max_tokens``, sends one endless line, or stalls costs bounded memory and time:

* the answer: ``ANSWER_BYTES_PER_TOKEN`` (32) bytes of text per token, plus 64 KiB. Llama 3's
  tokens average about 4 bytes of Canvas code, and the longest are under 128.
* one line of the stream: 4 times the answer's bound (a server may send the whole answer as one
  JSON-escaped event).
* the whole stream: ``STREAM_BYTES_PER_TOKEN`` (1 KiB) per token, plus 1 MiB, and 8 lines per
  token, plus 4,096 (keep-alive comments). An event carrying one token is 250 bytes from vLLM and
  430 from llama.cpp with its timings.
* the whole request, from connecting to the last byte: ``timeout`` seconds (600 by default), also
  the socket's timeout.

Past a bound the reply is an LLMError; the text streamed so far has been handed to the caller
(``generate_scene`` keeps it in the error's ``answer``). Everything a server says that ends up in
an error message is escaped for the terminal.
"""

from __future__ import annotations

import http.client
import io
import json
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from omostc.compiler.budget import server_limits
from omostc.compiler.grammar import Limits, canvas_gbnf
from omostc.diagnostics import LLMError, printable
from omostc.llm.conversation import DEFAULT_TIMEOUT, MAX_TIMEOUT, SamplingOptions
from omostc.spec.model import Message

ANSWER_BYTES_PER_TOKEN, ANSWER_SLACK = 32, 64 * 1024
STREAM_BYTES_PER_TOKEN, STREAM_SLACK = 1024, 1024 * 1024
STREAM_LINES_PER_TOKEN, STREAM_LINES_SLACK = 8, 4096
ERROR_BODY = 64 * 1024  # bytes of an HTTP error's body read for its message
MESSAGE = 300  # characters of a server's message shown
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")

# The request field each server reads a GBNF grammar from (a server ignores fields it does not know).
GRAMMAR_FIELDS = {
    "llama.cpp": lambda g: {"grammar": g},
    "vllm": lambda g: {"structured_outputs": {"grammar": g}},  # vLLM 0.12 and later
    "vllm-legacy": lambda g: {"guided_grammar": g},  # vLLM before 0.12
    "sglang": lambda g: {"ebnf": g},
    "tabbyapi": lambda g: {"grammar_string": g},
}


@dataclass(frozen=True)
class ReplyBounds:
    """How much of a server's reply is read for an answer of ``max_tokens`` tokens."""

    max_tokens: int
    answer: int  # bytes of answer text
    line: int  # bytes in one line of the stream
    stream: int  # bytes of the whole stream
    lines: int  # lines of the whole stream

    @classmethod
    def for_tokens(cls, max_tokens: int) -> ReplyBounds:
        answer = ANSWER_BYTES_PER_TOKEN * max_tokens + ANSWER_SLACK
        return cls(max_tokens, answer, 4 * answer, STREAM_BYTES_PER_TOKEN * max_tokens + STREAM_SLACK,
                   STREAM_LINES_PER_TOKEN * max_tokens + STREAM_LINES_SLACK)


@dataclass
class OpenAIChatBackend:
    """An OpenAI-compatible ``/chat/completions`` endpoint, streamed (server-sent events)."""

    base_url: str  # e.g. http://127.0.0.1:8080/v1
    model: str
    api_key: str | None = None
    timeout: float = DEFAULT_TIMEOUT  # seconds for the whole request, and the socket's timeout
    # None, or how the server takes the grammar (GRAMMAR_FIELDS); "json-schema" sends OpenAI's
    # `response_format` instead (the answer is then a scene spec as JSON)
    grammar: str | None = None
    limits: Limits | None = None  # None: bounds derived from max_tokens, so every program fits them
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
        answered = False
        try:
            conn.connect()
            watchdog.watch(conn.sock)
            conn.request("POST", url.path + (f"?{url.query}" if url.query else ""), body=body, headers=headers)
            response = conn.getresponse()
            answered = True
            if response.status != 200:
                raise LLMError(f"HTTP {response.status} {printable(response.reason or '')}".rstrip()
                               + f": {_error_body(response)}", file=where)
            yield from _reply_text(response, ReplyBounds.for_tokens(sampling.max_tokens), where)
        except (OSError, http.client.HTTPException, LLMError) as exc:
            if watchdog.expired:
                raise LLMError(f"no complete answer within {timeout:g} s (--timeout)", file=where) from None
            if isinstance(exc, LLMError):
                raise
            if isinstance(exc, TimeoutError):
                raise LLMError(f"the server did not answer within {timeout:g} s (--timeout)", file=where) from None
            if not answered and isinstance(exc, OSError) and not isinstance(exc, http.client.HTTPException):
                raise LLMError(f"cannot reach the server: {printable(str(exc))}", file=where) from None
            raise LLMError(f"the server's reply broke off or is not HTTP: {_describe(exc)}", file=where) from None
        finally:
            watchdog.cancel()
            conn.close()


class _Watchdog:
    """Ends a request at its deadline, whatever it is waiting for: shutting the socket down wakes a
    read blocked on a server that stalls, or that sends a byte now and then (each read in time)."""

    def __init__(self, timeout: float):
        self.expired = False
        self._sock: socket.socket | None = None
        self._timer = threading.Timer(timeout, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket | None) -> None:
        self._sock = sock

    def _expire(self) -> None:
        self.expired = True
        if self._sock is not None:
            try:  # the plain socket's shutdown: an SSL socket's would drop its state under the reader
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self._timer.cancel()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, http.client.IncompleteRead):
        return "the connection closed in the middle of a chunk"
    if isinstance(exc, http.client.LineTooLong):
        return "a header or chunk line is too long"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without a reply"
    if isinstance(exc, http.client.BadStatusLine):
        return f"not an HTTP status line: {_said(exc.args[0] if exc.args else '')!s}"
    return printable(str(exc)) or type(exc).__name__


def _said(obj: Any) -> str:
    """What a server says (an error body or event: JSON or text), in one line, safe to print."""
    if isinstance(obj, bytes):
        obj = obj.decode("utf-8", "replace")
    if isinstance(obj, str):
        obj = _json(obj, obj)
    while isinstance(obj, dict):  # OpenAI's {"error": {"message": ...}}, vLLM's {"message": ...}, {"detail": ...}
        inner = next((obj[key] for key in ("error", "message", "detail") if obj.get(key)), None)
        if inner is None:
            break
        obj = inner
    text = obj if isinstance(obj, str) else json.dumps(obj)
    text = " ".join(re.sub(r"<[^>]*>", " ", text).split()) if re.search(r"</?\w+[^>]*>", text) else text
    text = " ".join(text.split())
    return printable(text[:MESSAGE] + (" ..." if len(text) > MESSAGE else "")) or "(no message)"


_NOT_JSON = object()


def _json(text: str | bytes, otherwise: Any) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python recurses
        return otherwise


def _error_body(response: http.client.HTTPResponse) -> str:
    return _said(response.read(ERROR_BODY))


def _reply_text(response: http.client.HTTPResponse, bounds: ReplyBounds, where: str) -> Iterator[str]:
    encoding = (response.getheader("Content-Encoding") or "identity").strip().lower()
    if encoding != "identity":
        raise LLMError(f"the reply is compressed ({printable(encoding)}), though the request asked for none",
                       file=where)
    kind = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
    if kind != "application/json":
        yield from _server_sent_text(response, bounds, where, kind)
        return
    # a server that answers in one piece, not streamed (or streams under the wrong Content-Type)
    data = response.read(bounds.line + 1)
    if len(data) > bounds.line:
        raise LLMError(f"the reply is larger than {_size(bounds.line)} (--max-tokens {bounds.max_tokens})",
                       file=where)
    if data.lstrip().startswith((b"data:", b"event:", b":")):
        yield from _server_sent_text(io.BytesIO(data), bounds, where, kind)
    else:
        yield _whole_answer(data, bounds, where)


def _whole_answer(data: bytes, bounds: ReplyBounds, where: str) -> str:
    reply = _json(data, _NOT_JSON)
    if reply is _NOT_JSON:
        raise LLMError(f"the reply is not JSON: {_said(data)}", file=where)
    if isinstance(reply, dict) and reply.get("error"):
        raise LLMError(f"the server reported an error: {_said(reply)}", file=where)
    choices = reply.get("choices") if isinstance(reply, dict) else None
    first = choices[0] if isinstance(choices, list) and choices else None
    message = first.get("message") if isinstance(first, dict) else None
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str):
        raise LLMError("the reply has no answer text (no choices[0].message.content)", file=where)
    text = _LONE_SURROGATE.sub("\ufffd", text)
    if len(text.encode("utf-8")) > bounds.answer:
        raise LLMError(_too_long(bounds), file=where)
    return text


def _too_long(bounds: ReplyBounds) -> str:
    return (f"the server sent more than {_size(bounds.answer)} of answer for --max-tokens {bounds.max_tokens}; "
            "it does not keep to max_tokens")


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


def _server_sent_text(response: http.client.HTTPResponse | io.BytesIO, bounds: ReplyBounds, where: str,
                      kind: str) -> Iterator[str]:
    """The text deltas of an OpenAI streaming response. Malformed events are skipped (and counted);
    an error event is an LLMError with the server's message; so is a stream that ends before the
    answer is complete (no ``[DONE]``, no finish_reason)."""
    read = lines = answer = events = malformed = 0
    name, finished, cut = "", False, False
    while True:
        raw = response.readline(bounds.line + 1)
        if not raw:
            break
        read, lines = read + len(raw), lines + 1
        if len(raw) > bounds.line:
            raise LLMError(f"the server sent a line longer than {_size(bounds.line)}", file=where)
        if read > bounds.stream or lines > bounds.lines:
            what = f"more than {_size(bounds.stream)}" if read > bounds.stream else f"more than {bounds.lines} lines"
            raise LLMError(f"the server sent {what} without finishing its answer (--max-tokens {bounds.max_tokens})",
                           file=where)
        cut = not raw.endswith(b"\n")  # the connection closed in the middle of a line
        line = raw.decode("utf-8", "replace").strip()
        if not line:
            name = ""  # a blank line ends an event
            continue
        key, _, value = line.partition(":")
        value = value.strip()
        if key == "event":
            name = value
        if key != "data":
            continue  # a comment (": keep-alive"), an id, a retry
        events += 1
        if value == "[DONE]":
            finished, cut = True, False
            break
        if name == "error":
            raise LLMError(f"the server reported an error: {_said(value)}", file=where)
        chunk = _json(value, _NOT_JSON)
        if chunk is _NOT_JSON:
            malformed += 1
            continue
        if isinstance(chunk, dict) and chunk.get("error"):  # llama.cpp and vLLM report errors mid-stream so
            raise LLMError(f"the server reported an error: {_said(chunk)}", file=where)
        parsed = _delta(chunk)
        if parsed is None:
            malformed += 1
            continue
        texts, done = parsed
        finished = finished or done
        for text in texts:
            answer += len(text.encode("utf-8"))
            if answer > bounds.answer:
                raise LLMError(_too_long(bounds), file=where)
            yield text
    if not events:
        raise LLMError(f"the reply is not a stream of server-sent events (Content-Type: {printable(kind) or 'none'}, "
                       f"{read} bytes): is the base URL an OpenAI-compatible /v1 endpoint?", file=where)
    if not answer and malformed:
        raise LLMError(f"the server's stream had no text ({malformed} malformed event{'s' * (malformed != 1)})",
                       file=where)
    if cut or not finished:
        raise LLMError("the server closed the connection before the answer was complete "
                       "(no [DONE], no finish_reason)", file=where)


def _delta(chunk: Any) -> tuple[list[str], bool] | None:
    """The texts of a chunk's choices and whether one finished; None when the chunk is not one."""
    if not isinstance(chunk, dict):
        return None
    choices = chunk.get("choices", [])
    if not isinstance(choices, list):
        return None
    texts, finished = [], False
    for choice in choices:
        if not isinstance(choice, dict):
            return None
        delta = choice["delta"] if "delta" in choice else choice.get("message", {})
        if not isinstance(delta, dict):
            return None
        content = delta.get("content")
        if content is not None and not isinstance(content, str):
            return None
        if content:
            texts.append(_LONE_SURROGATE.sub("\ufffd", content))  # JSON can escape them; no text holds them
        finished = finished or bool(choice.get("finish_reason"))
    return texts, finished
