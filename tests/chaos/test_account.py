"""The service account's sign-in is revoked and its subscription's token runs out: Graph holds
its notifications. The bridge notices without a person and reads the users' presence another
way (app-only polling) until someone signs the account in again."""

from __future__ import annotations

import time

import pytest

from tests.chaos.conftest import SiteFactory
from tests.chaos.site import Figures

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(180)]

WARM_UP = 40
AFTER = 120  # changes made while the account stays revoked


def test_revoked_account_token_under_load_converges(chaos_site: SiteFactory) -> None:
    site = chaos_site()
    site.load.wait_changes(WARM_UP)
    began = time.monotonic()
    site.revoke_account()
    figures = Figures("account-token-revoked", fault_seconds=0.0)
    site.load.wait_changes(AFTER)
    figures.fault_seconds = time.monotonic() - began
    figures = site.converge(figures)
    assert figures.lost == 0, figures.notes
    assert figures.converge_seconds is not None, figures.notes
