from __future__ import annotations

from pallet.cli.main import entry

entry()
