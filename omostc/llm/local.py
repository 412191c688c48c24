"""A causal LM in this process through transformers: the Omost models, their bitsandbytes-quantised
variants, or any chat model; optionally decoding under the Canvas grammar (xgrammar)."""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from omostc.compiler.grammar import Limits, canvas_gbnf
from omostc.diagnostics import LLMError, printable
from omostc.llm.conversation import MAX_TIMEOUT, SamplingOptions
from omostc.spec.model import Message

STOP_GRACE = 5.0  # seconds after a Ctrl-C that a second one waits for the model to stop

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass
class TransformersChatBackend:
    """A causal LM through transformers (the Omost models, their bitsandbytes-quantised variants,
    or any chat model), streamed with ``TextIteratorStreamer``."""

    model_path: str
    device_map: str = "auto"
    dtype: str = "bf16"
    constrain: bool = False  # decode under the Canvas grammar (xgrammar): every answer compiles
    limits: Limits | None = None  # the grammar's bounds (default: derived from --max-tokens)
    timeout: float | None = None  # seconds a generation may take (None: no limit)

    def __post_init__(self):
        self._model: Any | None = None  # the causal LM AutoModelForCausalLM picks, once loaded
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._tokenizer_info: Any = None  # xgrammar's view of the tokenizer, and each token's bytes
        self._token_bytes: list[bytes] = []
        self._plain: Any = None
        self._compiled: dict[Limits, Any] = {}  # compiled grammars, by bounds

    @property
    def model(self) -> str:
        return self.model_path

    def _load(self) -> tuple[Any, PreTrainedTokenizerBase]:
        """The model and its tokenizer, loaded on first use."""
        if self._model is not None and self._tokenizer is not None:
            return self._model, self._tokenizer
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
        return self._model, self._tokenizer

    @property
    def context(self) -> int | None:
        """The model's context in tokens, from its config (``max_position_embeddings``)."""
        try:
            from transformers import AutoConfig

            value = getattr(AutoConfig.from_pretrained(self.model_path), "max_position_embeddings", None)
        except (OSError, ValueError, ImportError):
            return None
        return value if isinstance(value, int) and value > 0 else None

    def count_tokens(self, text: str) -> int:
        _, tokenizer = self._load()
        return len(tokenizer(text, add_special_tokens=False).input_ids)

    def prompt_ids(self, messages: list[Message]):
        _, tokenizer = self._load()
        return tokenizer.apply_chat_template([{"role": m.role, "content": m.content} for m in messages],
                                             return_tensors="pt", add_generation_prompt=True, return_dict=False)

    def _logits_processors(self, prompt_length: int, max_new_tokens: int) -> list:
        """The grammar constraint, closing the program within ``max_new_tokens`` (the grammar is
        compiled once per set of bounds)."""
        if not self.constrain:
            return []
        try:
            import xgrammar as xgr
        except ImportError:
            raise LLMError("constrained decoding needs xgrammar: pip install 'omostc[grammar]'") from None
        from omostc.compiler.budget import completion, local_limits
        from omostc.llm.budget import BudgetedGrammar, plain_tokens

        limits = self.limits or local_limits(max_new_tokens)
        model, tokenizer = self._load()
        if self._tokenizer_info is None:
            self._tokenizer_info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=model.config.vocab_size)
            self._token_bytes = list(self._tokenizer_info.decoded_vocab)
            self._plain = plain_tokens(self._token_bytes)
        if limits not in self._compiled:
            self._compiled[limits] = xgr.GrammarCompiler(self._tokenizer_info).compile_grammar(canvas_gbnf(limits))
        return [BudgetedGrammar(self._compiled[limits], completion(limits), self._token_bytes, self._plain,
                                prompt_length, max_new_tokens)]

    def _generate_kwargs(self, input_ids, sampling: SamplingOptions) -> dict:
        import torch
        from transformers import LogitsProcessorList

        _, tokenizer = self._load()
        processors = self._logits_processors(input_ids.shape[1], sampling.max_tokens)
        kwargs = dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                      max_new_tokens=sampling.max_tokens, do_sample=sampling.temperature > 0,
                      pad_token_id=tokenizer.eos_token_id, logits_processor=LogitsProcessorList(processors))
        if sampling.temperature > 0:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p)
        return kwargs

    def sample_answers(self, messages: list[Message], n: int, sampling: SamplingOptions) -> list[str]:
        """``n`` answers in one batched generation (for best-of-n and for tests)."""
        import torch

        model, tokenizer = self._load()
        input_ids = self.prompt_ids(messages).to(model.device).repeat(n, 1)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        out = model.generate(**self._generate_kwargs(input_ids, sampling))
        # one row decodes to one string (decode's ``str | list[str]`` covers batches)
        return [cast(str, tokenizer.decode(row[input_ids.shape[1]:], skip_special_tokens=True)) for row in out]

    def stream(self, messages: list[Message], sampling: SamplingOptions) -> Iterator[str]:
        """The answer as it is generated. Generation runs in a thread; this one waits on its text,
        so that Ctrl-C, a deadline or a consumer that stops early stop it after its current token,
        and the thread has always ended when this returns or raises: a process that exits while the
        thread is inside torch's or xgrammar's C++ code aborts ("terminate called without an active
        exception"). Ctrl-C ends the stream with KeyboardInterrupt, once the thread has ended."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        model, tokenizer = self._load()
        input_ids = self.prompt_ids(messages).to(model.device)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = threading.Event()
        failed: list[BaseException] = []

        class Stop(StoppingCriteria):
            def __call__(self, *args, **kwargs) -> bool:
                return stop.is_set()

        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        kwargs = self._generate_kwargs(input_ids, sampling)
        kwargs.update(streamer=streamer, stopping_criteria=StoppingCriteriaList([Stop()]))

        def generate() -> None:
            try:
                model.generate(**kwargs)
            except BaseException as exc:  # reported by the stream, as an LLMError
                failed.append(exc)
            finally:
                streamer.text_queue.put(None)  # the end, however it came

        deadline = None if not self.timeout else time.monotonic() + min(self.timeout, MAX_TIMEOUT)
        interrupts = _Interrupts(stop)
        thread = threading.Thread(target=generate, name="omostc-generate", daemon=True)
        with interrupts:
            thread.start()
            try:
                while not interrupts.pressed:
                    try:
                        text = streamer.text_queue.get(timeout=0.1)
                    except queue.Empty:
                        if deadline is not None and time.monotonic() > deadline:
                            raise LLMError(f"no complete answer within {self.timeout:g} s (--timeout)",
                                           file=self.model_path) from None
                        continue
                    if text is None:
                        break
                    if text:
                        yield text
            finally:  # also when the consumer stops early: stop generating, wait for the thread
                stop.set()
                interrupts.wait_for(thread)
        if interrupts.pressed:
            raise KeyboardInterrupt
        if failed:
            problem = str(failed[0]) or type(failed[0]).__name__
            raise LLMError(f"the model failed while generating: {printable(problem)}", file=self.model_path)


class _Interrupts:
    """Within ``with``: Ctrl-C (SIGINT) stops the generation instead of raising wherever the main
    thread happens to be; the stream notices, waits for the generation thread, then raises
    KeyboardInterrupt. A Ctrl-C more than ``STOP_GRACE`` seconds after the first, while the model
    still has not stopped, exits at once (status 130) rather than wait for it."""

    def __init__(self, stop):
        self.stop, self.pressed, self._previous = stop, 0.0, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread() and callable(signal.getsignal(signal.SIGINT)):
            self._previous = signal.signal(signal.SIGINT, self._press)
        return self

    def _press(self, signum, frame) -> None:
        if not self.pressed:
            self.pressed = time.monotonic()
            self.stop.set()
        elif time.monotonic() - self.pressed > STOP_GRACE:
            sys.stderr.write(f"\ninterrupted: the model did not stop within {STOP_GRACE:g} s; exiting\n")
            sys.stderr.flush()
            os._exit(130)

    def wait_for(self, thread) -> None:
        while thread.is_alive():
            try:
                thread.join(0.1)
            except KeyboardInterrupt:  # from a SIGINT handler not ours: keep waiting all the same
                self.pressed = self.pressed or time.monotonic()

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, _Debounce(self.pressed, self._previous) if self.pressed else self._previous)


class _Debounce:
    """The SIGINT handler after a Ctrl-C stopped a generation: presses within ``STOP_GRACE``
    seconds of it are the same request (a person pressing twice) and are ignored, so the answer so
    far is still compiled, written and reported; a later press goes to the handler from before."""

    def __init__(self, first: float, previous):
        self.first, self.previous = first, previous

    def __call__(self, signum, frame) -> None:
        if time.monotonic() - self.first < STOP_GRACE:
            return
        previous = self.previous
        if signal.getsignal(signal.SIGINT) is self:
            signal.signal(signal.SIGINT, previous)
        if callable(previous):
            previous(signum, frame)


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
