"""``herald serve`` and ``herald worker``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the long-running commands to ``app``."""
