"""``herald directory``: import, sync and show people."""

from __future__ import annotations

import typer

directory_app = typer.Typer(help="People and audiences.", no_args_is_help=True)
