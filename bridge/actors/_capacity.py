"""How many requests of a model each of its servers takes at once, and who said so.

Configuration wins (a user who wrote ``slots`` meant it); then what the server says it runs
(LM Studio's ``parallel``, llama.cpp's ``total_slots``); then ``default_limits.slots``. Too
few slots leave a GPU idle, too many make requests queue inside the server where the bridge
cannot see, bound or cancel the wait, so the server's own number is the best default.
"""

from __future__ import annotations

from bridge.messages import ModelEntry, ServerSlots
from bridge.settings import BridgeSettings, server_name

__all__ = ["slot_capacity"]


def slot_capacity(model: ModelEntry, settings: BridgeSettings) -> list[ServerSlots]:
    """The slots the bridge uses for ``model`` on each server that lists it, with their source."""
    configured = {server_name(s): s.slots for s in settings.servers if s.slots is not None}
    limits = settings.models.get(model.id)
    capacity = []
    for server in model.servers or [model.server]:
        if server in configured:
            capacity.append(ServerSlots(server=server, slots=configured[server], source="servers.slots"))
        elif limits is not None:
            capacity.append(ServerSlots(server=server, slots=limits.slots, source="models.slots"))
        elif model.reported_slots.get(server, 0) > 0:
            capacity.append(ServerSlots(server=server, slots=model.reported_slots[server], source="server"))
        else:
            capacity.append(ServerSlots(server=server, slots=settings.default_limits.slots, source="default"))
    return capacity
