"""Matching Graph users to PBX users, and the enable precedence."""

from __future__ import annotations

from typing import Any

import pytest

from core.settings import GRAPH_ATTRIBUTES, PBX_ATTRIBUTES, MatchingSettings, PbxUser
from core.state.directory import Conflict, GraphUser
from workers.matching import (
    Link,
    enabled_links,
    is_enabled,
    linked_graph_ids,
    match_users,
    normalise,
    overrides_from,
)
from workers.pbx.base import PbxUserRecord


def settings(
    graph: str = "userPrincipalName", pbx: str = "username", strip: bool = False
) -> MatchingSettings:
    return MatchingSettings.model_validate(
        {"graph_attribute": graph, "pbx_attribute": pbx, "strip_domain": strip}
    )


def graph_user(gid: str, **fields: str | None) -> GraphUser:
    return GraphUser.from_graph({"id": gid, **fields})


def test_there_are_twelve_attribute_pairs() -> None:
    assert len(GRAPH_ATTRIBUTES) * len(PBX_ATTRIBUTES) == 12


def pbx_record(username: str, **fields: str | None) -> PbxUserRecord:
    return PbxUserRecord(username=username, **fields)


def pbx_with(attribute: str, value: str, default: str) -> PbxUserRecord:
    """A PBX user whose `attribute` is `value` and whose other attributes are all `default`."""
    fields: dict[str, Any] = {a: default for a in PBX_ATTRIBUTES}
    if attribute != "username":
        fields["username"] = f"{default}-{value}"  # usernames must stay distinct
    fields[attribute] = value
    return PbxUserRecord(**fields)


@pytest.mark.parametrize("pbx_attribute", PBX_ATTRIBUTES)
@pytest.mark.parametrize("graph_attribute", GRAPH_ATTRIBUTES)
def test_each_attribute_pair_links_on_the_chosen_attributes_only(
    graph_attribute: str, pbx_attribute: str
) -> None:
    # Every attribute not chosen holds "decoy" on both sides: a match on it would be wrong.
    fields: dict[str, str | None] = {a: "decoy" for a in GRAPH_ATTRIBUTES}
    fields[graph_attribute] = "Key-1001"
    alice = graph_user("g-alice", **fields)
    pbx_alice = pbx_with(pbx_attribute, "key-1001", default="alice")
    pbx_bob = pbx_with(pbx_attribute, "key-2002", default="decoy")
    result = match_users([alice], [pbx_alice, pbx_bob], settings(graph_attribute, pbx_attribute))
    assert result.links == (Link("g-alice", pbx_alice.username),)
    assert result.unlinked_pbx == (pbx_bob.username,)


def test_default_settings_match_upn_to_username() -> None:
    result = match_users(
        [graph_user("g1", userPrincipalName="alice@contoso.com", mail="x")],
        [pbx_record("alice@contoso.com")],
        MatchingSettings(),
    )
    assert result.links == (Link("g1", "alice@contoso.com"),)


@pytest.mark.parametrize(
    ("graph_value", "pbx_value"),
    [
        ("Alice@Contoso.com", "alice@contoso.com"),
        ("ALICE@CONTOSO.COM", "Alice@contoso.COM"),
        ("stra\u00dfe@contoso.com", "STRASSE@contoso.com"),
        (" alice@contoso.com ", "alice@contoso.com"),
    ],
)
def test_comparison_ignores_case_and_surrounding_blanks(graph_value: str, pbx_value: str) -> None:
    result = match_users(
        [graph_user("g1", mail=graph_value)],
        [pbx_record("u1", email=pbx_value)],
        settings("mail", "email"),
    )
    assert result.links == (Link("g1", "u1"),)


@pytest.mark.parametrize(
    ("graph_value", "pbx_value", "strip", "linked"),
    [
        ("alice@contoso.com", "alice", True, True),
        ("alice@contoso.com", "alice@fabrikam.com", True, True),
        ("alice", "ALICE@contoso.com", True, True),
        ("alice@contoso.com", "alice", False, False),
        ("alice@contoso.com", "alice@fabrikam.com", False, False),
        ("alice@contoso.com", "bob@contoso.com", True, False),
    ],
)
def test_domain_strip_applies_to_both_sides(
    graph_value: str, pbx_value: str, strip: bool, linked: bool
) -> None:
    result = match_users(
        [graph_user("g1", userPrincipalName=graph_value)],
        [pbx_record(pbx_value)],
        settings(strip=strip),
    )
    assert bool(result.links) is linked


@pytest.mark.parametrize("missing", [None, "", "   ", "@contoso.com"])
def test_missing_values_never_match_even_each_other(missing: str | None) -> None:
    graphs = [graph_user("g1", mail=missing), graph_user("g2", mail=missing)]
    pbxs = [pbx_record("u1", email=missing), pbx_record("u2", email=missing)]
    result = match_users(graphs, pbxs, settings("mail", "email", strip=True))
    assert result.links == ()
    assert result.conflicts == ()
    assert result.unlinked_graph == ("g1", "g2")
    assert result.unlinked_pbx == ("u1", "u2")


def test_one_graph_user_drives_every_pbx_user_sharing_its_value() -> None:
    # Two extensions with one e-mail are both synced (Bicom syncs only one of them).
    result = match_users(
        [graph_user("g1", mail="alice@contoso.com")],
        [
            pbx_record("201", email="alice@contoso.com"),
            pbx_record("200", email="Alice@contoso.com"),
        ],
        settings("mail", "email"),
    )
    assert result.links == (Link("g1", "200"), Link("g1", "201"))
    assert result.pbx_users_by_graph_id() == {"g1": ["200", "201"]}


def test_pbx_user_claimed_by_two_graph_users_is_a_conflict_and_not_linked() -> None:
    result = match_users(
        [
            graph_user("g2", mail="desk@contoso.com"),
            graph_user("g1", mail="DESK@contoso.com"),
            graph_user("g3", mail="carol@contoso.com"),
        ],
        [
            pbx_record("desk", email="desk@contoso.com"),
            pbx_record("carol", email="carol@contoso.com"),
        ],
        settings("mail", "email"),
    )
    assert result.conflicts == (Conflict("desk", ("g1", "g2")),)
    assert result.links == (Link("g3", "carol"),)
    assert result.unlinked_graph == ()
    assert result.unlinked_pbx == ()


def test_conflict_covers_every_pbx_user_with_the_disputed_value() -> None:
    result = match_users(
        [graph_user("g1", mail="desk@x"), graph_user("g2", mail="desk@x")],
        [pbx_record("200", email="desk@x"), pbx_record("201", email="desk@x")],
        settings("mail", "email"),
    )
    assert result.conflicts == (Conflict("200", ("g1", "g2")), Conflict("201", ("g1", "g2")))
    assert result.links == ()


def test_repeated_records_count_once() -> None:
    result = match_users(
        [graph_user("g1", userPrincipalName="a"), graph_user("g1", userPrincipalName="a")],
        [pbx_record("a"), pbx_record("a")],
        settings(),
    )
    assert result.links == (Link("g1", "a"),)
    assert result.conflicts == ()


def test_every_user_lands_in_exactly_one_bucket() -> None:
    graphs = [graph_user(f"g{i}", mail=f"m{i % 7}@x") for i in range(40)]
    pbxs = [pbx_record(f"u{i}", email=f"m{i % 11}@x") for i in range(30)]
    result = match_users(graphs, pbxs, settings("mail", "email"))
    graph_buckets = (
        [link.graph_id for link in result.links]
        + [g for c in result.conflicts for g in c.graph_ids]
        + list(result.unlinked_graph)
    )
    pbx_buckets = (
        [link.pbx_user for link in result.links]
        + [c.pbx_user for c in result.conflicts]
        + list(result.unlinked_pbx)
    )
    assert set(graph_buckets) == {g.id for g in graphs}
    assert sorted(set(pbx_buckets)) == sorted(pbx_buckets) == sorted(p.username for p in pbxs)


def test_output_does_not_depend_on_input_order() -> None:
    graphs = [graph_user(f"g{i}", mail=f"m{i % 5}@x") for i in range(20)]
    pbxs = [pbx_record(f"u{i}", email=f"m{i % 9}@x") for i in range(25)]
    forward = match_users(graphs, pbxs, settings("mail", "email"))
    backward = match_users(graphs[::-1], pbxs[::-1], settings("mail", "email"))
    assert forward == backward


def test_tenants_file_pbx_users_can_be_matched() -> None:
    result = match_users(
        [graph_user("g1", mailNickname="alice")],
        [PbxUser(username="200", extension="200", email="Alice@contoso.com")],
        settings("mailNickname", "email", strip=True),
    )
    assert result.links == (Link("g1", "200"),)


def test_a_hundred_thousand_users_each_side_all_link() -> None:
    graphs = [
        graph_user(f"g{i:06d}", userPrincipalName=f"User{i}@contoso.com") for i in range(100_000)
    ]
    pbxs = [pbx_record(f"user{i}") for i in range(100_000)]
    result = match_users(graphs, pbxs, settings(strip=True))
    assert len(result.links) == 100_000
    assert result.links[0] == Link("g000000", "user0")


def test_from_graph_keeps_text_fields_and_drops_others() -> None:
    user = GraphUser.from_graph(
        {
            "id": "g1",
            "userPrincipalName": "a@x",
            "mail": None,
            "displayName": "Alice",
            "onPremisesSamAccountName": 7,
            "@odata.type": "#microsoft.graph.user",
        }
    )
    assert user == GraphUser(id="g1", userPrincipalName="a@x", displayName="Alice")


@pytest.mark.parametrize("item", [{}, {"id": ""}, {"id": 5}])
def test_from_graph_needs_an_id(item: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="id"):
        GraphUser.from_graph(item)


def test_normalise_strips_at_the_last_at_sign() -> None:
    assert normalise("A@B@Contoso.com", strip_domain=True) == "a@b"


# Bicom's precedence, written out: the user's Yes/No wins, Not set follows the tenant.
@pytest.mark.parametrize(
    ("tenant", "user", "expected"),
    [
        (True, True, True),
        (True, False, False),
        (True, None, True),
        (False, True, True),
        (False, False, False),
        (False, None, False),
    ],
)
def test_enable_precedence(tenant: bool, user: bool | None, expected: bool) -> None:
    assert is_enabled(tenant, user) is expected


@pytest.mark.parametrize(
    ("tenant", "expected"),
    [(True, ["alice", "bob", "carol"]), (False, ["bob", "carol"])],
)
def test_enabled_links_apply_overrides_per_pbx_user(tenant: bool, expected: list[str]) -> None:
    pbx_users = [
        PbxUser(username="alice"),
        PbxUser(username="bob", enabled=True),
        PbxUser(username="carol", enabled=True),
        PbxUser(username="dave", enabled=False),
    ]
    graphs = [graph_user(f"g-{p.username}", userPrincipalName=p.username) for p in pbx_users]
    result = match_users(graphs, pbx_users, settings())
    overrides = overrides_from(pbx_users)
    del overrides["alice"]  # absent from the overrides = not set
    links = enabled_links(result, overrides, tenant_enabled=tenant)
    assert [link.pbx_user for link in links] == expected


def test_linked_graph_ids_are_distinct_and_sorted() -> None:
    links = [Link("g2", "a"), Link("g1", "b"), Link("g2", "c")]
    assert linked_graph_ids(links) == ["g1", "g2"]
