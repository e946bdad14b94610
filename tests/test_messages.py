"""Messages are frozen, tagged, and decode straight to their class."""

from __future__ import annotations

import msgspec
import pytest

from bridge.messages import Progress
from tests._runtime_actors import Block, CounterMessage, Increment


def test_tagged_union_round_trip() -> None:
    """Each message encodes with its tag and decodes to the same class."""
    for message in (Increment(by=3), Block(key="k")):
        wire = msgspec.json.encode(message)
        assert msgspec.json.decode(wire, type=CounterMessage) == message
    assert msgspec.json.decode(b'{"type":"increment","by":2}', type=CounterMessage) == Increment(by=2)


def test_messages_are_frozen() -> None:
    """A message cannot change after it is sent."""
    message = Increment(by=1)
    with pytest.raises(AttributeError):
        message.by = 2  # type: ignore[misc]


def test_unknown_tag_is_a_clear_decode_error() -> None:
    """A message for another mailbox is refused with the offending tag named."""
    with pytest.raises(msgspec.ValidationError, match="Invalid value 'nope'"):
        msgspec.json.decode(b'{"type":"nope"}', type=CounterMessage)


def test_progress_is_wire_encodable() -> None:
    """Progress reports can be logged or sent as they are."""
    assert msgspec.json.decode(msgspec.json.encode(Progress(stage="queued", position=3)), type=Progress).position == 3
