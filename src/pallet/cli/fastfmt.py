"""A help formatter with a fixed width: argparse builds one per ``add_argument`` (to check the
metavar), and the default asks the terminal its size each time (``shutil.get_terminal_size``);
for ``run``'s ~45 flags that was a measurable part of ``pallet run``'s start-up."""
from __future__ import annotations

import argparse


class FastFormatter(argparse.HelpFormatter):
    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position, width or 100)
