"""Loop detection: the third identical call is reported."""

from __future__ import annotations

import pytest

from bridge.planner import LoopDetector, canonical_arguments, repeat_message


def test_third_identical_call_is_a_loop() -> None:
    """The first two identical calls pass; the third is reported."""
    detector = LoopDetector()
    assert detector.record("read", {"path": "/a"}) is False
    assert detector.record("read", {"path": "/a"}) is False
    assert detector.record("read", {"path": "/a"}) is True
    assert detector.count("read", {"path": "/a"}) == 3


def test_key_order_and_spacing_do_not_matter() -> None:
    """Arguments are compared as canonical JSON, whether given as dicts or JSON text."""
    detector = LoopDetector()
    detector.record("read", {"a": 1, "b": [1, 2]})
    detector.record("read", '{"b": [1,2],  "a": 1}')
    assert detector.record("read", {"b": [1, 2], "a": 1}) is True


def test_different_arguments_or_tools_are_different_calls() -> None:
    """A change of tool or of any argument starts a new count."""
    detector = LoopDetector()
    for _ in range(2):
        detector.record("read", {"path": "/a"})
    assert detector.record("read", {"path": "/b"}) is False
    assert detector.record("write", {"path": "/a"}) is False
    assert detector.count("read", {"path": "/a"}) == 2


def test_custom_limit_and_reset() -> None:
    """limit=2 reports the second call; reset forgets everything."""
    detector = LoopDetector(limit=2)
    assert detector.limit == 2
    detector.record("t", None)
    assert detector.record("t", {}) is True
    detector.reset()
    assert detector.count("t", {}) == 0


def test_limit_below_two_is_refused() -> None:
    """A limit of 1 would report every call."""
    with pytest.raises(ValueError, match=r"^limit must be at least 2 \(the second identical call\), got 1\.$"):
        LoopDetector(limit=1)


def test_canonical_arguments() -> None:
    """Canonical JSON sorts keys and drops spaces; unparseable text is compared as written."""
    assert canonical_arguments({"b": 1, "a": "é"}) == '{"a":"é","b":1}'
    assert canonical_arguments(None) == "{}"
    assert canonical_arguments("  {not json ") == "{not json"


def test_repeat_message() -> None:
    """The message tells the model what happened and what to do instead."""
    assert repeat_message("read", 3) == (
        "You have now called `read` 3 times with exactly these arguments; it was not run again because the "
        "result would be the same. Use the result you already have, or try something different."
    )
