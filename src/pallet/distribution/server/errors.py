"""Registry error codes and their HTTP statuses (OCI distribution spec v1.1, "Error Codes";
Docker Registry HTTP API v2 "Errors"). The body is always
``{"errors": [{"code", "message", "detail"}]}``.
"""
from __future__ import annotations

import json
from typing import Any

# code -> HTTP status (statuses follow distribution's errcode registrations)
STATUS: dict[str, int] = {
    "BLOB_UNKNOWN": 404,
    "BLOB_UPLOAD_INVALID": 400,
    "BLOB_UPLOAD_UNKNOWN": 404,
    "DIGEST_INVALID": 400,
    "MANIFEST_BLOB_UNKNOWN": 404,
    "MANIFEST_INVALID": 400,
    "MANIFEST_UNKNOWN": 404,
    "NAME_INVALID": 400,
    "NAME_UNKNOWN": 404,
    "SIZE_INVALID": 400,
    "UNAUTHORIZED": 401,
    "DENIED": 403,
    "UNSUPPORTED": 405,
    "TOOMANYREQUESTS": 429,
    "PAGINATION_NUMBER_INVALID": 400,
    "RANGE_INVALID": 416,
    "UNKNOWN": 500,
}
CODES = tuple(STATUS)


class RegistryError(Exception):
    """A request the registry refuses. ``status`` defaults to the code's registered status;
    ``headers`` are added to the response (e.g. ``WWW-Authenticate``, ``Range``)."""

    def __init__(self, code: str, message: str, *, status: int | None = None,
                 detail: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status if status is not None else STATUS.get(code, 400)
        self.detail = detail
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            err["detail"] = self.detail
        return json.dumps({"errors": [err]}).encode()


def blob_unknown(digest: str) -> RegistryError:
    return RegistryError("BLOB_UNKNOWN", "blob unknown to registry", detail={"digest": digest})


def manifest_unknown(ref: str) -> RegistryError:
    return RegistryError("MANIFEST_UNKNOWN", "manifest unknown", detail={"reference": ref})


def name_unknown(name: str) -> RegistryError:
    return RegistryError("NAME_UNKNOWN", "repository name not known to registry", detail={"name": name})


def upload_unknown(uuid: str) -> RegistryError:
    return RegistryError("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", detail={"uuid": uuid})


def digest_invalid(msg: str) -> RegistryError:
    return RegistryError("DIGEST_INVALID", msg)


def unsupported(msg: str = "the operation is unsupported") -> RegistryError:
    return RegistryError("UNSUPPORTED", msg)
