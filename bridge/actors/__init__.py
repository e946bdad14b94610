"""The bridge's actors, standing on :mod:`bridge.runtime`.

``registry.ModelRegistryActor`` (model list, validation, routing), ``worker.LLMWorkerActor`` (one per
model: its queue, slots, retries, breakers), ``server_gate.ServerGateActor`` (a server-wide limit),
``mcp_session.MCPSessionActor`` (one per child MCP server), ``child_servers.ChildServersActor``
(their configuration and routing) and ``planner.PlannerActor`` (autonomous runs). ``bridge.supervisor``
says which runs under what.
"""
