"""`graylift doctor [APP] [--env E] [--repair] [--output json]`: hosts a release left out, muted, stopped or on
another version, and with --repair put right. Exit 0: nothing wrong (or all repaired); 1: problems left."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from graylift.cli.common import ConfigOpt, MaybeEnvOpt, Output, OutputOpt, guarded, local_service, run_async
from graylift.cli.output import console, emit_json, line
from graylift.core.doctor import Repair

if TYPE_CHECKING:
    from graylift.service import Finding


def doctor(app_name: Annotated[str | None, typer.Argument(metavar="APP", help="Only this app.")] = None,
           env: MaybeEnvOpt = None,
           repair: Annotated[bool, typer.Option("--repair", help="Put each host right through the engine's own "
                                                "steps (never one a live release drives).")] = False,
           output: OutputOpt = Output.text, config: ConfigOpt = None) -> None:
    """Find hosts a release left drained, out of a registry, muted, stopped or on a version its record does not
    say (the journal and a read-only survey); --repair puts them right."""

    def body() -> list[Finding]:
        gl = local_service(config, "doctor reads the hosts themselves")
        return run_async(gl.doctor(app_name, env, repair=repair))

    findings = guarded(body)
    if output is Output.json:
        emit_json([f.to_json() for f in findings])
    else:
        render(findings, repair=repair)
    left = [f for f in findings if not f.repaired]
    raise typer.Exit(1 if left else 0)


def render(findings: list[Finding], *, repair: bool) -> None:
    if not findings:
        console.print("doctor: every host is as its record says: in traffic, unmuted, serving")
        return
    for f in findings:
        d = f.diagnosis
        console.print(line((d.host, "bold"), f" ({f.app}, {f.env}): {'; '.join(d.problems)}"))
        for evidence in d.evidence:
            console.print(f"    {evidence}")
        if repair:
            said = ("repaired", "green") if f.repaired else ("not repaired", "red")
            console.print(line("    ", said, f": {f.outcome}"))
        elif d.repair is Repair.REFUSED:
            console.print(f"    --repair will not touch it: {d.advice}")
        elif d.repair is Repair.CLEAR:
            console.print("    --repair will: forget the needs-attention mark")
        else:
            steps = ", ".join(s.value for s in d.steps)
            console.print(f"    --repair will: {steps} ({d.advice})" if steps and d.advice else
                          f"    --repair will: {steps or d.advice}")
    fixed = sum(1 for f in findings if f.repaired)
    tail = f"; {fixed} repaired" if repair else "; `graylift doctor --repair` puts them right"
    console.print(f"doctor: {len(findings)} host(s) not as they should be{tail}")
