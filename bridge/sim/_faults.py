"""Choosing faults: a scripted ``Fault`` turn wins, else one random draw per request.

Exactly one random number is drawn per eligible request whatever the outcome,
so a given seed and request order always inject the same faults. Each endpoint
says which kinds make sense for it (no malformed tool call on an embedding
request); a draw that lands on a kind the endpoint cannot show injects nothing.
"""

from __future__ import annotations

import random

from bridge.sim._config import FaultKind, SimConfig
from bridge.sim._http import Response
from bridge.sim._script import Fault
from bridge.sim._wire import error_body, rate_limited, server_error

__all__ = ["BEFORE_WORK", "CHAT_FAULTS", "DURING_WORK", "EMBEDDING_FAULTS", "TEXT_FAULTS", "FaultPicker", "early_reply"]

BEFORE_WORK = frozenset({FaultKind.HTTP_500, FaultKind.RATE_LIMIT, FaultKind.ERROR_BODY, FaultKind.NO_ANSWER})
"""Kinds answered before any model work (no slot, no load)."""
DURING_WORK = frozenset(
    {FaultKind.DROP, FaultKind.STALL, FaultKind.MODEL_UNLOADED, FaultKind.CONTEXT_OVERFLOW, FaultKind.INTERRUPT}
)
"""Kinds that fire after ``after_tokens`` tokens of the reply."""
CHAT_FAULTS = frozenset(FaultKind)
TEXT_FAULTS = BEFORE_WORK | DURING_WORK
EMBEDDING_FAULTS = BEFORE_WORK | {FaultKind.DROP}


class FaultPicker:
    """Random faults at the configured rates, from a RNG seeded with ``SimConfig.seed``. Strictly private."""

    __slots__ = ("_config", "_rates", "_rng")

    def __init__(self, config: SimConfig) -> None:
        self._config = config
        self._rng = random.Random(config.seed)
        self._rates = [(kind, rate) for kind, rate in sorted(config.fault_rates.items()) if rate > 0]

    def draw(self, allowed: frozenset[FaultKind]) -> Fault | None:
        if not self._rates:
            return None
        roll = self._rng.random()
        bound = 0.0
        for kind, rate in self._rates:
            bound += rate
            if roll < bound:
                if kind not in allowed:
                    return None
                return Fault(
                    kind,
                    seconds=self._config.fault_seconds,
                    after_tokens=self._config.fault_after_tokens,
                    retry_after=self._config.retry_after,
                )
        return None


def early_reply(fault: Fault) -> Response | None:
    """The reply for a fault answered before any work, if it is one of those (``NO_ANSWER`` has none)."""
    if fault.kind is FaultKind.HTTP_500:
        return server_error(fault.message)
    if fault.kind is FaultKind.RATE_LIMIT:
        return rate_limited(fault.retry_after, fault.message, header=fault.retry_header)
    if fault.kind is FaultKind.ERROR_BODY:
        return error_body(fault.message)
    return None
