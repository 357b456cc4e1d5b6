"""The front door: the ``refquant`` command and its subcommands (refquant.cli.commands), above the judge
(refquant.backends) and the interpreter (refquant). Nothing below imports this package."""

from .commands import main

__all__ = ["main"]
