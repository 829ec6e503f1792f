"""A tiny registry that serves one image and lies in the ways a test asks: wrong manifest
digest, oversized manifest, unsupported media type, corrupt or truncated blob, connection dropped
mid-blob (once or always), 429/503 before answering. Real HTTP on loopback (http.server)."""
from __future__ import annotations

import gzip
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def _d(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


class LyingRegistry:
    def __init__(self, layer_tar: Path) -> None:
        tar = layer_tar.read_bytes()
        self.layer = gzip.compress(tar, 1)
        self.config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                                  "rootfs": {"type": "layers", "diff_ids": [_d(tar)]}}).encode()
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "digest": _d(self.config), "size": len(self.config)},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "digest": _d(self.layer), "size": len(self.layer)}]}).encode()
        self.manifest_layer = _d(self.layer)
        self.mode = ""
        self.hits: dict[str, int] = {}
        self.pushed: dict[str, bytes] = {}  # digest or manifests/<ref> -> bytes
        self.uploads: dict[str, bytearray] = {}
        self.drops = 0
        reg = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                reg.handle(self)

            def do_HEAD(self) -> None:  # noqa: N802
                reg.handle(self)

            def do_POST(self) -> None:  # noqa: N802
                reg.upload(self)

            def do_PATCH(self) -> None:  # noqa: N802
                reg.upload(self)

            def do_PUT(self) -> None:  # noqa: N802
                reg.upload(self)

        class Storage(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                reg.storage_headers.append(dict(self.headers))
                dig = self.path.split("?")[0].rsplit("/", 1)[1]
                body = reg.layer if dig == _d(reg.layer) else reg.config
                reg._send(self, 200, body, "application/octet-stream")

        self.storage_headers: list[dict[str, str]] = []
        self.storage = ThreadingHTTPServer(("127.0.0.1", 0), Storage)
        self.storage.daemon_threads = True
        threading.Thread(target=self.storage.serve_forever, args=(0.05,), daemon=True).start()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str = "application/json",
              extra: dict[str, str] | None = None, length: int | None = None) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body) if length is None else length))
        for k, v in (extra or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?")[0]
        kind = "manifest" if "/manifests/" in path else "blob" if "/blobs/" in path else "other"
        n = self.hits[path] = self.hits.get(path, 0) + 1
        mode = self.mode
        if mode == "redirect" and h.headers.get("Authorization") != "Basic dTpw":  # u:p
            return self._send(h, 401, b'{"errors":[{"code":"UNAUTHORIZED","message":"login"}]}',
                              extra={"WWW-Authenticate": 'Basic realm="liar"'})
        if path == "/v2/":
            return self._send(h, 200, b"{}")
        if mode == "429" and n == 1 and kind == "manifest":
            return self._send(h, 429, b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}',
                              extra={"Retry-After": "0"})
        if mode == "5xx-once" and n == 1 and kind in ("manifest", "blob"):  # a proxy hiccup, no Retry-After
            return self._send(h, 502 if kind == "manifest" else 500, b"<html>bad gateway</html>")
        if mode == "503-always":
            return self._send(h, 503, b'{"errors":[{"code":"UNAVAILABLE","message":"down"}]}')
        if kind == "manifest":
            body = self.manifest
            ctype = "application/vnd.docker.distribution.manifest.v2+json"
            dcd = _d(body)
            if mode == "digest-lie":
                dcd = _d(b"something else")
            elif mode == "big-manifest":
                body = json.dumps({"schemaVersion": 2, "pad": "x" * (5 << 20)}).encode()
                dcd = _d(body)
            elif mode == "bad-mediatype":
                body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.example.thing+json",
                                   "config": {}, "layers": []}).encode()
                ctype = "application/vnd.example.thing+json"
                dcd = _d(body)
            return self._send(h, 200, body, ctype, {"Docker-Content-Digest": dcd})
        if kind == "blob":
            dig = path.rsplit("/", 1)[1]
            if mode == "redirect" and h.command == "GET":  # object storage with a signed URL
                port = self.storage.server_address[1]
                return self._send(h, 307, b"", extra={"Location": f"http://127.0.0.1:{port}/s/{dig}?sig=abc"})
            if dig == _d(self.config):
                return self._send(h, 200, self.config, "application/octet-stream")
            if dig in self.pushed:
                return self._send(h, 200, self.pushed[dig], "application/octet-stream")
            if mode == "upload-drop-once" and h.command == "HEAD":  # pushing elsewhere: nothing there yet
                return self._send(h, 404, b"")
            if dig != _d(self.layer):
                return self._send(h, 404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}')
            data = self.layer
            start = 0
            rng = h.headers.get("Range", "")
            if rng.startswith("bytes=") and mode == "drop-once":
                start = int(rng[6:].split("-")[0])
            if mode == "corrupt-blob":
                data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
            if mode in ("drop-always", "drop-once") and (mode == "drop-always" or n == 1):
                # announce the full length, send half, then drop the connection
                h.send_response(200)
                h.send_header("Content-Length", str(len(data)))
                h.end_headers()
                h.wfile.write(data[: len(data) // 2])
                h.wfile.flush()
                h.close_connection = True
                return None
            if mode == "slow":  # trickle the blob: 0.15 s per 16 KiB (~10 s for the layer), so a test can interrupt mid-blob
                import time

                h.send_response(200)
                h.send_header("Content-Length", str(len(data)))
                h.end_headers()
                try:
                    for i in range(0, len(data), 16384):
                        h.wfile.write(data[i:i + 16384])
                        h.wfile.flush()
                        time.sleep(0.15)
                except OSError:
                    pass
                return None
            if start:
                h.send_response(206)
                h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                h.send_header("Content-Length", str(len(data) - start))
                h.end_headers()
                h.wfile.write(data[start:])
                return None
            return self._send(h, 200, data, "application/octet-stream")
        return self._send(h, 404, b"{}")

    def _body(self, h: BaseHTTPRequestHandler) -> bytes | None:
        """The request body (Content-Length or chunked); None when the test drops it midway."""
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                n = int(h.rfile.readline().split(b";")[0], 16)
                if n == 0:
                    h.rfile.readline()
                    break
                out += h.rfile.read(n)
                h.rfile.readline()
                if self.mode == "upload-drop-once" and self.drops == 0 and len(out) > 1000:
                    self.drops += 1
                    h.close_connection = True
                    return None
            return bytes(out)
        n = int(h.headers.get("Content-Length", "0") or 0)
        if self.mode == "upload-drop-once" and self.drops == 0 and n > 1000:
            h.rfile.read(n // 2)
            self.drops += 1
            h.close_connection = True
            return None
        return h.rfile.read(n)

    def upload(self, h: BaseHTTPRequestHandler) -> None:
        """Just enough of the push endpoints: POST/PATCH/PUT uploads, PUT manifests."""
        import urllib.parse

        parts = urllib.parse.urlsplit(h.path)
        body = self._body(h)
        if body is None:
            return None  # connection dropped mid-body
        if "/manifests/" in parts.path:
            self.pushed["manifests/" + parts.path.rsplit("/", 1)[1]] = body
            return self._send(h, 201, b"", extra={"Docker-Content-Digest": _d(body)})
        if h.command == "POST":
            uid = f"u{len(self.uploads)}"
            self.uploads[uid] = bytearray()
            return self._send(h, 202, b"", extra={"Location": f"/v2/lie/img/blobs/uploads/{uid}"})
        uid = parts.path.rsplit("/", 1)[1]
        buf = self.uploads.setdefault(uid, bytearray())
        buf += body
        if h.command == "PATCH":
            return self._send(h, 202, b"", extra={"Location": f"/v2/lie/img/blobs/uploads/{uid}"})
        dig = urllib.parse.parse_qs(parts.query)["digest"][0]
        if _d(bytes(buf)) != dig:
            return self._send(h, 400, b'{"errors":[{"code":"DIGEST_INVALID","message":"digest invalid"}]}')
        self.pushed[dig] = bytes(buf)
        return self._send(h, 201, b"")

    def close(self) -> None:
        for srv in (self.server, self.storage):
            srv.shutdown()
            srv.server_close()
