"""The ``herald`` command line: the typer app in :mod:`~bot.cli.app`, one module per command group."""
