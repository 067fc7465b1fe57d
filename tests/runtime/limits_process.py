"""One Runtime process of the shared-limits tests (``test_shared_limits.py``), run as a subprocess.

It executes the runs it starts (``start_run`` without ``detach``), as the key named by its argument,
with the settings of its environment (``SHOPFLOOR_CONFIG``: the limits and where their counters live).
Each line on stdin, ``{"agent": PATH, "count": N, "task": TEXT}``, starts N runs at once; it answers
with one line, ``{"started": [RUN_ID...], "refused": [MESSAGE...]}``. It exits at the end of stdin.
"""

from __future__ import annotations

import asyncio
import json
import sys

from shopfloor.config import load_settings
from shopfloor.errors import BudgetExceededError
from shopfloor.runtime import Runtime, compose
from shopfloor.security import Principal


async def main(key: str) -> None:
    caller = Principal(id=key, kind="program", name=key)
    async with Runtime(compose(load_settings())) as runtime:
        await runtime.start_executor()
        print(json.dumps({"ready": runtime.executor_id}), flush=True)
        while line := await asyncio.to_thread(sys.stdin.readline):
            command = json.loads(line)

            async def start(agent: str = command["agent"], task: str = command["task"]) -> str:
                try:
                    return await runtime.start_run(agent, task, caller=key, principal=caller)
                except BudgetExceededError as exc:
                    return f"refused: {exc}"

            outcomes = await asyncio.gather(*(start() for _ in range(command["count"])))
            started = [o for o in outcomes if not o.startswith("refused: ")]
            refused = [o.removeprefix("refused: ") for o in outcomes if o.startswith("refused: ")]
            print(json.dumps({"started": started, "refused": refused}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
