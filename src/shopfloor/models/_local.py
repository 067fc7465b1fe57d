"""``local:<name>``: an embedded GGUF model run in process by llama.cpp (``llama-cpp-python``).

``<name>`` is a catalogue name (installed with ``shopfloor models install``) or a
path to a ``.gguf`` file. Weights are loaded at first use into the ``LoadedWeights`` the model
was given (the composition root holds one per process, shared by every LocalModel on the same
file; a model made without one has its own); one generation runs at a time on each, because a
llama.cpp context is not thread-safe. Generation is blocking C code, so it runs in
a worker thread that hands chunks to the event loop through an asyncio queue.

``llama_cpp`` is imported only when a model is loaded, so the rest of Shopfloor
works without it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import threading
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from shopfloor.config import Settings
from shopfloor.errors import ModelInstallError, ModelRequestError, UnknownModelError
from shopfloor.models._base import (
    Embeddings,
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    TextDelta,
    TextRequest,
    UsageMeter,
    check_model_requests_allowed,
)
from shopfloor.models._catalogue import DEFAULT_CATALOGUE
from shopfloor.models._choice import ChoicePlan, choice_plan
from shopfloor.models._install import model_path
from shopfloor.models._prefix_disk import PromptCache
from shopfloor.models._threads import threads_for
from shopfloor.models._weights import Loaded, LoadedWeights

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_grammar import LlamaGrammar

__all__ = ["LocalModel", "make_local_model"]


_DONE = object()


@functools.lru_cache(maxsize=64)
def _grammar(schema_json: str) -> LlamaGrammar:
    # Agents send the same tool-choice schema every turn; compiling it once is enough.
    from llama_cpp.llama_grammar import LlamaGrammar

    try:
        return LlamaGrammar.from_json_schema(schema_json, verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise ModelRequestError(f"llama.cpp cannot turn the JSON schema into a grammar: {exc}") from exc


class LocalModel(Model):
    provider = "local"

    def __init__(
        self,
        name: str,
        *,
        path: Path,
        context_length: int = 4096,
        threads: int | None = None,
        weights: LoadedWeights | None = None,
        prompt_cache: PromptCache | None = None,
    ) -> None:
        super().__init__(name, context_length=context_length)
        self.path = path
        #: where processed prompt prefixes are saved for later processes (None: kept in memory only)
        self.prompt_cache = prompt_cache
        self.threads = threads or os.cpu_count() or 1
        #: unset, each generation takes the cores idle when it starts (``threads_for``), up to all of them
        self.adaptive_threads = threads is None
        self.weights = weights if weights is not None else LoadedWeights()

    def _loaded(self, *, embedding: bool = False) -> Loaded:
        return self.weights.load(
            self.path, self.context_length, self.threads, embedding=embedding, prompt_cache=self.prompt_cache
        )

    async def aload(self) -> None:
        """Load the weights in a worker thread (once per ``weights``), so ``count_tokens`` will not block."""
        await asyncio.to_thread(self._loaded)

    @property
    def llama(self) -> Llama:
        """The loaded ``llama_cpp.Llama`` (loads it on first use; blocking)."""
        return self._loaded().llama

    def count_tokens(self, text: str) -> int:
        # Before ``aload`` or a first request, this loads the weights here (about 0.5 s for the 0.5B).
        return len(self.llama.tokenize(text.encode(), add_bos=False, special=True))

    def completion_kwargs(self, request: ModelRequest) -> dict[str, Any]:
        """Arguments for ``Llama.create_chat_completion`` that this request maps to."""
        if request.tools:
            raise ModelRequestError(
                f"model {self.ref} has no native tool calling; pass the tool choice as json_schema instead"
            )
        kwargs: dict[str, Any] = {
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.json_schema is not None:
            # Key order matters: the grammar emits properties in schema order (the tool before its args).
            kwargs["grammar"] = _grammar(json.dumps(request.json_schema))
        return kwargs

    async def stream(self, request: ModelRequest) -> AsyncIterator[TextDelta | ModelResponse]:
        kwargs = self.completion_kwargs(request)
        async for event in self._run(
            lambda llama: llama.create_chat_completion(stream=True, **kwargs),
            lambda choice: choice["delta"].get("content"),
            tuple(request.messages[: request.cache_prefix]),
            # A reply of fixed options is decoded at its choices only (``_choice.py``).
            choice_plan(request.json_schema) if request.json_schema is not None else None,
        ):
            yield event

    async def stream_text(self, request: TextRequest) -> AsyncIterator[TextDelta | ModelResponse]:
        """Continue the prompt as it is (``Llama.create_completion``: no chat template)."""
        kwargs: dict[str, Any] = {
            "prompt": request.prompt,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stop": list(request.stop) or None,
        }
        async for event in self._run(
            lambda llama: llama.create_completion(stream=True, **kwargs),
            lambda choice: choice.get("text"),
        ):
            yield event

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        """Mean-pooled embeddings from a second, embedding context on the same file (loaded at the
        first call), one call at a time on it."""
        check_model_requests_allowed(self.ref)
        loaded = await asyncio.to_thread(self._loaded, embedding=True)

        def run() -> dict[str, Any]:
            with loaded.lock:
                try:
                    return cast("dict[str, Any]", loaded.llama.create_embedding(list(texts)))
                except ValueError as exc:  # an input longer than the context
                    raise ModelRequestError(f"model {self.ref}: {exc}") from exc

        answer = await asyncio.get_running_loop().run_in_executor(loaded.executor, run)
        return Embeddings(
            vectors=tuple(tuple(item["embedding"]) for item in answer["data"]),
            input_tokens=int(answer["usage"]["prompt_tokens"]),
        )

    async def _run(
        self,
        start: Callable[[Llama], Any],
        text_of: Callable[[dict[str, Any]], str | None],
        keep: tuple[Message, ...] = (),
        plan: ChoicePlan | None = None,
    ) -> AsyncIterator[TextDelta | ModelResponse]:
        """One generation on the loaded context; ``keep``: the leading messages whose prompt state is
        saved for the next request that starts with them (``ModelRequest.cache_prefix``); ``plan``:
        the reply's fixed options, where the request allows only those."""
        check_model_requests_allowed(self.ref)
        meter = UsageMeter()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def emit(item: object) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody is listening any more
                stop.set()

        loaded = await asyncio.to_thread(self._loaded)  # loads the weights the first time
        worker = loop.run_in_executor(loaded.executor, self._generate, loaded, start, keep, plan, emit, stop)
        # Scheduled after every chunk the worker emitted, so it arrives last.
        worker.add_done_callback(lambda _: queue.put_nowait(_DONE))
        parts: list[str] = []
        finish_reason = "stop"
        try:
            while (chunk := await queue.get()) is not _DONE:
                choice = chunk["choices"][0]
                text = text_of(choice)
                if text:
                    meter.first_token()
                    parts.append(text)
                    yield TextDelta(text=text)
                finish_reason = choice.get("finish_reason") or finish_reason
            prompt_tokens, evaluated, sampled = await worker
        finally:
            stop.set()  # the caller stopped early or was cancelled: let the worker quit
        # A stop at end-of-generation samples one more (end) token than it returns.
        output_tokens = sampled - 1 if finish_reason == "stop" and sampled else sampled
        yield ModelResponse(
            text="".join(parts),
            model=self.name,
            provider=self.provider,
            finish_reason=finish_reason,
            usage=meter.usage(
                prompt_tokens, output_tokens, cached_input_tokens=max(prompt_tokens - evaluated, 0)
            ),
        )

    def _generate(
        self,
        loaded: Loaded,
        start: Callable[[Llama], Any],
        keep: tuple[Message, ...],
        plan: ChoicePlan | None,
        emit: Callable[[object], None],
        stop: threading.Event,
    ) -> tuple[int, int, int]:
        """Runs the generation; returns the prompt tokens, those evaluated (not reused), those sampled."""
        with loaded.lock:
            if stop.is_set():  # cancelled while queued
                return 0, 0, 0
            if self.adaptive_threads:
                loaded.llama.use_threads(threads_for(self.threads))  # type: ignore[attr-defined]
            # The plan is for this generation only: the next one is told again (None: as usual).
            loaded.llama.reply_with(plan)  # type: ignore[attr-defined]
            chunks = cast("Generator[dict[str, Any], None, None]", start(loaded.llama))
            try:
                for chunk in chunks:
                    if stop.is_set():
                        break
                    emit(chunk)
            except ValueError as exc:  # llama.cpp reports an over-long prompt this way
                raise ModelRequestError(f"model {self.ref}: {exc}") from exc
            finally:
                # Closing ends generation now, while we still hold the lock on this context.
                chunks.close()
                loaded.llama.reply_with(None)  # type: ignore[attr-defined]
            if keep and not stop.is_set():
                llama = loaded.llama
                # The messages' text, a little less than the prompt's tokens for them (no template).
                length = sum(len(llama.tokenize(m.content.encode(), add_bos=False)) for m in keep)
                llama.keep_prefix(length)  # type: ignore[attr-defined]
            return loaded.counts.prompt, loaded.counts.evaluated, loaded.counts.sampled


def make_local_model(name: str, settings: Settings, *, weights: LoadedWeights | None = None) -> Model:
    if not name:
        raise UnknownModelError(
            "'local:' needs a catalogue name or a .gguf path, e.g. 'local:qwen2.5-coder-0.5b'"
        )
    pin: str | None = None  # a file given by path is hashed once, at its first load
    if name.endswith(".gguf"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ModelInstallError(f"no GGUF file at {path}")
    else:
        path = model_path(name, settings)
        pin = DEFAULT_CATALOGUE.get_entry(name).sha256
    cache = None
    if settings.models.prompt_cache_mb > 0:
        cache = PromptCache(
            directory=settings.prompt_cache_dir,
            limit_bytes=settings.models.prompt_cache_mb << 20,
            weights_sha256=pin,
        )
    return LocalModel(
        name,
        path=path,
        context_length=settings.models.context_length,
        threads=settings.models.threads,
        weights=weights,
        prompt_cache=cache,
    )
