"""``python -m bot``: the ``herald`` command line."""

import gc


def main() -> None:
    """Import the command line with the garbage collector off, then run it.

    :func:`bot.cli.app.main` freezes what the imports built and turns the collector back on.
    """
    gc.disable()
    from bot.cli.app import main as run

    run()


if __name__ == "__main__":
    main()
