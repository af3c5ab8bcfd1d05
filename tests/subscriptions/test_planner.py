"""Packing users into service-account subscriptions, rebalancing, and the polling fallback."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from subscriptions.planner import (
    Plan,
    plan,
    polling_batches,
    polling_interval,
    resource_for,
)


def users(n: int, prefix: str = "u") -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(n)]


def accounts(n: int) -> list[str]:
    return [f"svc{i}@contoso.com" for i in range(1, n + 1)]


def assert_covers_each_user_once(result: Plan, wanted: Sequence[str]) -> None:
    placed = [u for ids in result.chunks.values() for u in ids] + list(result.polled)
    assert sorted(placed) == sorted(set(wanted))


def as_current(result: Plan) -> Mapping[str, Sequence[str]]:
    return {a: list(ids) for a, ids in result.chunks.items() if ids}


def owner_of(result: Plan) -> dict[str, str]:
    return {u: a for a, ids in result.chunks.items() for u in ids}


def test_1400_users_over_3_accounts_make_3_chunks_and_nobody_polled() -> None:
    result = plan(users(1400), accounts(3))
    assert [len(ids) for ids in result.chunks.values()] == [467, 467, 466]
    assert result.polled == ()
    assert_covers_each_user_once(result, users(1400))


def test_users_beyond_capacity_are_polled() -> None:
    result = plan(users(2000), accounts(3))
    assert [len(ids) for ids in result.chunks.values()] == [650, 650, 650]
    assert len(result.polled) == 50
    assert_covers_each_user_once(result, users(2000))


def test_no_accounts_means_everyone_is_polled() -> None:
    result = plan(users(5), [])
    assert result.chunks == {}
    assert result.polled == tuple(users(5))


def test_a_fresh_plan_marks_every_non_empty_chunk_changed() -> None:
    result = plan(users(10), accounts(3))
    assert result.changed_accounts == tuple(accounts(3))


def test_nothing_changes_when_nothing_changed() -> None:
    first = plan(users(1400), accounts(3))
    again = plan(users(1400), accounts(3), as_current(first))
    assert again.chunks == first.chunks
    assert again.changed_accounts == ()
    assert again.dropped_accounts == ()


def test_removed_account_users_move_to_others_with_room_and_the_rest_are_polled() -> None:
    first = plan(users(1400), accounts(3))
    revoked = accounts(3)[1]
    result = plan(users(1400), [a for a in accounts(3) if a != revoked], as_current(first))
    # 467 orphans, 183 + 184 free places left: 100 are polled.
    assert [len(ids) for ids in result.chunks.values()] == [650, 650]
    assert set(result.polled) <= set(first.chunks[revoked])
    assert len(result.polled) == 100
    assert result.dropped_accounts == (revoked,)
    assert_covers_each_user_once(result, users(1400))


def test_survivors_keep_their_users_when_an_account_is_removed() -> None:
    first = plan(users(1400), accounts(3))
    result = plan(users(1400), accounts(3)[1:], as_current(first))
    for account in accounts(3)[1:]:
        assert set(first.chunks[account]) <= set(result.chunks[account])


def test_a_fourth_account_takes_a_share_of_1400_users() -> None:
    first = plan(users(1400), accounts(3))
    result = plan(users(1400), accounts(4), as_current(first))
    loads = [len(ids) for ids in result.chunks.values()]
    assert min(loads) > 0
    assert max(loads) <= 650
    assert max(loads) - min(loads) <= 325
    assert result.polled == ()
    assert_covers_each_user_once(result, users(1400))


def test_a_fourth_account_recreates_two_subscriptions_not_four() -> None:
    first = plan(users(1400), accounts(3))
    result = plan(users(1400), accounts(4), as_current(first))
    before, after = owner_of(first), owner_of(result)
    moved = [u for u in before if after[u] != before[u]]
    assert {after[u] for u in moved} == {accounts(4)[3]}
    assert len(result.changed_accounts) == 2
    assert accounts(4)[3] in result.changed_accounts


def test_an_account_added_to_many_full_ones_changes_two_chunks() -> None:
    first = plan(users(100_000), accounts(154))
    result = plan(users(100_000), accounts(155), as_current(first))
    assert len(result.changed_accounts) == 2
    assert len(result.chunks[accounts(155)[-1]]) >= 650 - 325


@pytest.mark.parametrize("spread", [None, 0, 100])
def test_a_rebalanced_plan_is_stable(spread: int | None) -> None:
    first = plan(users(1400), accounts(3))
    rebalanced = plan(users(1400), accounts(4), as_current(first), spread=spread)
    again = plan(users(1400), accounts(4), as_current(rebalanced), spread=spread)
    assert again.changed_accounts == ()


def test_an_added_account_takes_polled_users_first() -> None:
    first = plan(users(2000), accounts(3))
    result = plan(users(2000), accounts(4), as_current(first))
    assert result.polled == ()
    assert set(first.polled) <= set(result.chunks[accounts(4)[3]])


def test_an_added_account_only_unpolls_when_evening_out_is_not_worth_it() -> None:
    first = plan(users(2000), accounts(3))
    result = plan(users(2000), accounts(4), as_current(first), spread=650)
    assert result.chunks[accounts(4)[3]] == first.polled
    assert result.changed_accounts == (accounts(4)[3],)


def test_a_small_imbalance_is_left_alone() -> None:
    # Two extra users do not justify recreating subscriptions: the spare stays spare.
    first = plan(users(10), accounts(1))
    result = plan(users(10), accounts(2), as_current(first))
    assert result.chunks[accounts(2)[1]] == ()
    assert result.changed_accounts == ()


def test_a_zero_spread_always_evens_out() -> None:
    first = plan(users(10), accounts(1))
    result = plan(users(10), accounts(2), as_current(first), spread=0)
    assert [len(ids) for ids in result.chunks.values()] == [5, 5]


def test_a_new_user_goes_to_the_least_loaded_account() -> None:
    current = {"a": users(300), "b": users(100, "b"), "c": users(200, "c")}
    wanted = [u for ids in current.values() for u in ids] + ["new"]
    result = plan(wanted, ["a", "b", "c"], current)
    assert "new" in result.chunks["b"]
    assert result.changed_accounts == ("b",)


def test_removed_users_drop_out_and_only_their_chunk_changes() -> None:
    current = {"a": ["u1", "u2"], "b": ["u3", "u4"]}
    result = plan(["u1", "u2", "u3"], ["a", "b"], current)
    assert result.chunks == {"a": ("u1", "u2"), "b": ("u3",)}
    assert result.changed_accounts == ("b",)


def test_a_chunk_that_empties_is_changed() -> None:
    result = plan(["u1"], ["a", "b"], {"a": ["u1"], "b": ["u2"]})
    assert result.chunks["b"] == ()
    assert result.changed_accounts == ("b",)


def test_a_user_held_twice_stays_with_the_first_account() -> None:
    result = plan(["u1", "u2"], ["a", "b"], {"a": ["u1"], "b": ["u1", "u2"]})
    assert result.chunks == {"a": ("u1",), "b": ("u2",)}
    assert result.changed_accounts == ("b",)


def test_chunks_never_exceed_capacity_even_if_current_does() -> None:
    result = plan(users(10), ["a", "b"], {"a": users(10)}, capacity=4)
    assert all(len(ids) <= 4 for ids in result.chunks.values())
    assert len(result.polled) == 2


def test_duplicate_user_ids_are_placed_once() -> None:
    result = plan(["u1", "u1", "u2"], ["a"])
    assert result.chunks == {"a": ("u1", "u2")}


def test_a_hundred_thousand_users_fill_154_accounts() -> None:
    result = plan(users(100_000), accounts(154))
    assert result.polled == ()
    assert max(len(ids) for ids in result.chunks.values()) <= 650
    assert_covers_each_user_once(result, users(100_000))


@pytest.mark.parametrize(("capacity", "spread"), [(0, None), (650, -1)])
def test_bad_limits_are_refused(capacity: int, spread: int | None) -> None:
    with pytest.raises(ValueError):
        plan(["u1"], ["a"], capacity=capacity, spread=spread)


def test_resource_quotes_each_id() -> None:
    assert resource_for(["a1", "b2"]) == "/communications/presences?$filter=id in ('a1','b2')"


def test_resource_for_one_user_uses_the_same_filter() -> None:
    assert resource_for(["a1"]) == "/communications/presences?$filter=id in ('a1')"


@pytest.mark.parametrize("ids", [[], ["a'b"], [""], users(651)])
def test_resource_refuses_what_graph_would_reject(ids: list[str]) -> None:
    with pytest.raises(ValueError):
        resource_for(ids)


def test_resource_takes_a_full_chunk() -> None:
    assert resource_for(users(650)).count("'") == 1300


def test_polling_batches_hold_at_most_650_ids() -> None:
    batches = polling_batches(users(1400))
    assert [len(b) for b in batches] == [650, 650, 100]
    assert [u for b in batches for u in b] == users(1400)


def test_polling_batches_skip_repeated_ids() -> None:
    assert polling_batches(["a", "b", "a"], size=1) == [["a"], ["b"]]


@pytest.mark.parametrize("size", [0, 651])
def test_polling_batch_size_is_bounded(size: int) -> None:
    with pytest.raises(ValueError):
        polling_batches(["a"], size=size)


@pytest.mark.parametrize(
    ("n_users", "calls_per_30s", "safety", "seconds"),
    [
        (0, 1500, 0.5, 0.0),
        (1, 1500, 0.5, 0.04),  # one call within 750 calls / 30 s
        (650, 1500, 0.5, 0.04),
        (651, 1500, 0.5, 0.08),
        (100_000, 1500, 0.5, 6.16),  # 154 calls at 25 calls/s
        (650, 10, 1.0, 3.0),
    ],
)
def test_polling_interval_stays_within_the_rate_limit(
    n_users: int, calls_per_30s: int, safety: float, seconds: float
) -> None:
    assert polling_interval(n_users, calls_per_30s, safety) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("n_users", "calls_per_30s", "safety"),
    [(-1, 1500, 0.5), (1, 0, 0.5), (1, 1500, 0.0), (1, 1500, 1.5)],
)
def test_polling_interval_refuses_bad_input(
    n_users: int, calls_per_30s: int, safety: float
) -> None:
    with pytest.raises(ValueError):
        polling_interval(n_users, calls_per_30s, safety)
