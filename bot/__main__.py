"""``python -m bot``: the ``herald`` command line."""

import gc

gc.disable()  # until the command line is imported: bot.cli.app.main turns it back on
from bot.cli.app import main  # noqa: E402

main()
