"""``local:<name>``: an embedded GGUF model run in process by llama.cpp (``llama-cpp-python``).

``<name>`` is a catalogue name (installed with ``shopfloor models install``) or a
path to a ``.gguf`` file. Weights are loaded once per process and shared by every
LocalModel on the same file; one generation runs at a time on each, because a
llama.cpp context is not thread-safe. Generation is blocking C code, so it runs in
a worker thread that hands chunks to the event loop through an asyncio queue.

``llama_cpp`` is imported only when a model is loaded, so the rest of Shopfloor
works without it.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import json
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from shopfloor.config import Settings
from shopfloor.errors import ModelInstallError, ModelRequestError, UnknownModelError
from shopfloor.models._base import (
    Model,
    ModelRequest,
    ModelResponse,
    TextDelta,
    UsageMeter,
    check_model_requests_allowed,
)
from shopfloor.models._install import model_path

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_grammar import LlamaGrammar

__all__ = ["LocalModel", "make_local_model"]


@dataclass(kw_only=True)
class _TokenCounts:
    prompt: int = 0
    sampled: int = 0  # includes the end-of-generation token when there is one


@dataclass(frozen=True, kw_only=True)
class _Loaded:
    llama: Llama
    lock: threading.Lock  # one generation at a time per llama.cpp context
    counts: _TokenCounts  # of the last generation, read under ``lock``
    # Its own worker: requests queued behind a long generation wait here, not in the
    # event loop's default executor that file and sandbox I/O also need.
    executor: ThreadPoolExecutor


_CACHE: dict[tuple[str, int, int], _Loaded] = {}
_CACHE_LOCK = threading.Lock()
_DONE = object()


def _counting_llama(counts: _TokenCounts, **kwargs: Any) -> Llama:
    from llama_cpp import Llama

    class CountingLlama(Llama):
        """Counts prompt and sampled tokens, which llama-cpp-python's stream does not report."""

        def generate(
            self, tokens: Sequence[int], *args: Any, **kwargs: Any
        ) -> Generator[int, Sequence[int] | None, None]:
            counts.prompt, counts.sampled = len(tokens), 0
            inner = super().generate(tokens, *args, **kwargs)
            sent: Sequence[int] | None = None
            while True:
                try:
                    token = inner.send(sent)
                except StopIteration:
                    return
                counts.sampled += 1
                sent = yield token

    return CountingLlama(**kwargs)


def _close_all() -> None:
    """Free the loaded models while llama.cpp's bindings still exist (left to the interpreter's
    teardown, each model's ``__del__`` finds them gone and prints a traceback), then close the two
    /dev/null files llama-cpp-python opens at import and never closes (a ResourceWarning at exit).
    Every model this process made is in the cache, so nothing needs those files afterwards."""
    with _CACHE_LOCK:
        loaded = list(_CACHE.values())
        _CACHE.clear()
    for entry in loaded:
        entry.executor.shutdown(wait=True)
        entry.llama.close()
    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        handle = getattr(utils, name, None)
        if handle is not None:
            handle.close()


atexit.register(_close_all)


def _load(path: Path, n_ctx: int, threads: int) -> _Loaded:
    key = (str(path.resolve()), n_ctx, threads)
    with _CACHE_LOCK:
        if key not in _CACHE:
            counts = _TokenCounts()
            try:
                llama = _counting_llama(
                    counts,
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=threads,
                    n_threads_batch=threads,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                raise ModelInstallError(
                    f"llama.cpp could not load {path}: {exc}; reinstall it with "
                    f"`shopfloor models install {path.stem} --force`"
                ) from exc
            _CACHE[key] = _Loaded(
                llama=llama,
                lock=threading.Lock(),
                counts=counts,
                executor=ThreadPoolExecutor(1, thread_name_prefix=f"llama-{path.stem}"),
            )
        return _CACHE[key]


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
        self, name: str, *, path: Path, context_length: int = 4096, threads: int | None = None
    ) -> None:
        super().__init__(name, context_length=context_length)
        self.path = path
        self.threads = threads or os.cpu_count() or 1

    def _loaded(self) -> _Loaded:
        return _load(self.path, self.context_length, self.threads)

    async def aload(self) -> None:
        """Load the weights in a worker thread (once per process), so ``count_tokens`` will not block."""
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
        check_model_requests_allowed(self.ref)
        kwargs = self.completion_kwargs(request)
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
        worker = loop.run_in_executor(loaded.executor, self._generate, loaded, kwargs, emit, stop)
        # Scheduled after every chunk the worker emitted, so it arrives last.
        worker.add_done_callback(lambda _: queue.put_nowait(_DONE))
        parts: list[str] = []
        finish_reason = "stop"
        try:
            while (chunk := await queue.get()) is not _DONE:
                choice = chunk["choices"][0]
                text = choice["delta"].get("content")
                if text:
                    meter.first_token()
                    parts.append(text)
                    yield TextDelta(text=text)
                finish_reason = choice.get("finish_reason") or finish_reason
            prompt_tokens, sampled = await worker
        finally:
            stop.set()  # the caller stopped early or was cancelled: let the worker quit
        # A stop at end-of-generation samples one more (end) token than it returns.
        output_tokens = sampled - 1 if finish_reason == "stop" and sampled else sampled
        yield ModelResponse(
            text="".join(parts),
            model=self.name,
            provider=self.provider,
            finish_reason=finish_reason,
            usage=meter.usage(prompt_tokens, output_tokens),
        )

    def _generate(
        self, loaded: _Loaded, kwargs: dict[str, Any], emit: Callable[[object], None], stop: threading.Event
    ) -> tuple[int, int]:
        with loaded.lock:
            if stop.is_set():  # cancelled while queued
                return 0, 0
            chunks = cast(
                "Generator[dict[str, Any], None, None]",
                loaded.llama.create_chat_completion(stream=True, **kwargs),
            )
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
            return loaded.counts.prompt, loaded.counts.sampled


def make_local_model(name: str, settings: Settings) -> Model:
    if not name:
        raise UnknownModelError(
            "'local:' needs a catalogue name or a .gguf path, e.g. 'local:qwen2.5-coder-0.5b'"
        )
    if name.endswith(".gguf"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ModelInstallError(f"no GGUF file at {path}")
    else:
        path = model_path(name, settings)
    return LocalModel(
        name, path=path, context_length=settings.models.context_length, threads=settings.models.threads
    )
