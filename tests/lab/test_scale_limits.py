"""What a big lab needs from the machine: interface names that fit, the shared ARP table raised for it and put
back as found when the last big lab goes down (two big labs at once share the raise)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator

import pytest

from graylift.errors import GrayliftError
from graylift.lab import fleet, naming


def test_a_thousand_hosts_fit_a_seven_letter_lab_name() -> None:
    assert naming.check_host_count(1000, "big1000") == 1000
    assert len(naming.host_veth("big1000", 1000)) == naming.MAX_LINK_NAME
    with pytest.raises(GrayliftError, match=r"too long for 1000 hosts .* use at most 7 characters"):
        naming.check_host_count(1000, "scale100")
    assert naming.check_host_count(999, "scale100") == 999
    with pytest.raises(GrayliftError, match="1 to 1000 hosts, not 1001"):
        naming.check_host_count(1001, "big")
    assert naming.host_address(0, 1000) == "10.213.3.250"
    assert ipaddress.IPv4Address(naming.host_address(5, 1000)) in naming.slot_network(5)  # inside the slot's /20


@pytest.fixture
def as_found() -> Iterator[dict[str, int]]:
    if os.geteuid() != 0:
        pytest.skip("the ARP table's limits are machine-wide: root only")
    found = {key: int(fleet._neigh_path(key).read_text()) for key in fleet.NEIGH_SYSCTLS}
    yield found
    for key, value in found.items():  # whatever the test did
        fleet._neigh_path(key).write_text(f"{value}\n")
    fleet.NEIGH_RECORD.unlink(missing_ok=True)


@pytest.mark.root
def test_the_arp_table_is_raised_for_big_labs_and_put_back_after_the_last(as_found: dict[str, int]) -> None:
    if fleet.NEIGH_RECORD.exists():
        pytest.skip("a big lab is up on this machine")
    with fleet.slot_lock():
        fleet.raise_neighbour_table("small", fleet.BIG_LAB)  # a small lab changes nothing
    assert not fleet.NEIGH_RECORD.exists()
    with fleet.slot_lock():
        fleet.raise_neighbour_table("bigone", 1000)
        fleet.raise_neighbour_table("bigtwo", 600)
    now = [int(fleet._neigh_path(key).read_text()) for key in fleet.NEIGH_SYSCTLS]
    assert now == [max(a, b) for a, b in zip(as_found.values(), fleet.BIG_NEIGH_TABLE, strict=True)]
    with fleet.slot_lock():
        fleet.restore_neighbour_table("bigone")
    assert [int(fleet._neigh_path(key).read_text()) for key in fleet.NEIGH_SYSCTLS] == now  # bigtwo is still up
    with fleet.slot_lock():
        fleet.restore_neighbour_table("bigtwo")
    assert {key: int(fleet._neigh_path(key).read_text()) for key in fleet.NEIGH_SYSCTLS} == as_found
    assert not fleet.NEIGH_RECORD.exists()
