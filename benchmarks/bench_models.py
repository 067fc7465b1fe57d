"""Throughput of the embedded provider against llama.cpp called directly.

Measured: ``LocalModel.request`` (worker thread, asyncio queue, token counting)
on the catalogue model. Baseline, in the same run: a plain ``llama_cpp.Llama`` on
the same GGUF, ``create_chat_completion`` with the same messages, ``max_tokens``
and temperature 0. Both report output tokens per wall-clock second of the whole
call; the order rotates each repetition so machine load hits all alike. A third
line, the same direct call with ``stream=True``, shows what llama-cpp-python's own
streaming costs apart from ours. Target: LocalModel / direct >= 0.95 (median of
per-repetition ratios).

Run: ``.venv/bin/python -m benchmarks.bench_models [--model NAME] [--reps N] [--max-tokens N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from llama_cpp import Llama

from shopfloor.config import load_settings
from shopfloor.models import LocalModel, Message, ModelRequest, allow_model_requests, install_model

PROMPT = (
    "Write a Python function that parses an ISO 8601 date string and returns a datetime. Explain it briefly."
)


def direct_rate(llama: Llama, max_tokens: int) -> float:
    start = time.perf_counter()
    result: Any = llama.create_chat_completion(
        messages=[{"role": "user", "content": PROMPT}], max_tokens=max_tokens, temperature=0
    )
    return int(result["usage"]["completion_tokens"]) / (time.perf_counter() - start)


def direct_stream_rate(llama: Llama, max_tokens: int) -> float:
    """llama-cpp-python's own streaming, consumed in the calling thread: what streaming costs by itself."""
    start = time.perf_counter()
    chunks: Any = llama.create_chat_completion(
        messages=[{"role": "user", "content": PROMPT}], max_tokens=max_tokens, temperature=0, stream=True
    )
    pieces = sum(1 for c in chunks if c["choices"][0]["delta"].get("content"))
    return pieces / (time.perf_counter() - start)


async def provider_rate(model: LocalModel, max_tokens: int, ttfts: list[float]) -> float:
    request = ModelRequest(messages=(Message(role="user", content=PROMPT),), max_tokens=max_tokens)
    start = time.perf_counter()
    response = await model.request(request)
    elapsed = time.perf_counter() - start
    ttfts.append(response.usage.time_to_first_token or 0.0)
    return response.usage.output_tokens / elapsed


async def _now(value: float) -> float:
    """The direct calls run synchronously, in the calling thread, as a plain script would run them."""
    return value


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()

    settings = load_settings()
    path = install_model(args.model, settings).path
    threads = settings.models.threads or os.cpu_count() or 1
    allow_model_requests(True)
    model = LocalModel(args.model, path=path, context_length=settings.models.context_length, threads=threads)
    baseline = Llama(
        model_path=str(path),
        n_ctx=settings.models.context_length,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    ttfts: list[float] = []
    runs: dict[str, Callable[[], Awaitable[float]]] = {
        "LocalModel.request": lambda: provider_rate(model, args.max_tokens, ttfts),
        "create_chat_completion": lambda: _now(direct_rate(baseline, args.max_tokens)),
        "  same, stream=True": lambda: _now(direct_stream_rate(baseline, args.max_tokens)),
    }
    for run in runs.values():  # warm-up: weights paged in, each context's prompt cache filled alike
        await run()
    ttfts.clear()
    rates: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for rep in range(args.reps):
        # Rotate who goes first, so drift in machine load does not favour anyone.
        for name in names[rep % 3 :] + names[: rep % 3]:
            rates[name].append(await runs[name]())
        print(f"  rep {rep + 1}: " + "   ".join(f"{n.strip()} {rates[n][-1]:5.1f}" for n in names) + " tok/s")

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"model {args.model}, {args.max_tokens} max tokens, {args.reps} reps, {threads} threads, load {load}"
    )
    base = rates["create_chat_completion"]
    for name in names:
        # Runs of one rep share the machine's load: the median of per-rep ratios is the steadier number.
        ratio = statistics.median(r / b for r, b in zip(rates[name], base, strict=True))
        median = statistics.median(rates[name])
        print(f"  {name:24}: {median:6.1f} tokens/s median, ratio to baseline {ratio:.3f}")
    ratio = statistics.median(r / b for r, b in zip(rates[names[0]], base, strict=True))
    print(f"  first token (LocalModel)  : {statistics.median(ttfts) * 1000:.0f} ms median")
    print(f"  target ratio >= 0.95      : {'met' if ratio >= 0.95 else 'NOT met'} ({ratio:.3f})")


if __name__ == "__main__":
    asyncio.run(main())
