"""`herald demo` runs the whole job with no accounts: an announcement over email and SMS, and an alert
that nobody acknowledges, so the next tier is paged; then the report."""

from __future__ import annotations

import re


def test_demo_runs_end_to_end(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("demo", "--people", "80")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "directory: imported 80 people from a sample file" in out
    assert re.search(r"captured: 80 emails at the SMTP server, \d+ SMS at the Twilio stand-in", out)
    assert "[CRITICAL] [FIRING:1] SwitchDown" in out
    assert "[CRITICAL] [ESCALATED tier 1] [FIRING:1] SwitchDown" in out
    assert "SLA: 3 met, 0 missed of 3 finished (100.0%)" in out
