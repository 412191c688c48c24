"""Reading an OpenAI-compatible server's reply: its stream of server-sent events (or one JSON
body), within bounds derived from the tokens asked for (``max_tokens``), so that a server that
ignores ``max_tokens``, sends one endless line or garbage costs bounded memory and time:

* the answer: ``ANSWER_BYTES_PER_TOKEN`` (32) bytes of text per token, plus 64 KiB. Llama 3's
  tokens average about 4 bytes of Canvas code, and the longest are under 128.
* one line of the stream: 4 times the answer's bound (a server may send the whole answer as one
  JSON-escaped event).
* the whole stream: ``STREAM_BYTES_PER_TOKEN`` (1 KiB) per token, plus 1 MiB, and 8 lines per
  token, plus 4,096 (keep-alive comments). An event carrying one token is 250 bytes from vLLM and
  430 from llama.cpp with its timings.
* events with text: twice ``max_tokens``, plus 64 (servers send one token per event, or several).

Past a bound the reply is an LLMError. So is an error event (``data: {"error": ...}``, vLLM's
``{"object": "error", ...}``, ``event: error``, or llama.cpp's ``error: {...}`` line), with the
server's message. A malformed event (not JSON, or not shaped as OpenAI's chunks) is named in the
error when no text came; among events with text it is skipped and named in the caller's warnings.
"""

from __future__ import annotations

import http.client
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from omostc.diagnostics import LLMError, printable

ANSWER_BYTES_PER_TOKEN, ANSWER_SLACK = 32, 64 * 1024
STREAM_BYTES_PER_TOKEN, STREAM_SLACK = 1024, 1024 * 1024
STREAM_LINES_PER_TOKEN, STREAM_LINES_SLACK = 8, 4096
TEXT_EVENTS_PER_TOKEN, TEXT_EVENTS_SLACK = 2, 64
ERROR_BODY = 64 * 1024  # bytes of an HTTP error's body read for its message
MESSAGE = 300  # characters of a server's message shown
EXCERPT = 80  # characters of a malformed event shown
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
_NOT_JSON = object()


@dataclass(frozen=True)
class ReplyBounds:
    """How much of a server's reply is read for an answer of ``max_tokens`` tokens."""

    max_tokens: int
    answer: int  # bytes of answer text
    line: int  # bytes in one line of the stream
    stream: int  # bytes of the whole stream
    lines: int  # lines of the whole stream
    texts: int  # events with text

    @classmethod
    def for_tokens(cls, max_tokens: int) -> ReplyBounds:
        answer = ANSWER_BYTES_PER_TOKEN * max_tokens + ANSWER_SLACK
        return cls(max_tokens, answer, 4 * answer, STREAM_BYTES_PER_TOKEN * max_tokens + STREAM_SLACK,
                   STREAM_LINES_PER_TOKEN * max_tokens + STREAM_LINES_SLACK,
                   TEXT_EVENTS_PER_TOKEN * max_tokens + TEXT_EVENTS_SLACK)


def said(obj: Any) -> str:
    """What a server says (an error body or event: JSON or text), in one line, safe to print:
    OpenAI's ``{"error": {"message": ...}}``, vLLM's ``{"message": ...}``, Ollama's ``{"error": ...}``,
    FastAPI's ``{"detail": [{"msg": ...}]}``, or text (HTML tags dropped)."""
    if isinstance(obj, bytes):
        obj = obj.decode("utf-8", "replace")
    if isinstance(obj, str):
        obj = _json(obj, obj)
    for _ in range(64):
        if isinstance(obj, list) and obj:
            obj = obj[0]
        elif isinstance(obj, dict):
            inner = next((obj[key] for key in ("error", "message", "detail", "msg") if obj.get(key)), None)
            if inner is None:
                break
            obj = inner
        else:
            break
    text = obj if isinstance(obj, str) else json.dumps(obj)
    text = " ".join(re.sub(r"<[^>]*>", " ", text).split()) if re.search(r"</?\w+[^>]*>", text) else text
    text = " ".join(text.split())
    return printable(text[:MESSAGE] + (" ..." if len(text) > MESSAGE else "")) or "(no message)"


def _json(text: str | bytes, otherwise: Any) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python recurses
        return otherwise


def reply_text(response: http.client.HTTPResponse, bounds: ReplyBounds, where: str,
               warnings: list[str]) -> Iterator[str]:
    """The answer's text as it comes; what was skipped on the way is added to ``warnings``."""
    encoding = (response.getheader("Content-Encoding") or "identity").strip().lower()
    if encoding != "identity":
        raise LLMError(f"the reply is compressed ({printable(encoding)}), though the request asked for none",
                       file=where)
    kind = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
    if kind != "application/json":
        yield from server_sent_text(response, bounds, where, kind, warnings)
        return
    # a server that answers in one piece, not streamed (or streams under the wrong Content-Type)
    data = response.read(bounds.line + 1)
    if len(data) > bounds.line:
        raise LLMError(f"the reply is larger than {_size(bounds.line)} (--max-tokens {bounds.max_tokens})",
                       file=where)
    if data.lstrip().startswith((b"data:", b"event:", b"error:", b":")):
        yield from server_sent_text(io.BytesIO(data), bounds, where, kind, warnings)
    else:
        yield _whole_answer(data, bounds, where)


def _whole_answer(data: bytes, bounds: ReplyBounds, where: str) -> str:
    reply = _json(data, _NOT_JSON)
    if reply is _NOT_JSON:
        raise LLMError(f"the reply is not JSON: {said(data)}", file=where)
    if _is_error(reply):
        raise LLMError(f"the server reported an error: {said(reply)}", file=where)
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


def _is_error(obj: Any) -> bool:
    return isinstance(obj, dict) and (bool(obj.get("error")) or obj.get("object") == "error")


def _too_long(bounds: ReplyBounds) -> str:
    return (f"the server sent more than {_size(bounds.answer)} of answer for --max-tokens {bounds.max_tokens}; "
            "it does not keep to max_tokens")


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


def server_sent_text(response: http.client.HTTPResponse | io.BytesIO, bounds: ReplyBounds, where: str,
                     kind: str, warnings: list[str]) -> Iterator[str]:
    """The text deltas of an OpenAI streaming response. An error event is an LLMError with the
    server's message; so is a stream that ends before the answer is complete (no ``[DONE]``, no
    finish_reason), and one whose events are all malformed (the first is named)."""
    read = lines = answer = events = texts = 0
    malformed: list[str] = []  # what is wrong with each malformed event, and an excerpt of it
    head = b""  # the reply's start: what it says when it is no stream at all
    name, finished, cut = "", False, False
    while True:
        raw = response.readline(bounds.line + 1)
        if not raw:
            break
        read, lines = read + len(raw), lines + 1
        if len(head) < ERROR_BODY:
            head += raw[:ERROR_BODY - len(head)]
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
        if key == "error" or (key == "data" and name == "error"):  # llama.cpp's `error: {...}`; `event: error`
            raise LLMError(f"the server reported an error: {said(value)}", file=where)
        if key != "data":
            continue  # a comment (": keep-alive"), an id, a retry
        events += 1
        if value == "[DONE]":
            finished, cut = True, False
            break
        chunk = _json(value, _NOT_JSON)
        if _is_error(chunk):  # llama.cpp and vLLM report errors mid-stream so
            raise LLMError(f"the server reported an error: {said(chunk)}", file=where)
        parsed = "not JSON" if chunk is _NOT_JSON else _delta(chunk)
        if isinstance(parsed, str):
            excerpt = printable(value[:EXCERPT] + (" ..." if len(value) > EXCERPT else ""))
            malformed.append(f"{parsed}: data: {excerpt}")
            continue
        found, done = parsed
        finished = finished or done
        for text in found:
            answer, texts = answer + len(text.encode("utf-8")), texts + 1
            if answer > bounds.answer:
                raise LLMError(_too_long(bounds), file=where)
            if texts > bounds.texts:
                raise LLMError(f"the server sent more than {bounds.texts} pieces of text for --max-tokens "
                               f"{bounds.max_tokens}; it does not keep to max_tokens", file=where)
            yield text
    if not events:
        if _is_error(_json(head, None)):  # an error as one JSON body, under a stream's Content-Type
            raise LLMError(f"the server reported an error: {said(head)}", file=where)
        raise LLMError(f"the reply is not a stream of server-sent events (Content-Type: {printable(kind) or 'none'}, "
                       f"{read} bytes): is the base URL an OpenAI-compatible /v1 endpoint?"
                       + (f" It says: {said(head)}" if head.strip() else ""), file=where)
    count = f"{len(malformed)} malformed event{'s' * (len(malformed) != 1)}"
    if not answer and malformed:
        raise LLMError(f"the server's stream had no text ({count}; the first: {malformed[0]})", file=where)
    if malformed:
        warnings.append(f"skipped {count} from the server (the first: {malformed[0]})")
    if cut or not finished:
        raise LLMError("the server closed the connection before the answer was complete "
                       "(no [DONE], no finish_reason)", file=where)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "text" if isinstance(value, str) else "a number"


def _delta(chunk: Any) -> tuple[list[str], bool] | str:
    """The texts of a chunk's choices and whether one finished; or what is wrong with the chunk."""
    if not isinstance(chunk, dict):
        return f"the event is {_kind(chunk)}, not an object"
    if "choices" not in chunk:
        return 'the event has no "choices"'
    choices = chunk["choices"]
    if not isinstance(choices, list):
        return f'"choices" is {_kind(choices)}, not a list'
    texts, finished = [], False
    for choice in choices:
        if not isinstance(choice, dict):
            return f"a choice is {_kind(choice)}, not an object"
        reason = choice.get("finish_reason")
        if reason is not None and not isinstance(reason, str):
            return f'"finish_reason" is {_kind(reason)}, not text'
        key = "delta" if "delta" in choice else "message" if "message" in choice else None
        if key is None:
            if reason:
                finished = True
                continue
            return 'a choice has no "delta"'
        delta = choice[key]
        if not isinstance(delta, dict):
            return f'"{key}" is {_kind(delta)}, not an object'
        content = delta.get("content")
        if content is not None and not isinstance(content, str):
            return f'"content" is {_kind(content)}, not text'
        if content:
            texts.append(_LONE_SURROGATE.sub("\ufffd", content))  # JSON can escape them; no text holds them
        finished = finished or bool(reason)
    return texts, finished
