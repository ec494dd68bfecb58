"""Every error graylift raises on purpose.

Adapters translate their libraries' exceptions into these once, at the boundary
(``raise HostUnreachable(...) from exc``); the CLI and API turn them into messages
and exit codes. Nothing else should leak to a user.

    GrayliftError
    ├── ConfigError            a config file, field or value is wrong (names file, line, field)
    ├── InventoryError         the CMDB could not give a complete host list
    ├── PlanError              a plan breaks a rule (e.g. a batch takes >= 50% of the hosts)
    ├── ReleaseConflict        another release of the same app/env is active
    ├── ReleaseNotFound
    ├── StateError             an illegal state transition (e.g. promote a finished release)
    │   └── LeaseLost          another controller holds the release's lease: this one must stop
    ├── ArtifactError          package missing, checksum mismatch, bad name
    ├── TransportError         talking to a host failed
    │   ├── HostUnreachable
    │   ├── CommandTimeout
    │   └── RemoteCommandFailed  (command, exit code, last lines of output)
    ├── TrafficError           a load balancer / registry refused or did not verify
    │   └── BackendsFailed     some backends of a step failed, the others worked (each one named)
    ├── SilencerError          the monitoring system refused a silence
    ├── HealthCheckFailed
    └── StoreError             the state database failed
"""

from __future__ import annotations


class GrayliftError(Exception):
    """Base of every error graylift raises on purpose."""


class ConfigError(GrayliftError):
    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        where = file or ""
        if line is not None:
            where += f":{line}"
        if field:
            where += f" ({field})" if where else field
        super().__init__(f"{where}: {message}" if where else message)
        self.file, self.line, self.field = file, line, field


class InventoryError(GrayliftError):
    pass


class PlanError(GrayliftError):
    pass


class OutsideWindow(PlanError):
    """A release asked for outside its app's release windows."""


class ReleaseConflict(GrayliftError):
    pass


class ReleaseNotFound(GrayliftError):
    pass


class StateError(GrayliftError):
    pass


class LeaseLost(StateError):
    """This controller no longer holds the release's lease (another took over, or its own deadline
    passed): it stops at once, without touching another host."""


class PreflightFailed(PlanError):
    """The read-only checks before a release found problems; nothing was touched."""

    def __init__(self, problems: list[str]) -> None:
        head = f"preflight found {len(problems)} problem(s); no host was touched:"
        super().__init__("\n".join([head, *(f"  {p}" for p in problems)]))
        self.problems = problems


class ArtifactError(GrayliftError):
    pass


class TransportError(GrayliftError):
    """Talking to a host failed; ``host`` names it."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(f"{host}: {message}")
        self.host = host


class HostUnreachable(TransportError):
    pass


class CommandTimeout(TransportError):
    def __init__(self, host: str, command: str, timeout: float) -> None:
        super().__init__(host, f"command timed out after {timeout:g}s: {command}")
        self.command, self.timeout = command, timeout


class RemoteCommandFailed(TransportError):
    """A command exited non-zero; keeps the command, exit code and last lines of output."""

    def __init__(self, host: str, command: str, exit_status: int | None, output: str) -> None:
        tail = "\n".join(output.strip().splitlines()[-10:])
        msg = f"command failed (exit {exit_status}): {command}"
        if tail:
            msg += "\n" + "\n".join("    " + line for line in tail.splitlines())
        super().__init__(host, msg)
        self.command, self.exit_status, self.output = command, exit_status, output


class TrafficError(GrayliftError):
    pass


class BackendsFailed(TrafficError):
    """A step tried every backend (load balancers, registries, silencers); these failed, the rest worked."""

    def __init__(self, host: str, action: str, failed: dict[str, str], ok: list[str]) -> None:
        names = ", ".join(failed)
        worked = f"; done in {', '.join(ok)}" if ok else ""
        reasons = "; ".join(f"{name}: {error}" for name, error in failed.items())
        super().__init__(f"{host}: {action} failed in {names}{worked} ({reasons})")
        self.failed, self.ok = failed, ok


class SilencerError(GrayliftError):
    pass


class HealthCheckFailed(GrayliftError):
    pass


class StoreError(GrayliftError):
    pass
