"""The llama.cpp weights a process has loaded: ``LoadedWeights``, owned by whoever made it.

The composition root holds one (``Services.weights``) and binds the ``local`` provider to it, so
every LocalModel of a process on the same file, context length and thread count shares one copy
of the weights (hundreds of MiB to GiB). Weights are freed when their owner is collected or at
exit, whichever comes first, while llama.cpp's bindings still exist.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import weakref
from collections.abc import Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shopfloor.errors import ModelInstallError
from shopfloor.models._prefix_disk import PromptCache

if TYPE_CHECKING:
    from llama_cpp import Llama

    from shopfloor.models._choice import ChoicePlan

__all__ = ["Loaded", "LoadedWeights", "TokenCounts"]

logger = logging.getLogger("shopfloor.models")


@dataclass(kw_only=True)
class TokenCounts:
    prompt: int = 0
    #: prompt tokens llama.cpp had to evaluate: the rest were reused from its KV cache (a shared prefix)
    evaluated: int = 0
    sampled: int = 0  # includes the end-of-generation token when there is one


@dataclass(frozen=True, kw_only=True)
class Loaded:
    llama: Llama
    lock: threading.Lock  # one generation at a time per llama.cpp context
    counts: TokenCounts  # of the last generation, read under ``lock``
    # Its own worker: requests queued behind a long generation wait here, not in the
    # event loop's default executor that file and sandbox I/O also need.
    executor: ThreadPoolExecutor


def _counting_llama(counts: TokenCounts, **kwargs: Any) -> Llama:
    import numpy as np
    from llama_cpp import Llama, llama_get_logits_ith, llama_set_n_threads

    from shopfloor.models._choice import ChoiceDecoder, Vocabulary
    from shopfloor.models._prefix import PrefixStates, common_prefix
    from shopfloor.models._sampling import GreedyGrammar, greedy_settings

    class CountingLlama(Llama):
        """Counts prompt, evaluated and sampled tokens, which llama-cpp-python's stream does not
        report, samples greedy grammar-constrained output with ``GreedyGrammar`` (or, for a reply
        of fixed options, decodes only its choices: ``ChoiceDecoder``), and restores a kept state
        (``PrefixStates``) that shares more of a prompt than the context does."""

        _greedy: GreedyGrammar | None = None
        _first_eval = False
        _threads = 0
        _plan: ChoicePlan | None = None
        _vocabulary: Vocabulary | None = None
        prefixes: PrefixStates

        def use_threads(self, n: int) -> None:
            """Run the next generations on ``n`` threads (at most the count the context was made with)."""
            if n != self._threads:
                llama_set_n_threads(self._ctx.ctx, n, n)
                self._threads = n

        def keep_prefix(self, length: int) -> None:
            """Keep the context's state for later prompts: the conversation it holds, once it has its
            first ``length`` tokens (the stable prefix). A kept state it extends (an earlier call of the
            same conversation) is replaced by the longer one, so a task asked again reuses its whole
            decision; only the first state of a prefix goes to disk (later processes need the prefix)."""
            tokens = self._input_ids.tolist()
            if len(tokens) < length:
                return
            extended = self.prefixes.extended(tokens)
            self.prefixes.keep(
                self._ctx.ctx,
                tokens,
                replacing=extended,
                save=extended is None and not self.prefixes.covers(tokens, length),
            )

        def reply_with(self, plan: ChoicePlan | None) -> None:
            """Decode the next generation by ``plan`` where it is greedy (None: as usual)."""
            self._plan = plan

        def generate(
            self, tokens: Sequence[int], *args: Any, **kwargs: Any
        ) -> Generator[int, Sequence[int] | None, None]:
            counts.prompt, counts.evaluated, counts.sampled = len(tokens), 0, 0
            plan, self._plan = self._plan, None
            if plan is not None and not args and greedy_settings(kwargs):
                yield from self._choose(list(tokens), plan)
                return
            self._first_eval = True
            self._restore_best(tokens)
            inner = super().generate(tokens, *args, **kwargs)
            sent: Sequence[int] | None = None
            while True:
                try:
                    token = inner.send(sent)
                except StopIteration:
                    return
                counts.sampled += 1
                sent = yield token

        def _restore_best(self, tokens: Sequence[int]) -> None:
            state = self.prefixes.best(tokens, common_prefix(self._input_ids.tolist(), tokens))
            if state is not None:
                if self.prefixes.restore(self._ctx.ctx, state):
                    self.input_ids[: len(state.tokens)] = state.tokens
                    self.n_tokens = len(state.tokens)
                    self._requires_eval = True
                else:  # refused part-way: the context may hold anything, so evaluate the whole prompt
                    self._ctx.kv_cache_clear()  # type: ignore[no-untyped-call]
                    self.n_tokens = 0

        def _choose(self, prompt: list[int], plan: ChoicePlan) -> Generator[int, Any, None]:
            """The reply ``plan`` allows that greedy decoding picks, with a forward pass only where its
            options differ. Its tokens are yielded once the prompt is evaluated (so the time to the
            first token still measures the prompt), the last choice's forced tail without evaluation."""
            self._first_eval = False  # ``_decode`` counts the prompt tokens it evaluates
            if self._vocabulary is None:
                self._vocabulary = Vocabulary.of(self._model.vocab, self._n_vocab)
            decoder = ChoiceDecoder(
                plan, self._vocabulary, lambda text: self.tokenize(text, add_bos=False, special=False)
            )
            reply: list[int] = []
            sent = 0
            while True:
                reply += decoder.take_forced()
                if decoder.done:
                    break
                logits = self._decode(prompt + reply, first=sent == 0)
                allowed = np.asarray(decoder.allowed(), dtype=np.int64)
                # The likeliest allowed token; ties go to the lower id, as llama.cpp's greedy sampler.
                token = int(allowed[int(np.argmax(logits[allowed]))])
                decoder.accept(token)
                reply.append(token)
                for token in reply[sent:]:
                    counts.sampled += 1
                    yield token
                sent = len(reply)
            for token in [*reply[sent:], self.token_eos()]:
                counts.sampled += 1
                yield token

        def _decode(self, tokens: list[int], *, first: bool) -> Any:
            """Evaluate what of ``tokens`` the context lacks; the logits after the last of them."""
            if first:
                self._restore_best(tokens)
            shared = common_prefix(self._input_ids.tolist(), tokens)
            # The last token is evaluated again when the context holds all of them: its logits may be stale.
            reuse = min(shared, len(tokens) - 1)
            if reuse > 0 and not self._ctx.kv_cache_seq_rm(-1, reuse, -1):
                reuse = 0
            if reuse == 0:
                self.reset()  # type: ignore[no-untyped-call]
            self.n_tokens = reuse
            if first:
                counts.evaluated = max(counts.prompt - reuse, 0)
            self.eval(tokens[reuse:])
            return np.ctypeslib.as_array(llama_get_logits_ith(self._ctx.ctx, -1), shape=(self._n_vocab,))

        def eval(self, tokens: Sequence[int]) -> None:
            # The first eval of a generation is the prompt's suffix after the reused prefix.
            if self._first_eval:
                counts.evaluated, self._first_eval = len(tokens), False
            super().eval(tokens)

        def _init_sampler(self, *args: Any, **kwargs: Any) -> Any:
            if self._greedy is not None:
                self._greedy.close()
                self._greedy = None
            grammar = kwargs.get("grammar")
            if grammar is not None and not args and greedy_settings(kwargs):
                self._greedy = GreedyGrammar(self._model.vocab, grammar)
                kwargs = {**kwargs, "grammar": None}
            return super()._init_sampler(*args, **kwargs)

        def sample(self, *args: Any, **kwargs: Any) -> int:
            greedy = self._greedy
            if greedy is None or self._sampler is None or args:
                return int(super().sample(*args, **kwargs))
            idx = kwargs.get("idx")
            ridx = idx - self.n_tokens if idx is not None else -1
            logits = np.ctypeslib.as_array(llama_get_logits_ith(self._ctx.ctx, ridx), shape=(self._n_vocab,))
            token = greedy.pick(logits)
            greedy.accept(token)
            return token

    llama = CountingLlama(**kwargs)
    llama.prefixes = PrefixStates()
    return llama


def _free(entries: dict[tuple[str, int, int, bool], Loaded], lock: threading.Lock) -> None:
    with lock:
        loaded = list(entries.values())
        entries.clear()
    for entry in loaded:
        try:
            entry.executor.shutdown(wait=True)
        except RuntimeError:
            # Collected on this model's own worker thread, which cannot wait for itself: the worker ends
            # when this callback returns, and the weights go with the Llama object.
            continue
        entry.llama.close()


class LoadedWeights:
    """Weights by (file, context length, threads, embedding), each loaded once at first use. An
    embedding context (mean-pooled, llama.cpp's ``embedding=True``) is a second copy of the weights,
    loaded only when something asks a model for embeddings."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, int, int, bool], Loaded] = {}
        # Freed when this object is collected, or at exit before ``_close_null_files`` (registered
        # at import, so it runs after): the callbacks hold the entries, never this object.
        self._finalizer = weakref.finalize(self, _free, self._entries, self._lock)
        self._finalizer.atexit = False
        atexit.register(_free, self._entries, self._lock)

    def load(
        self,
        path: Path,
        n_ctx: int,
        threads: int,
        *,
        embedding: bool = False,
        prompt_cache: PromptCache | None = None,
    ) -> Loaded:
        """The weights loaded for these settings; a chat context loaded here saves and reads its prompt
        states in ``prompt_cache`` (that of the first caller to load it)."""
        key = (str(path.resolve()), n_ctx, threads, embedding)
        with self._lock:
            if key not in self._entries:
                counts = TokenCounts()
                options: dict[str, Any] = {}
                if embedding:
                    from llama_cpp import LLAMA_POOLING_TYPE_MEAN

                    options = {"embedding": True, "pooling_type": LLAMA_POOLING_TYPE_MEAN}
                try:
                    llama = _counting_llama(
                        counts,
                        model_path=str(path),
                        n_ctx=n_ctx,
                        n_threads=threads,
                        n_threads_batch=threads,
                        verbose=False,
                        **options,
                    )
                except (ValueError, RuntimeError) as exc:
                    raise ModelInstallError(
                        f"llama.cpp could not load {path}: {exc}; reinstall it with "
                        f"`shopfloor models install {path.stem} --force`"
                    ) from exc
                if prompt_cache is not None and not embedding:
                    try:
                        llama.prefixes.disk = prompt_cache.open(llama, path)  # type: ignore[attr-defined]
                    except OSError as exc:
                        logger.warning("prompt states of %s stay in memory: %s", path, exc)
                self._entries[key] = Loaded(
                    llama=llama,
                    lock=threading.Lock(),
                    counts=counts,
                    executor=ThreadPoolExecutor(1, thread_name_prefix=f"llama-{path.stem}"),
                )
            return self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)

    def close(self) -> None:
        """Free every loaded model (its generations must have ended)."""
        self._finalizer()


def _close_null_files() -> None:
    """Close the two /dev/null files llama-cpp-python opens at import and never closes (a
    ResourceWarning at exit). Registered before any ``LoadedWeights`` frees its models at exit, so
    it runs after them (atexit is last in, first out): no model needs those files any more."""
    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        handle = getattr(utils, name, None)
        if handle is not None:
            handle.close()


atexit.register(_close_null_files)
