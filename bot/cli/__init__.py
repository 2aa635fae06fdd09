"""The ``herald`` command line: the typer app in :mod:`~bot.cli.app`, one module per command group."""

import gc


def main() -> None:
    """``python -m bot``: import the command line with the garbage collector off, then run it.

    :func:`bot.cli.app.main` freezes what the imports built and turns the collector back on.
    """
    gc.disable()
    from bot.cli.app import main as run

    run()
