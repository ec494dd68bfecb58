"""Every error graylift raises on purpose.

Adapters translate their libraries' exceptions into these once, at the boundary
(``raise HostUnreachable(...) from exc``); the CLI and API turn them into messages
and exit codes. Nothing else should leak to a user.

Each class carries the CLI's exit code (:data:`EXIT_CODES` is the documented table):
1 the release failed (the default), 2 usage or config error, 3 refused by a rule,
4 the controller or the state database is unreachable.

    GrayliftError
    ├── UsageError          2  a command line that cannot mean anything (e.g. `promote abc`)
    │   └── ReleaseNotFound 2  no release has that id (or the app/env has none)
    ├── ConfigError         2  a config file, field or value is wrong (names file, line, field)
    ├── InventoryError      2  the CMDB could not give a complete host list
    ├── PlanError           3  a plan breaks a rule (e.g. a batch takes >= 50% of the hosts)
    │   └── PreflightFailed 3
    ├── StateError          3  an illegal state transition (e.g. promote a finished release)
    │   ├── ReleaseConflict 3  another release of the same app/env is active
    │   └── LeaseLost       1  another controller holds the release's lease: this one must stop
    ├── ArtifactError          package missing, checksum mismatch, bad name
    ├── TransportError         talking to a host failed
    │   ├── HostUnreachable
    │   ├── CommandTimeout
    │   └── RemoteCommandFailed  (command, exit code, last lines of output)
    ├── TrafficError           a load balancer / registry refused or did not verify
    │   └── BackendsFailed     some backends of a step failed, the others worked (each one named)
    ├── SilencerError          the monitoring system refused a silence
    ├── MetricsError           the metrics source (Prometheus) failed a query (never read as a canary failure)
    ├── HealthCheckFailed
    ├── StoreError             the state database failed
    │   └── StoreUnreachable 4 it cannot be opened or reached
    └── ControllerUnreachable 4 the graylift server (``--server``) cannot be reached
"""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_CODES = {
    EXIT_OK: "ok (for `release --wait` and friends: the release succeeded)",
    EXIT_FAILED: "the release failed, was rolled back or aborted (or another run-time failure)",
    EXIT_USAGE: "usage or config error: a bad option, argument, file or field; an unknown app or release",
    EXIT_REFUSED: "refused by a rule: the 50% cap, a preflight problem, an approval, a freeze window, "
                  "a request the release's state does not allow, another active release",
    EXIT_UNREACHABLE: "the controller (--server) or the state database is unreachable",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); a release stays where it is, `graylift resume` goes on",
}


class GrayliftError(Exception):
    """Base of every error graylift raises on purpose."""

    exit_code = EXIT_FAILED


class UsageError(GrayliftError):
    exit_code = EXIT_USAGE


class ConfigError(GrayliftError):
    exit_code = EXIT_USAGE

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
    exit_code = EXIT_USAGE


class PlanError(GrayliftError):
    exit_code = EXIT_REFUSED


class OutsideWindow(PlanError):
    """A release asked for outside its app's release windows."""


class ReleaseNotFound(UsageError):
    """No release has that id, or the app/env has none."""


class StateError(GrayliftError):
    exit_code = EXIT_REFUSED


class ReleaseConflict(StateError):
    """Another release of the same app/env is active: one at a time."""


class LeaseLost(StateError):
    """This controller no longer holds the release's lease (another took over, or its own deadline
    passed): it stops at once, without touching another host."""

    exit_code = EXIT_FAILED


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


class MetricsError(GrayliftError):
    pass


class HealthCheckFailed(GrayliftError):
    pass


class StoreError(GrayliftError):
    pass


class StoreUnreachable(StoreError):
    """The state database cannot be opened or reached (a missing directory, a server down, no permission)."""

    exit_code = EXIT_UNREACHABLE


class ControllerUnreachable(GrayliftError):
    """The graylift server named by ``--server`` / GRAYLIFT_SERVER does not answer."""

    exit_code = EXIT_UNREACHABLE
