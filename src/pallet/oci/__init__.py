"""Pure OCI/Docker data types: no I/O. Frozen dataclasses and their (de)serialisers."""
from __future__ import annotations
