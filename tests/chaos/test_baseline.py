"""No fault: the office day converges, every acknowledged change reaches the PBX."""

from __future__ import annotations

import pytest

from tests.chaos.conftest import SiteFactory
from tests.chaos.site import Figures

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(180)]


def test_office_day_without_faults_converges(chaos_site: SiteFactory) -> None:
    site = chaos_site()
    site.load.wait_changes(100)
    figures = site.converge(Figures("baseline"))
    assert figures.converge_seconds is not None, figures.notes
    assert figures.lost == 0
