"""One exception tree for all of pallet, classified by behaviour.

Two borders translate it: the CLI maps classes to exit codes (``cli/main.py``), the API server
maps them to HTTP statuses (``api/``). Everything else raises these, never bare ``Exception``.
Messages are one line and name the object that was wrong.
"""
from __future__ import annotations

import errno as _errno
import os


class PalletError(Exception):
    """Base class. ``exit_code`` is the CLI's exit status (docker uses 125 for engine errors)."""

    exit_code = 125
    http_status = 500


class InvalidArgument(PalletError):
    """The user gave a value pallet cannot accept (bad flag, bad reference, bad file)."""

    http_status = 400


class NotFound(PalletError):
    """A named object (image, container, blob, volume, network) does not exist."""

    http_status = 404


class Conflict(PalletError):
    """The object exists, is in use, or is in the wrong state for the operation."""

    http_status = 409


class Unauthorized(PalletError):
    """Credentials missing or wrong."""

    http_status = 401


class Forbidden(PalletError):
    """Credentials valid but not allowed."""

    http_status = 403


class Unavailable(PalletError):
    """A peer (registry, runtime binary, kernel feature) cannot be reached or is missing."""

    http_status = 503


class DataCorruption(PalletError):
    """Content failed verification: digest or size mismatch, truncated stream, bad archive."""

    http_status = 400


class NotImplementedFeature(PalletError):
    """The request is valid but pallet does not support it (yet)."""

    http_status = 501


class CommandNotFound(PalletError):
    """The container's command does not exist (docker exits 127)."""

    exit_code = 127
    http_status = 400


class CommandNotExecutable(PalletError):
    """The container's command exists but cannot be invoked (docker exits 126)."""

    exit_code = 126
    http_status = 400


class OSFailure(PalletError):
    """A kernel call failed. Keeps errno, names the syscall and the object.

    ``str()`` reads like ``mount overlay on /var/lib/pallet/x: EINVAL (Invalid argument)``.
    """

    def __init__(self, err: int, syscall: str, obj: str = "") -> None:
        self.errno = err
        self.syscall = syscall
        self.obj = obj
        name = _errno.errorcode.get(err, str(err))
        where = f" {obj}" if obj else ""
        super().__init__(f"{syscall}{where}: {name} ({os.strerror(err)})")

    @classmethod
    def from_oserror(cls, exc: OSError, syscall: str, obj: str = "") -> OSFailure:
        return cls(exc.errno or 0, syscall, obj or (exc.filename or ""))
