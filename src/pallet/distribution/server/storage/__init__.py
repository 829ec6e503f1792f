"""Storage drivers for the registry, registered by name in one place."""
from __future__ import annotations

from pallet.distribution.server.storage.base import StorageDriver, UploadWriter
from pallet.distribution.server.storage.filesystem import FilesystemDriver

DRIVERS: dict[str, type[FilesystemDriver]] = {"filesystem": FilesystemDriver}


def open_driver(name: str, **params: str) -> StorageDriver:
    try:
        cls = DRIVERS[name]
    except KeyError:
        from pallet.errors import InvalidArgument

        raise InvalidArgument(f"unknown registry storage driver {name!r} (have: {', '.join(DRIVERS)})") from None
    return cls(**params)


__all__ = ["StorageDriver", "UploadWriter", "FilesystemDriver", "DRIVERS", "open_driver"]
