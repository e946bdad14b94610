"""Fixtures that install and start real peers (filled in by the real-peers work)."""
