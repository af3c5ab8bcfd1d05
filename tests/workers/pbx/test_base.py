"""The adapters' optional capabilities: what delivery, the PBX round and the registry rely on."""

from __future__ import annotations

import pytest

from workers.pbx.base import BatchApply, BatchRead, Refreshing, Stateful
from workers.pbx.builtin import BuiltinAdapter
from workers.pbx.http import HttpAdapter
from workers.pbx.sip import SipAdapter

CAPABILITIES: list[type] = [BatchApply, Refreshing, Stateful]


@pytest.mark.parametrize(
    ("adapter", "expected"),
    [
        (BuiltinAdapter, {BatchApply}),  # one Redis round trip per batch
        (SipAdapter, {Refreshing, Stateful}),  # publications lapse; ETags outlive the worker
        (HttpAdapter, set()),
    ],
)
def test_each_adapter_has_the_capabilities_its_callers_use(
    adapter: type, expected: set[type]
) -> None:
    assert {c for c in CAPABILITIES if issubclass(adapter, c)} == expected


def test_a_capability_is_recognised_by_shape_too() -> None:
    class Batching:
        def apply_many(self, changes: list[object]) -> None: ...

    assert isinstance(Batching(), BatchApply)
    assert not isinstance(Batching(), Refreshing)


@pytest.mark.parametrize(
    ("adapter", "reads_many"), [(BuiltinAdapter, True), (SipAdapter, False), (HttpAdapter, False)]
)
def test_only_the_builtin_adapter_reads_many_users_at_once(adapter: type, reads_many: bool) -> None:
    assert issubclass(adapter, BatchRead) is reads_many  # the restore reads a batch in one HMGET
