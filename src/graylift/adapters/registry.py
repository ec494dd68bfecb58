"""The backends of each port, looked up by their config ``type``.

A backend is one module: its config model (a section with ``type: Literal["<name>"]``), the adapter, and
a ``from_config(model, build)`` that makes the adapter from a validated entry (reading its secrets, taking
the release's SSH connector or hosts when it needs them), ending with one line::

    BACKEND = Backend(EtcdTraffic, EtcdSwitch.from_config)

Each port package lists its modules' backends in one :class:`Registry` (``adapters/traffic/__init__.py``:
``TRAFFIC``; ``MONITORING``; ``INVENTORY``). The config's discriminated union of a list of entries is
``registry.union`` (its members in that order: the order "known types" are named in errors), and
``graylift.wiring`` builds an adapter with ``registry.build(entry, Build(...))``: no chain of isinstance.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar, Union, get_args

from pydantic import Field

from graylift.core.model import Host
from graylift.errors import ConfigError
from graylift.schema import Section

if TYPE_CHECKING:
    from graylift.ports import Transport
    from graylift.store import Store

A = TypeVar("A")
A_co = TypeVar("A_co", covariant=True)
Connect = Callable[[Host], Awaitable["Transport"]]


def secret(variable: str | None, field: str) -> str | None:
    """The secret held by the environment variable a ``*_env`` field names (None when the field is unset).

    Read when an adapter is built, never stored: the release's config snapshot holds only the name.
    """
    if variable is None:
        return None
    value = os.environ.get(variable, "")
    if not value:
        raise ConfigError(f"the environment variable {variable} is not set or empty; export {variable}=<secret> "
                          "in the environment graylift runs in", field=field)
    return value


@dataclass(frozen=True)
class Build:
    """What a backend's ``from_config`` may use besides its entry; ``where`` is the entry's place in the app
    config (``traffic[2]``, ``inventory``), which every ConfigError it raises names."""

    where: str
    app: str = ""
    connect: Connect | None = None  # the release's SSH connector (nginx lb_host, command run_on: host)
    hosts: Sequence[Host] | None = None  # the release's hosts (nginx seed: true)
    store: Store | None = None  # graylift's database (the built-in inventory)

    def secret(self, variable: str | None, field: str) -> str | None:
        """The secret the entry's ``field`` names (e.g. ``password_env``); a ConfigError naming the field
        and the variable when that is unset or empty."""
        return secret(variable, f"{self.where}.{field}")

    def fail(self, message: str, field: str) -> ConfigError:
        return ConfigError(message, field=f"{self.where}.{field}")


@dataclass(frozen=True)
class Backend(Generic[A_co]):
    """One backend: its config model and the function that makes its adapter from a validated entry."""

    model: type[Section]
    build: Callable[[Any, Build], A_co]

    @property
    def type(self) -> str:
        """The model's ``type`` tag."""
        (tag,) = get_args(self.model.model_fields["type"].annotation)
        return str(tag)


class Registry(Generic[A]):
    """The backends of one port, by ``type``."""

    def __init__(self, backends: Sequence[Backend[A]]) -> None:
        self.backends = {backend.type: backend for backend in backends}
        self._by_model = {backend.model: backend for backend in backends}

    @property
    def types(self) -> list[str]:
        return list(self.backends)

    @property
    def union(self) -> Any:
        """The discriminated union of the models, for a config field (pydantic picks the member by ``type``)."""
        models = tuple(backend.model for backend in self.backends.values())
        return Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007

    def build(self, entry: Section, build: Build) -> A:
        """The adapter of a validated entry (a model of this registry)."""
        return self._by_model[type(entry)].build(entry, build)
