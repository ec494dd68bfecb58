"""Names and addresses of a lab, derived from its short name and a host index. Pure functions.

A lab owns a /20 inside the 10.213.0.0/16 test subnet ("slot" 0..15). Host ``i`` (1-based) gets
``10.213.(16*slot + (i-1) // 250).((i-1) % 250 + 1)``; the bridge takes ``.254`` of the slot's first /24.
Interface names stay within Linux's 15 characters: ``gl-<name>-br`` and ``gl-<name>-<i>``
(name up to 8 characters with up to 999 hosts, up to 7 with 1000). One bridge holds at most 1023 ports.
"""

from __future__ import annotations

import ipaddress
import re
import zlib

from graylift.errors import GrayliftError

LAB_NAME = re.compile(r"^[a-z0-9]{1,8}$")
MAX_HOSTS = 1000
MAX_LINK_NAME = 15  # Linux's IFNAMSIZ - 1
SLOTS = 16
HOSTS_PER_OCTET = 250


def check_lab_name(name: str) -> str:
    if not LAB_NAME.match(name):
        raise GrayliftError(f"lab name {name!r} is not valid: use 1-8 lower-case letters or digits "
                            "(e.g. 'lab')")
    return name


def check_host_count(count: int, name: str = "lab") -> int:
    if not 1 <= count <= MAX_HOSTS:
        raise GrayliftError(f"a lab holds 1 to {MAX_HOSTS} hosts, not {count}")
    if len(host_veth(name, count)) > MAX_LINK_NAME:
        longest = MAX_LINK_NAME - len(host_veth("", count))
        raise GrayliftError(f"lab name {name!r} is too long for {count} hosts (interface names are at most "
                            f"{MAX_LINK_NAME} characters): use at most {longest} characters")
    return count


def preferred_slot(name: str) -> int:
    """Slot 0 for the default lab, a stable hash of the name otherwise."""
    return 0 if name == "lab" else zlib.crc32(name.encode()) % SLOTS


def slot_network(slot: int) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(f"10.213.{16 * slot}.0/20")


def bridge_address(slot: int) -> str:
    return f"10.213.{16 * slot}.254"


def host_address(slot: int, index: int) -> str:
    offset = index - 1
    return f"10.213.{16 * slot + offset // HOSTS_PER_OCTET}.{offset % HOSTS_PER_OCTET + 1}"


def bridge_name(name: str) -> str:
    return f"gl-{name}-br"


def link_prefix(name: str) -> str:
    """Prefix shared by the lab's bridge, veths and netns names (and by nothing of another lab)."""
    return f"gl-{name}-"


def host_netns(name: str, index: int) -> str:
    return f"gl-{name}-{index}"


def host_veth(name: str, index: int) -> str:
    return f"gl-{name}-{index}"


def host_name(prefix: str, index: int, count: int) -> str:
    """``pyapp-01``; three digits once the lab has 100 hosts or more."""
    width = max(2, len(str(count)))
    return f"{prefix}-{index:0{width}d}"


def group_for(index: int, beta_count: int = 1) -> str:
    return "beta" if index <= beta_count else "prod"


def zone_for(index: int) -> str:
    return "abc"[(index - 1) % 3]
