"""The server's own canary evaluation: every ``releases.evaluate_every`` seconds, each deployment with a
candidate is judged (``Deployments.evaluate_all``) and promoted or rolled back, audited as
``system:canary-evaluator``. Several server processes may run it: a deployment changes by
compare-and-set, so one of them applies a decision and the others find it applied."""

from __future__ import annotations

import asyncio
import logging

from shopfloor.errors import ShopfloorError
from shopfloor.ops.releases import CANARY_EVALUATOR, Deployments, Releases
from shopfloor.runtime import Services
from shopfloor.security import AuditLog

__all__ = ["evaluate_canaries"]

logger = logging.getLogger("shopfloor.gateway")


async def evaluate_canaries(services: Services, audit: AuditLog, every: float) -> None:
    """Run until cancelled; a failed round is logged and the next one tries again."""
    deployments = Deployments(Releases(services, audit=audit))
    while True:
        await asyncio.sleep(every)
        try:
            for decision in await asyncio.to_thread(deployments.evaluate_all, actor=CANARY_EVALUATOR):
                if decision.action in ("promote", "rollback"):
                    logger.info("canary of %s: %s", decision.agent, decision.reason)
        except (ShopfloorError, OSError) as exc:
            logger.warning("canary evaluation failed: %s", exc)
