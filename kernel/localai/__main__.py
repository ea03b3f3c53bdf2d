"""``python -m localai`` runs the ``local-ai`` CLI."""

from .cli import main

main()
