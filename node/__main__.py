"""``python -m node`` is the ``errmesh`` command."""

from node.cli import main

main()
