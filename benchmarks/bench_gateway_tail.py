"""The tail of the gateway's added latency at c=1: the p99 of issue 15 (<= +1.5 ms over direct), with a
confidence interval, and where a slow request's time went.

    .venv/bin/python -m benchmarks.bench_gateway_tail [--pairs 100000] [--warmup 5000] [--resamples 400]

Set-up as ``bench_gateway`` (its fake upstream and its governed gateway: the key store's
authenticator, the authoriser, budgets, audit, metering to SQLite), each in its own uvicorn process.
The client is one Python thread with two kept-alive loopback sockets and its own garbage collector
off: each pair is one request straight to the upstream and one through the gateway, in alternating
order (ABBA), so both see the same machine at the same moment. Reported:

- wall time at the client, direct and through the gateway: p50, p90, p99, p99.9; the added latency
  ``quantile(gateway) - quantile(direct)`` (what the target means), and the quantiles of the per-pair
  difference, each with a 95 % bootstrap interval (pairs resampled);
- CPU time beside wall: the gateway process's and the upstream's CPU per request (``/proc``, over the
  whole sample), and, inside the gateway, each request's wall time and its event-loop thread's CPU
  time (``time.thread_time``), p50 / p99 / p99.9: a tail in CPU is our code's, a tail in wall with
  flat CPU is the machine's (the process waited for a core);
- the gateway's garbage collections during the sample (``gc.callbacks``): count and longest pause per
  generation.

Variants (``--variants``, default ``served,bare-proxy``), each its own gateway process, measured in the
same rounds: ``served``; ``bare-proxy``, the floor any Python hop on uvicorn has (the baseline of our
code's share); and one change each to ``served`` that could make a tail (see ``VARIANTS``).

Results, 2026-12-01, the 2-core VM alone (load average 0.45 -> 0.78), 30,000 rounds of
``served,bare-proxy``: direct p50 0.076 / p99 0.157 ms; served added p50 +0.197 ms [+0.197, +0.198]
and added p99 **+0.337 ms** [+0.331, +0.346] (targets 0.5 and 1.5: met); bare proxy +0.105 / +0.172 ms.
CPU per request 0.221 ms (bare 0.125); loop CPU inside p50 / p99 0.165 / 0.297 ms.

Results, 2026-12-01, 2-core VM shared with other sessions (so the tails are mostly the machine's):
- 100,000 rounds of ``served,bare-proxy`` (load average 13.3 -> 12.6): direct p50 0.056 / p99 2.97 ms;
  served p50 0.267 / p99 6.94 ms: added p50 +0.210 ms [+0.210, +0.211], added p99 +3.97 ms
  [+3.81, +4.12]; bare proxy added p50 +0.124 ms, p99 +2.20 ms [+2.02, +2.35]. CPU per request
  (``/proc``): gateway 0.239 ms, bare proxy 0.130 ms; inside, the loop's CPU per request p50 / p99 /
  p99.9 0.152 / 0.508 / 0.752 ms (bare 0.068 / 0.178 / 0.296) while its wall p99 was 5.86 ms (bare
  4.91): the slow requests were not slow in our code, they waited for a core or for the upstream.
  Collector: 80 young collections (longest 0.34 ms) and 8 of generation 1 (longest 11.2 ms, total
  13.5 ms) in 133 s: at most 8 requests of 100,000, not the p99.
- 30,000 rounds of all five variants (load average 13.9 -> 19.4), added p99 with its interval: served
  +5.31 [+4.81, +5.95] ms, bare proxy +3.74 [+3.37, +4.05], no metering +6.22 [+5.70, +6.97], gc
  frozen +6.25 [+5.74, +6.77], switch interval 0.5 ms +5.88 [+5.52, +6.55]: none of the three changes
  is better than ``served`` (so the metering flush thread, the collector and the GIL hand-over are not
  the tail), and added p50 stayed +0.26-0.30 ms in all four.
- In process (the ASGI app called directly, 10,000 requests, upstream in its own process): CPU per
  request bare proxy 33-39 us, gateway without governance 74-90 us, governed without metering
  101-111 us, governed with metering 122-135 us; authenticating a cached key 4.0 us and authorising
  ``routes:call`` 2.1 us of it. No logging on the request path (access log off).

What this says about the target (+1.5 ms p99 at c=1): on this machine even the bare Python hop adds
+2.2 to +3.7 ms at p99, so the target cannot be shown here; the gateway's own share of the tail is
its CPU per request (about twice the bare hop's: the longer a request runs on a crowded core, the
likelier it is preempted), not a pause of its own. ``wrk``'s p99 at c=1 (``bench_gateway``) is not
an instrument for it: in the run of 2026-12-01 it put the gateway's p99 0.96 ms *below* direct.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_gateway import (
    CHAT,
    KEY,
    _free_port,
    _process,
    _uvicorn,
    governed_key,
    make_governed_gateway,
)

QUANTILES = (50.0, 90.0, 99.0, 99.9)

# ---------------------------------------------------------------- the probe, inside the gateway process


class Probe:
    """An ASGI wrapper timing each request (wall and this thread's CPU) and the collector's pauses;
    written to ``path`` as JSON when the server shuts down (and cleared by ``POST /probe/reset``)."""

    def __init__(self, app: Any, path: Path, *, freeze: bool = False) -> None:
        self.app, self.path, self.freeze = app, path, freeze
        self.wall: list[int] = []
        self.cpu: list[int] = []
        self.pauses: list[tuple[int, int]] = []  # (generation, ns)
        self._gc_start = 0
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter_ns()
        else:
            self.pauses.append((info["generation"], time.perf_counter_ns() - self._gc_start))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/probe/reset":
            self.wall.clear(), self.cpu.clear(), self.pauses.clear()
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._on_lifespan(send))
            return
        wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
        try:
            await self.app(scope, receive, send)
        finally:
            self.cpu.append(time.thread_time_ns() - cpu)
            self.wall.append(time.perf_counter_ns() - wall)

    def _on_lifespan(self, send: Any) -> Any:
        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.startup.complete" and self.freeze:
                gc.collect()
                gc.freeze()
            if message["type"] == "lifespan.shutdown.complete":
                data = {"wall": self.wall, "cpu": self.cpu, "pauses": self.pauses}
                self.path.write_text(json.dumps(data))
            await send(message)

        return wrapped


#: the gateways measured side by side (``--variants``): as served, and one change each, to find what the
#: tail is made of
VARIANTS = {
    "served": "the governed gateway as `shopfloor serve` builds it",
    "no-meter": "the same without metering (no batch flushed in a worker thread each second)",
    "gc-frozen": "the same with the start-up heap frozen (gc.freeze: the collector never scans it again)",
    "bare-proxy": "the floor of a Python hop: a raw-ASGI proxy on the gateway's own HTTP client (uvicorn, "
    "uvloop, httptools), passing the body on: no authentication, routing, limits, metering or telemetry",
    "switch-0.5ms": "the same with a GIL switch interval of 0.5 ms (default 5 ms): a thread holding the GIL "
    "(the metering flush) yields to the event loop sooner",
}


class BareProxy:
    """The least a Python proxy hop does: read the body, post it upstream on a kept-alive connection,
    answer with what came back."""

    def __init__(self, url: str) -> None:
        from shopfloor.gateway.inference import HttpPool

        self.url, self.pool = url, HttpPool()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await self.pool.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        response = await self.pool.post(self.url, body, b"Content-Type: application/json\r\n")
        answer = await response.read(1 << 20)
        response.close()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": answer})


def make_probed_gateway() -> Any:
    """``bench_gateway``'s governed gateway, changed as ``BENCH_VARIANT`` says, inside a ``Probe``
    (``BENCH_PROBE`` names its output)."""
    variant = os.environ["BENCH_VARIANT"]
    if variant == "bare-proxy":
        return Probe(
            BareProxy(os.environ["BENCH_UPSTREAM"] + "/chat/completions"), Path(os.environ["BENCH_PROBE"])
        )
    app = make_governed_gateway(meter=variant != "no-meter")
    if variant == "switch-0.5ms":
        sys.setswitchinterval(0.0005)
    return Probe(app, Path(os.environ["BENCH_PROBE"]), freeze=variant == "gc-frozen")


# ---------------------------------------------------------------- the client


class Connection:
    """One kept-alive HTTP/1.1 connection sending a prebuilt request; ``call`` returns its wall ns."""

    def __init__(self, port: int, path: str, key: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(CHAT)}\r\n\r\n"
        ).encode() + CHAT
        self.buffer = b""

    def call(self) -> int:
        start = time.perf_counter_ns()
        self.sock.sendall(self.request)
        status = self._response()
        elapsed = time.perf_counter_ns() - start
        if status != 200:
            raise RuntimeError(f"the server answered {status}")
        return elapsed

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise RuntimeError("the server closed the connection")
        self.buffer += data

    def _response(self) -> int:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
        if b"content-length" in headers:
            size = int(headers[b"content-length"])
            while len(self.buffer) < size:
                self._fill()
            self.buffer = self.buffer[size:]
            return status
        while True:  # chunked
            while b"\r\n" not in self.buffer:
                self._fill()
            size_line, rest = self.buffer.split(b"\r\n", 1)
            size = int(size_line, 16)
            while len(rest) < size + 2:
                self._fill()
                size_line, rest = self.buffer.split(b"\r\n", 1)
            self.buffer = rest[size + 2 :]
            if size == 0:
                return status

    def close(self) -> None:
        self.sock.close()


def sample(direct: Connection, gateways: list[Connection], pairs: int) -> list[tuple[list[int], list[int]]]:
    """``pairs`` rounds; in each, one pair per gateway: a request to it and one direct, in alternating
    order (ABBA). The client's collector is off. Per gateway: (direct ns, gateway ns)."""
    rows = [([0] * pairs, [0] * pairs) for _ in gateways]
    gc.collect()
    gc.disable()
    try:
        for i in range(pairs):
            for (d, g), gateway in zip(rows, gateways, strict=True):
                if i & 1:
                    d[i] = direct.call()
                    g[i] = gateway.call()
                else:
                    g[i] = gateway.call()
                    d[i] = direct.call()
    finally:
        gc.enable()
    return rows


# ---------------------------------------------------------------- statistics


def bootstrap(d: np.ndarray, g: np.ndarray, q: float, resamples: int, seed: int) -> list[float]:
    """``percentile(g) - percentile(d)`` and the ``q``-th percentile of ``g - d`` per pair, each with its
    95 % interval from ``resamples`` resamplings of the pairs: [added, low, high, paired, low, high]."""
    diff = g - d
    rng = np.random.default_rng(seed)
    adds, pairs = np.empty(resamples), np.empty(resamples)
    for k in range(resamples):
        picks = rng.integers(0, len(d), len(d))
        adds[k] = np.percentile(g[picks], q) - np.percentile(d[picks], q)
        pairs[k] = np.percentile(diff[picks], q)
    added = float(np.percentile(g, q) - np.percentile(d, q))
    paired = float(np.percentile(diff, q))
    return [added, *np.percentile(adds, [2.5, 97.5]), paired, *np.percentile(pairs, [2.5, 97.5])]


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _ms(ns: list[int]) -> np.ndarray:
    return np.asarray(ns, dtype=np.float64) / 1e6


def _quantiles(values: np.ndarray) -> str:
    return "  ".join(
        f"p{q:g} {v:7.3f}" for q, v in zip(QUANTILES, np.percentile(values, QUANTILES), strict=True)
    )


# ---------------------------------------------------------------- the run


def _report(name: str, d_ns: list[int], g_ns: list[int], cpu: float, probe: Path, args: Any) -> None:
    inside = json.loads(probe.read_text())
    d, g = _ms(d_ns), _ms(g_ns)
    print(f"\n== {name}: {VARIANTS[name]}")
    print(f"direct   wall ms  {_quantiles(d)}")
    print(f"gateway  wall ms  {_quantiles(g)}")
    for q in (50.0, 99.0):
        added, lo, hi, paired, plo, phi = bootstrap(d, g, q, args.resamples, seed=15)
        target = " (target <= 0.5)" if q == 50 else " (target <= 1.5)"
        print(
            f"added p{q:g}: {added:+.3f} ms [{lo:+.3f}, {hi:+.3f}]{target}; "
            f"p{q:g} of the per-pair difference {paired:+.3f} ms [{plo:+.3f}, {phi:+.3f}] (95 % bootstrap)"
        )
    print(f"gateway process CPU per request {cpu / args.pairs * 1e3:.3f} ms (/proc, whole sample)")
    print(f"inside the gateway, wall ms       {_quantiles(_ms(inside['wall']))}")
    print(f"inside the gateway, loop CPU ms   {_quantiles(_ms(inside['cpu']))}")
    by_gen: dict[int, list[int]] = {}
    for generation, ns in inside["pauses"]:
        by_gen.setdefault(generation, []).append(ns)
    for generation, pauses in sorted(by_gen.items()):
        print(
            f"gc generation {generation}: {len(pauses)} collections, longest "
            f"{max(pauses) / 1e6:.3f} ms, total {sum(pauses) / 1e6:.1f} ms"
        )


def run(args: argparse.Namespace) -> None:
    work = Path(os.environ.get("BENCH_TMP") or tempfile.mkdtemp(prefix="bench-gateway-tail-"))
    work.mkdir(parents=True, exist_ok=True)
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        sys.exit(f"unknown variants {sorted(unknown)}: choose from {', '.join(VARIANTS)}")
    up_port = _free_port()
    upstream = f"http://127.0.0.1:{up_port}/v1"
    os.environ.update({"BENCH_UPSTREAM": upstream, "BENCH_HOME": str(work / "home")})
    key = governed_key()  # every gateway opens this home: one key store
    tick = os.sysconf("SC_CLK_TCK")
    load = os.getloadavg()[0]
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load:.2f}; {args.pairs} rounds of "
        f"{len(variants)} interleaved pairs, after {args.warmup}"
    )
    with contextlib.ExitStack() as stack:
        up = stack.enter_context(
            _process(_uvicorn("benchmarks.bench_gateway:upstream_app", up_port, False), up_port)
        )
        procs, ports = [], []
        for variant in variants:
            port = _free_port()
            env = {"BENCH_VARIANT": variant, "BENCH_PROBE": str(work / f"probe-{variant}.json")}
            command = _uvicorn("benchmarks.bench_gateway_tail:make_probed_gateway", port, True)
            procs.append(stack.enter_context(_process(command, port, env)))
            ports.append(port)
        direct = Connection(up_port, "/v1/chat/completions", KEY)
        gateways = [Connection(port, "/v1/chat/completions", key) for port in ports]
        sample(direct, gateways, args.warmup)
        for port in ports:  # each probe forgets the warm-up
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b"POST /probe/reset HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
                s.recv(4096)
        cpu0 = [_cpu_ticks(p.pid) for p in procs]
        up0 = _cpu_ticks(up.pid)
        started = time.perf_counter()
        rows = sample(direct, gateways, args.pairs)
        elapsed = time.perf_counter() - started
        cpu = [(_cpu_ticks(p.pid) - c) / tick for p, c in zip(procs, cpu0, strict=True)]
        upstream_cpu = (_cpu_ticks(up.pid) - up0) / tick
        direct.close()
        for gateway in gateways:
            gateway.close()
    requests = args.pairs * len(variants)
    print(
        f"{requests} pairs in {elapsed:.1f} s; load average {load:.2f} -> {os.getloadavg()[0]:.2f}; "
        f"upstream CPU per request {upstream_cpu / (2 * requests) * 1e3:.3f} ms"
    )
    for variant, (d_ns, g_ns), seconds in zip(variants, rows, cpu, strict=True):
        _report(variant, d_ns, g_ns, seconds, work / f"probe-{variant}.json", args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=5_000)
    parser.add_argument("--resamples", type=int, default=400, help="bootstrap resamples")
    parser.add_argument(
        "--variants", default="served", help=f"gateways side by side, of: {', '.join(VARIANTS)}"
    )
    run(parser.parse_args())


if __name__ == "__main__":
    main()
