"""core.state.certificates: records, the current certificate, retirement and pruning."""

from __future__ import annotations

import orjson
import redis

from core.state import certificates as cert_state
from core.state.certificates import RETIRED_KEY_KEPT_SECONDS, CertificateRecord

T = "contoso"


def record(created_at: float = 100.0) -> CertificateRecord:
    return CertificateRecord("sealed-pem", "MIIB...", created_at)


def test_a_record_round_trip_keeps_the_stored_shape(redis_client: redis.Redis) -> None:
    cert_state.add(redis_client, T, "c1", record())

    assert cert_state.read(redis_client, T, "c1") == record()
    assert cert_state.current(redis_client, T) == ("c1", record())
    stored = orjson.loads(redis_client.hget(cert_state.certificates_key(T), "c1") or b"")
    assert stored == {"key": "sealed-pem", "certificate": "MIIB...", "created_at": 100.0,
                      "retired_at": None}  # fmt: skip


def test_an_older_record_without_retirement_reads_as_current() -> None:
    older = CertificateRecord.from_bytes(b'{"key": "k", "certificate": "c", "created_at": 5}')

    assert older == CertificateRecord("k", "c", 5.0, None)
    assert CertificateRecord.from_bytes(b"garbage") == CertificateRecord("", "")


def test_a_new_certificate_retires_the_current_one(redis_client: redis.Redis) -> None:
    cert_state.add(redis_client, T, "c1", record(100.0))
    cert_state.add(redis_client, T, "c2", record(200.0))

    assert cert_state.current(redis_client, T) == ("c2", record(200.0))
    old = cert_state.read(redis_client, T, "c1")
    assert old is not None and old.retired_at == 200.0
    assert cert_state.certificate_ids(redis_client, T) == ["c1", "c2"]


def test_a_retired_key_is_pruned_only_when_unused_and_past_graphs_retries(
    redis_client: redis.Redis,
) -> None:
    cert_state.add(redis_client, T, "c1", record(100.0))
    cert_state.add(redis_client, T, "c2", record(200.0))
    later = 200.0 + RETIRED_KEY_KEPT_SECONDS

    assert cert_state.prune(redis_client, T, set(), later - 1) == []
    assert cert_state.prune(redis_client, T, {"c1"}, later) == []
    assert cert_state.prune(redis_client, T, set(), later) == ["c1"]
    assert list(cert_state.read_all(redis_client, T)) == ["c2"]


def test_no_current_certificate(redis_client: redis.Redis) -> None:
    assert cert_state.current(redis_client, T) is None
    redis_client.set(cert_state.current_key(T), "gone")
    assert cert_state.current(redis_client, T) is None
