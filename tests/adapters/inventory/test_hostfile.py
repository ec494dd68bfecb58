"""Host files in the three formats, each error, and the built-in inventory over a real SQLite store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from graylift.adapters.inventory.builtin import BuiltinInventory, import_hosts_file
from graylift.adapters.inventory.hostfile import load_hosts_file
from graylift.core.model import Host
from graylift.errors import InventoryError
from graylift.store import Store

DATA = Path(__file__).parent / "data"


def summary(hosts: list[Host]) -> list[tuple[str, str, int, str, str, bool]]:
    return [(h.name, h.address, h.port, h.user, h.group, h.in_service) for h in hosts]


def test_graylift_yaml() -> None:
    hosts = load_hosts_file(DATA / "graylift.yaml")
    assert summary(hosts) == [
        ("web-1", "10.213.0.1", 22, "root", "canary", True),
        ("web-2", "10.213.0.2", 2222, "deploy", "default", True),
        ("web-3", "web-3.example.internal", 22, "root", "default", False),
    ]
    assert hosts[0].tags == {"zone": "a", "rack": "12"}
    assert hosts[1].zone == "b"


def test_ansible_ini_groups_vars_children_and_ranges() -> None:
    hosts = {h.name: h for h in load_hosts_file(DATA / "ansible_hosts")}
    assert sorted(hosts) == [
        "bastion.example.com",
        "web-01",
        "web-02.example.com",
        "web-03.example.com",
        "web-04.example.com",
    ]
    bastion = hosts["bastion.example.com"]
    assert summary([bastion]) == [
        ("bastion.example.com", "bastion.example.com", 2200, "ops", "default", True)
    ]
    assert bastion.tags == {"owner": "team a"}
    # web-01 is in [canary] and in [web] (a child of eu): web is the most specific group.
    web1 = hosts["web-01"]
    assert summary([web1]) == [("web-01", "10.213.0.1", 2222, "ops", "web", True)]
    # Ansible keeps the rest of a [group:vars] line, a '#' included.
    assert web1.tags == {"zone": "a", "tier": "front   # an inline comment", "region": "eu-west", "owner": "team a"}
    web3 = hosts["web-03.example.com"]
    assert summary([web3]) == [("web-03.example.com", "web-03.example.com", 2222, "deploy", "web", True)]
    assert web3.tags == {"tier": "front   # an inline comment", "region": "eu-west", "owner": "team a"}


def test_ansible_yaml_inherits_vars() -> None:
    hosts = {h.name: h for h in load_hosts_file(DATA / "ansible.yml")}
    assert summary(list(hosts.values())) == [
        ("jump-1", "10.213.0.50", 22, "ops", "default", True),
        ("app-1", "10.213.0.1", 2222, "ops", "canary", True),
        ("app-2", "10.213.0.2", 2222, "ops", "fleet", True),
        ("app-3", "10.213.0.3", 22, "ops", "fleet", False),
    ]
    assert hosts["app-1"].tags == {"region": "eu", "zone": "a"}
    assert hosts["app-2"].tags == {"region": "eu", "zone": "b", "weight": "3", "debug": "false"}


def test_format_is_detected_from_content_not_name(tmp_path: Path) -> None:
    copy = tmp_path / "inventory.txt"
    shutil.copy(DATA / "ansible.yml", copy)
    assert len(load_hosts_file(copy)) == 4
    shutil.copy(DATA / "graylift.yaml", copy)
    assert len(load_hosts_file(copy)) == 3


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("yaml_missing_address.yaml", ":4: host 'web-2' has no 'address'"),
        ("yaml_duplicate.yaml", ":4: duplicate host name 'web-1' (first at "),
        ("yaml_bad_port.yaml", ":4: host 'web-1' field 'port': expected a port number 1-65535, got 'ssh'"),
        ("yaml_bad_name.yaml", ":2: host name 'web 1; rm -rf /' is not a plain name"),
        ("yaml_unknown_field.yaml", ":4: unknown field 'adress'"),
        ("yaml_broken.yaml", ":4: not valid YAML"),
        ("ini_missing_address.ini", ":3: host 'web-2' has no 'ansible_host' (set ansible_host=ADDRESS)"),
        ("ini_duplicate.ini", ":4: duplicate host name 'web-1' in group 'web'"),
        (
            "ini_bad_port.ini",
            ":3: host 'web-2' field 'ansible_port': expected a port number 1-65535, "
            "got 70000",
        ),
        ("ini_bad_name.ini", ":3: host name '-web' is not a plain name"),
        ("ini_broken.ini", ":3: unknown section kind 'bogus'"),
        ("ini_no_equals.ini", ":2: host 'web-1': expected key=value, got 'zone'"),
        (
            "ini_two_addresses.ini",
            ":5: host 'web-1' field 'ansible_host': '10.213.0.7' differs from '10.213.0.1'",
        ),
        (
            "ansible_bad_port.yml",
            ":5: host 'web-1' field 'ansible_port': expected a port number 1-65535, got 'twenty-two'",
        ),
        ("ansible_duplicate.yml", ":7: duplicate key 'web-1' (first at line 5)"),
        ("ansible_missing_address.yml", ":5: host 'web-1' has no 'ansible_host'"),
        ("ansible_cycle.yml", "groups form a cycle: a -> b -> a"),
        ("empty.yaml", ": no hosts in the file"),
        ("does-not-exist.yaml", ": no such file"),
    ],
)
def test_errors_name_file_line_and_field(fixture: str, expected: str) -> None:
    with pytest.raises(InventoryError) as info:
        load_hosts_file(DATA / fixture)
    message = str(info.value)
    assert message.startswith(str(DATA / fixture)), message
    assert expected in message, message
    assert "Traceback" not in message


def test_a_duplicate_names_both_places() -> None:
    with pytest.raises(InventoryError) as info:
        load_hosts_file(DATA / "yaml_duplicate.yaml")
    path = DATA / "yaml_duplicate.yaml"
    assert str(info.value) == f"{path}:4: duplicate host name 'web-1' (first at {path}:2)"


def test_binary_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hosts.bin"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InventoryError, match="not a UTF-8 text file"):
        load_hosts_file(path)


async def test_builtin_inventory_over_the_store(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'g.db'}") as store:
        inventory = BuiltinInventory(store)
        with pytest.raises(InventoryError) as info:
            await inventory.hosts("order-service", "prod")
        assert str(info.value) == (
            "no hosts for app order-service in env prod: import them with "
            "`graylift hosts import order-service FILE --env prod`"
        )
        imported = import_hosts_file(store, DATA / "graylift.yaml", "order-service", "prod")
        assert await inventory.hosts("order-service", "prod") == imported
        got = await inventory.hosts("order-service", "prod")
        assert [h.tags for h in got] == [h.tags for h in imported]
        import_hosts_file(store, DATA / "ansible.yml", "order-service", "prod")  # an import replaces
        assert [h.name for h in await inventory.hosts("order-service", "prod")] == [
            "app-1",
            "app-2",
            "app-3",
            "jump-1",
        ]
