"""Issue 10's performance targets as report rows: what was measured, and whether it is met.

A target that could not be measured in a run (Triton not installed, or skipped in a smoke
run) still gets its row, saying why, so a report always has the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    # The measured value in words, or why nothing was measured.
    measured: str
    # None: not measured.
    met: bool | None
    # For a missed target, the reason in this run's own numbers (CPU per request, budgets).
    why: str = ""

    @property
    def result(self) -> str:
        if self.met is None:
            return "not measured"
        return "met" if self.met else "**missed**"


def not_measured(name: str, reason: str) -> Target:
    return Target(name, f"not measured: {reason}", None)


def target_table(targets: list[Target], why: bool = False) -> list[str]:
    """A Markdown table: target, measured, result; with ``why``, a column for the reasons."""
    if not why:
        lines = ["| target | measured | result |", "|---|---|---|"]
        return lines + [f"| {t.name} | {t.measured} | {t.result} |" for t in targets]
    lines = ["| target | measured | result | why (this run's numbers) |", "|---|---|---|---|"]
    lines += [f"| {t.name} | {t.measured} | {t.result} | {t.why or '-'} |" for t in targets]
    return lines
