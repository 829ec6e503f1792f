"""The ``pallet`` command line: an argparse tree, one module per verb, loaded lazily."""
from __future__ import annotations
