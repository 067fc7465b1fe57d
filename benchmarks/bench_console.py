"""The console's runs list with 10,000 runs in the database: server-side time of one page (target
under 300 ms), side by side with the API's ``GET /v1/runs`` of the same page (the same query through
the same runtime; the baseline: what the console adds is rendering HTML).

Measured in process through the server's ASGI application (no socket), SQLite, 10,000 runs of 5 agents
whose specs name a team. Rows: the first page, a filtered page (``status=failed``), a page deep in the
history (its cursor), a run's page, and the home page (a summary of the newest 500 runs; its
baseline the API's page of 500). Medians of interleaved repeats.
Run: ``.venv/bin/python -m benchmarks.bench_console``.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import httpx

RUNS = 10_000
REPEATS = 15


def _seed(settings: object, root: Path) -> tuple[list[str], str]:
    from shopfloor.runtime import RunRecord, RunStore

    specs = []
    for index in range(5):
        folder = root / f"agent{index}"
        folder.mkdir()
        (folder / "agent.yaml").write_text(
            f"name: agent{index}\ninstructions: hi\nmodel: test\npermissions:\n  team: research\n"
        )
        specs.append(str(folder / "agent.yaml"))
    store = RunStore.open(settings.db_url)  # type: ignore[attr-defined]
    now = time.time() - RUNS
    statuses = ("completed", "completed", "completed", "failed", "cancelled")
    try:
        for i in range(RUNS):
            store.create(
                RunRecord(
                    run_id=f"run-{i:08d}",
                    agent=f"agent{i % 5}",
                    spec_path=specs[i % 5],
                    release_digest="sha256:" + "0" * 64,
                    caller="key:bench",
                    status=statuses[i % 5],  # type: ignore[arg-type]
                    task=f"task {i}",
                    output=f"answer {i}",
                    stop_reason="final_answer",
                    input_tokens=100 + i % 50,
                    output_tokens=20,
                    created_at=now + i,
                    started_at=now + i,
                    finished_at=now + i + 1.5,
                )
            )
    finally:
        store.close()
    return specs, f"run-{RUNS // 2:08d}"


async def _median(client: httpx.AsyncClient, url: str, **kwargs: object) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        answer = await client.get(url, **kwargs)  # type: ignore[arg-type]
        times.append(time.perf_counter() - start)
        assert answer.status_code == 200, (url, answer.status_code, answer.text[:300])
    return statistics.median(times)


async def main() -> None:
    from shopfloor.config import load_settings
    from shopfloor.gateway import build_server
    from shopfloor.security import KeyStore

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SHOPFLOOR_HOME"] = str(Path(tmp) / "home")
        settings = load_settings()
        settings.ensure_home()
        started = time.perf_counter()
        _, middle = _seed(settings, Path(tmp))
        print(f"seeded {RUNS} runs in {time.perf_counter() - started:.1f} s")
        keys = KeyStore.open(settings.db_url)
        key = keys.create("bench", role="viewer", team="research", created_by="bench")[1]
        keys.close()
        app = build_server(settings, worker=False)
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://bench") as console,
            httpx.AsyncClient(
                transport=transport, base_url="http://bench", headers={"Authorization": f"Bearer {key}"}
            ) as api,
        ):
            form = (await console.get("/console/login")).text
            token = re.search(r'name="login_csrf" value="([^"]+)"', form)
            assert token
            signed = await console.post("/console/login", data={"api_key": key, "login_csrf": token.group(1)})
            assert signed.status_code == 303
            deep = (await api.get("/v1/runs", params={"limit": 50})).json()
            for _ in range(100):  # a cursor 5,000 runs deep
                deep = (await api.get("/v1/runs", params={"limit": 50, "cursor": deep["next_cursor"]})).json()
            last = deep["runs"][-1]
            rows = [
                ("first page", "/console/runs", {}, "/v1/runs", {"limit": 50}),
                (
                    "status=failed",
                    "/console/runs",
                    {"status": "failed"},
                    "/v1/runs",
                    {"limit": 50, "status": "failed"},
                ),
                (
                    "5,000 runs deep",
                    "/console/runs",
                    {"before_at": repr(last["created_at"]), "before_id": last["run_id"]},
                    "/v1/runs",
                    {"limit": 50, "cursor": deep["next_cursor"]},
                ),
                ("one run's page", f"/console/runs/{middle}", {}, f"/v1/runs/{middle}", {}),
                ("home (500 runs)", "/console/", {}, "/v1/runs", {"limit": 500}),
            ]
            print(f"{'page (10,000 runs)':<18} {'console':>10} {'API (JSON)':>11} {'ratio':>6}  (< 300 ms)")
            for name, page, params, baseline, api_params in rows:
                ours, theirs = [], []
                for _ in range(3):  # interleaved
                    ours.append(await _median(console, page, params=params))
                    theirs.append(await _median(api, baseline, params=api_params))
                a, b = statistics.median(ours), statistics.median(theirs)
                print(f"{name:<18} {a * 1000:>8.1f} ms {b * 1000:>8.1f} ms {a / b:>5.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
