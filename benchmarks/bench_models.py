"""Throughput of the embedded provider against llama.cpp called directly.

Measured: ``LocalModel.request`` (worker thread, asyncio queue, token counting)
on the catalogue model. Baseline, in the same run: a plain ``llama_cpp.Llama`` on
the same GGUF, ``create_chat_completion`` with the same messages, ``max_tokens``
and temperature 0. Both report output tokens per wall-clock second of the whole
call; repetitions alternate between the two so machine load hits both alike.
Target: ratio >= 0.95.

Run: ``.venv/bin/python -m benchmarks.bench_models [--model NAME] [--reps N] [--max-tokens N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from llama_cpp import Llama

from shopfloor.config import load_settings
from shopfloor.models import LocalModel, Message, ModelRequest, allow_model_requests, install_model

PROMPT = (
    "Write a Python function that parses an ISO 8601 date string and returns a datetime. Explain it briefly."
)


def direct_rate(llama: Llama, max_tokens: int) -> tuple[float, int]:
    start = time.perf_counter()
    result = llama.create_chat_completion(
        messages=[{"role": "user", "content": PROMPT}], max_tokens=max_tokens, temperature=0
    )
    elapsed = time.perf_counter() - start
    tokens = int(result["usage"]["completion_tokens"])  # type: ignore[index]
    return tokens / elapsed, tokens


async def provider_rate(model: LocalModel, max_tokens: int) -> tuple[float, int, float]:
    request = ModelRequest(messages=(Message(role="user", content=PROMPT),), max_tokens=max_tokens)
    start = time.perf_counter()
    response = await model.request(request)
    elapsed = time.perf_counter() - start
    return (
        response.usage.output_tokens / elapsed,
        response.usage.output_tokens,
        response.usage.time_to_first_token or 0,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
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
    # Warm-up: load weights, fill each context's prompt cache the same way.
    direct_rate(baseline, 8)
    await provider_rate(model, 8)

    ours: list[float] = []
    theirs: list[float] = []
    ttfts: list[float] = []
    for rep in range(args.reps):
        first_direct = rep % 2 == 0
        if first_direct:
            theirs.append(direct_rate(baseline, args.max_tokens)[0])
        rate, tokens, ttft = await provider_rate(model, args.max_tokens)
        ours.append(rate)
        ttfts.append(ttft)
        if not first_direct:
            theirs.append(direct_rate(baseline, args.max_tokens)[0])
        print(
            f"  rep {rep + 1}: provider {rate:6.1f} tok/s ({tokens} tokens)   direct {theirs[-1]:6.1f} tok/s"
        )

    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    ratio = ours_median / theirs_median
    verdict = "met" if ratio >= 0.95 else "NOT met"
    ttft_ms = statistics.median(ttfts) * 1000
    print(f"model {args.model}, {args.max_tokens} max tokens, {args.reps} reps, {threads} threads (medians)")
    print(f"  LocalModel.request            : {ours_median:6.1f} tokens/s  (first token {ttft_ms:.0f} ms)")
    print(f"  Llama.create_chat_completion  : {theirs_median:6.1f} tokens/s  (baseline)")
    print(f"  ratio provider / direct       : {ratio:.3f}  (target >= 0.95: {verdict})")


if __name__ == "__main__":
    asyncio.run(main())
