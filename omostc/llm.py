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
from functools import lru_cache
from typing import Callable, Iterator
from urllib.parse import urlparse

from .decompile import decompile
from .grammar import Limits, canvas_gbnf
from .diagnostics import CompileError, OmostcError
from .parse import CompileResult, compile_canvas
from .spec import Message, Provenance, Scene
from .tables import system_prompt

TEMPERATURE, TOP_P, MAX_NEW_TOKENS = 0.6, 0.9, 4096  # Omost's app defaults (OMOST.md section 8)


class LLMError(OmostcError):
    pass


GENERIC_INSTRUCTIONS = (
    "\n\nAnswer every request with one complete python code block in exactly this form: "
    "`canvas = Canvas()`, then one `canvas.set_global_description(...)` call, then one "
    "`canvas.add_local_description(...)` call per part of the image, every argument given by keyword "
    "with a literal value, as in the example. Write nothing else."
)


def system_message(model_kind: str = "omost") -> str:
    """Omost's system prompt; for models not trained on it, plus instructions (a worked example
    follows as the first exchange, see ``new_conversation``)."""
    if model_kind == "omost":
        return system_prompt()
    if model_kind == "generic":
        return system_prompt() + GENERIC_INSTRUCTIONS
    raise LLMError(f"model kind must be 'omost' or 'generic', not {model_kind!r}")


def worked_example() -> list[Message]:
    """A real exchange with the Omost model (OMOST.md's transcript): a request and its canvas."""
    return list(_worked_example())


@lru_cache(maxsize=1)
def _worked_example() -> tuple[Message, Message]:
    from importlib import resources

    folder = resources.files("omostc.data")
    return (Message("user", folder.joinpath("example_user.md").read_text("utf-8").strip()),
            Message("assistant", folder.joinpath("example_assistant.md").read_text("utf-8").strip()))


def new_conversation(prompt: str, model_kind: str = "omost") -> list[Message]:
    example = worked_example() if model_kind == "generic" else []
    return [Message("system", system_message(model_kind)), *example, Message("user", prompt)]


def edit_conversation(scene: Scene, request: str, model_kind: str = "omost") -> list[Message]:
    """The scene's stored conversation, else its decompiled canvas as the last assistant turn,
    followed by the edit request."""
    stored = scene.provenance.conversation if scene.provenance and scene.provenance.conversation else None
    head = [Message("system", system_message(model_kind)), *(worked_example() if model_kind == "generic" else [])]
    if stored:
        turns = list(stored)
        if turns[0].role != "system":
            turns = head + turns
    else:
        prompt = scene.provenance.prompt if scene.provenance and scene.provenance.prompt else None
        turns = list(head)
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
            from .schema import scene_schema

            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "omostc_scene", "strict": True, "schema": scene_schema()}}
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


@dataclass
class Generation:
    scene: Scene
    answer: str
    result: CompileResult
    attempts: int
    errors: list[CompileError] = field(default_factory=list)  # of the answers that did not compile
    interrupted: bool = False  # Ctrl-C: the answer is what had been written, complete calls kept


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
        parts, interrupted = [], False
        stream = backend.stream(messages, SamplingOptions(sampling.temperature, sampling.top_p, sampling.max_tokens,
                                                          seed))
        try:
            for text in stream:
                parts.append(text)
                if on_text is not None:
                    on_text(text)
        except KeyboardInterrupt:  # stop generating, keep what was written
            interrupted = True
        finally:
            stream.close()
        answer = "".join(parts)
        try:
            if getattr(backend, "grammar", None) == "json-schema":  # a scene spec as JSON, kept as Canvas code
                result = _scene_from_json(answer, f"<answer {attempt + 1}>")
                answer = decompile(result.scene, fence=True)
            else:
                result = compile_canvas(answer, file=f"<answer {attempt + 1}>", partial=interrupted)
        except CompileError as exc:
            exc.answer = answer  # the text that did not compile, for whoever keeps the conversation
            errors.append(exc)
            if interrupted:
                raise
            continue
        # Stored without the system prompt and worked example (constants, restored on edits).
        example = worked_example()
        body = [m for m in messages if m.role != "system"]
        if body[:2] == example:
            body = body[2:]
        conversation = [*body, Message("assistant", answer)]
        result.scene.provenance = Provenance(prompt=prompt or _last_user(messages), model=backend.model,
                                             conversation=conversation)
        return Generation(result.scene, answer, result, attempt + 1, errors, interrupted)
    raise errors[-1]


def _scene_from_json(answer: str, file: str) -> CompileResult:
    from .diagnostics import SpecError
    from .yamlio import loads_spec

    try:
        return CompileResult(scene=loads_spec(answer, file=file))
    except SpecError as exc:
        raise CompileError(exc.diagnostics) from None


def _last_user(messages: list[Message]) -> str | None:
    return next((m.content for m in reversed(messages) if m.role == "user"), None)


# --- context ------------------------------------------------------------------------------

CONTEXT_TOKENS = 8192  # the Omost models' context


def estimate_tokens(text: str) -> int:
    """A tokenizer-free upper estimate for servers whose tokenizer we do not have."""
    return len(text) // 3 + 1


def trim_conversation(messages: list[Message], count: Callable[[str], int] = estimate_tokens, *,
                      limit: int = CONTEXT_TOKENS, reserve: int = MAX_NEW_TOKENS) -> tuple[list[Message], int]:
    """Drop the oldest turns until the conversation and ``reserve`` answer tokens fit in
    ``limit``, always keeping the system prompt, the latest canvas (the last assistant turn) and
    what follows it. The kept history starts with a user turn where it can. Returns the
    messages and how many turns were dropped."""
    system = messages[:1] if messages and messages[0].role == "system" else []
    rest = messages[len(system):]
    budget = limit - reserve - sum(count(m.content) for m in system)
    sizes = [count(m.content) for m in rest]
    latest = max((i for i, m in enumerate(rest) if m.role == "assistant"), default=len(rest) - 1)
    start = 0
    while start < latest and sum(sizes[start:]) > budget:
        start += 1
        while start < latest and rest[start].role != "user":
            start += 1
    return system + rest[start:], start


# --- transformers backend -------------------------------------------------------------------

@dataclass
class TransformersChatBackend:
    """A causal LM through transformers (the Omost models, their bitsandbytes-quantised variants,
    or any chat model), streamed with ``TextIteratorStreamer``."""

    model_path: str
    device_map: str = "auto"
    dtype: str = "bf16"
    constrain: bool = False  # decode under the Canvas grammar (xgrammar): every answer compiles
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self):
        self._model = None
        self._tokenizer = None
        self._compiled_grammar = None

    @property
    def model(self) -> str:
        return self.model_path

    def _load(self):
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        _check_quantisation(self.model_path)
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.model_path)
            self._model = AutoModelForCausalLM.from_pretrained(
                self.model_path, device_map=self.device_map,
                dtype={"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[self.dtype])
        except (OSError, ValueError) as exc:
            raise LLMError(f"cannot load the language model {self.model_path}: {exc}") from None

    def count_tokens(self, text: str) -> int:
        self._load()
        return len(self._tokenizer(text, add_special_tokens=False).input_ids)

    def prompt_ids(self, messages: list[Message]):
        self._load()
        return self._tokenizer.apply_chat_template([{"role": m.role, "content": m.content} for m in messages],
                                                   return_tensors="pt", add_generation_prompt=True,
                                                   return_dict=False)

    def _logits_processors(self) -> list:
        """The grammar constraint as a logits processor (compiled once per backend)."""
        if not self.constrain:
            return []
        try:
            import xgrammar as xgr
        except ImportError:
            raise LLMError("constrained decoding needs xgrammar: pip install 'omostc[grammar]'") from None
        if self._compiled_grammar is None:
            info = xgr.TokenizerInfo.from_huggingface(self._tokenizer, vocab_size=self._model.config.vocab_size)
            self._compiled_grammar = xgr.GrammarCompiler(info).compile_grammar(canvas_gbnf(self.limits))
        return [xgr.contrib.hf.LogitsProcessor(self._compiled_grammar)]

    def _generate_kwargs(self, input_ids, sampling: SamplingOptions) -> dict:
        import torch
        from transformers import LogitsProcessorList

        kwargs = dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                      max_new_tokens=sampling.max_tokens, do_sample=sampling.temperature > 0,
                      pad_token_id=self._tokenizer.eos_token_id,
                      logits_processor=LogitsProcessorList(self._logits_processors()))
        if sampling.temperature > 0:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p)
        return kwargs

    def sample_answers(self, messages: list[Message], n: int, sampling: SamplingOptions) -> list[str]:
        """``n`` answers in one batched generation (for best-of-n and for tests)."""
        import torch

        self._load()
        input_ids = self.prompt_ids(messages).to(self._model.device).repeat(n, 1)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        out = self._model.generate(**self._generate_kwargs(input_ids, sampling))
        return [self._tokenizer.decode(row[input_ids.shape[1]:], skip_special_tokens=True) for row in out]

    def stream(self, messages: list[Message], sampling: SamplingOptions) -> Iterator[str]:
        import threading

        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        self._load()
        input_ids = self.prompt_ids(messages).to(self._model.device)
        streamer = TextIteratorStreamer(self._tokenizer, timeout=600.0, skip_prompt=True, skip_special_tokens=True)
        stop = threading.Event()

        class Stop(StoppingCriteria):
            def __call__(self, *args, **kwargs) -> bool:
                return stop.is_set()

        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        kwargs = self._generate_kwargs(input_ids, sampling)
        kwargs.update(streamer=streamer, stopping_criteria=StoppingCriteriaList([Stop()]))
        thread = threading.Thread(target=self._model.generate, kwargs=kwargs, daemon=True)
        thread.start()
        try:
            yield from streamer
        finally:  # also on Ctrl-C or when the consumer stops early: stop generating, keep what came
            stop.set()
            thread.join()


def _check_quantisation(model_path: str) -> None:
    """A bitsandbytes-quantised model needs bitsandbytes; say so instead of a deep ImportError."""
    import importlib.util
    from pathlib import Path

    config = Path(model_path) / "config.json"
    if not config.is_file():
        return
    quant = json.loads(config.read_text(encoding="utf-8")).get("quantization_config") or {}
    if quant.get("quant_method") == "bitsandbytes" and importlib.util.find_spec("bitsandbytes") is None:
        raise LLMError(f"{model_path} is quantised with bitsandbytes "
                       f"({'4' if quant.get('load_in_4bit') else '8'}-bit): `pip install bitsandbytes` "
                       "(it runs on CPUs too, slowly), or use the unquantised model, or serve it with "
                       "llama.cpp/vLLM and pass --base-url")


def build_tiny_llama(folder, *, seed: int = 0):
    """A 0.1M-parameter Llama with a byte-level BPE tokenizer trained here and a Llama-3-style chat
    template, saved in the Hugging Face layout: for tests of the transformers path."""
    from pathlib import Path

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    specials = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [system_prompt(), "canvas = Canvas()\ncanvas.set_global_description(description='A cat.')\n"]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=600, special_tokens=specials,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    template = ("{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}"
                "<|end_header_id|>\n\n{{ message['content'] }}<|eot_id|>{% endfor %}"
                "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                        pad_token="<|eot_id|>", chat_template=template)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=CONTEXT_TOKENS, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# --- interactive sessions -------------------------------------------------------------------

@dataclass
class ChatSession:
    """The state of ``omostc chat``: the conversation, the scene of each answer that compiled,
    and the operations a person uses (ask, retry, undo, edit the last input)."""

    backend: object
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    messages: list[Message] = field(default_factory=lambda: [Message("system", system_prompt())])
    scenes: list[Scene | None] = field(default_factory=list)  # one per assistant turn

    def __post_init__(self):
        self._fixed = len(self.messages)  # the system prompt (and a worked example): never undone

    @property
    def scene(self) -> Scene | None:
        return next((s for s in reversed(self.scenes) if s is not None), None)

    def ask(self, text: str, on_text: Callable[[str], None] | None = None, seed: int | None = None) -> Generation:
        messages, _ = trim_conversation([*self.messages, Message("user", text)],
                                        getattr(self.backend, "count_tokens", estimate_tokens),
                                        reserve=self.sampling.max_tokens)
        sampling = SamplingOptions(self.sampling.temperature, self.sampling.top_p, self.sampling.max_tokens,
                                   self.sampling.seed if seed is None else seed)
        self.messages = messages
        try:
            result = generate(self.backend, messages, sampling=sampling, on_text=on_text, prompt=text)
        except CompileError as exc:  # keep the turn, so it can be retried, undone or edited
            self.messages = [*messages, Message("assistant", getattr(exc, "answer", ""))]
            self.scenes.append(None)
            raise
        self.messages = [*messages, Message("assistant", result.answer)]
        self.scenes.append(result.scene)
        return result

    def undo(self) -> bool:
        """Forget the last question and its answer."""
        if len(self.messages) < self._fixed + 2:
            return False
        self.messages = self.messages[:-2]
        self.scenes.pop()
        return True

    def last_input(self) -> str | None:
        return next((m.content for m in reversed(self.messages) if m.role == "user"), None)

    def retry(self, on_text=None) -> Generation:
        """Ask the last question again, with a new seed."""
        text = self.last_input()
        if text is None or not self.undo():
            raise LLMError("nothing to retry yet")
        return self.ask(text, on_text, seed=random.randrange(2**31))

    def edit_last(self, text: str, on_text=None) -> Generation:
        """Replace the last question and ask it."""
        if not self.undo():
            raise LLMError("nothing to edit yet")
        return self.ask(text, on_text)
