"""Sending a stored blob's bytes (distribution spec "Pulling blobs"; RFC 9110 ranges and
preconditions, as distribution's ``http.ServeContent`` does): ``ETag`` is the quoted digest on
every path, ``If-None-Match`` answers 304, ``If-Match`` 412, ``If-Range`` guards ``Range``, a
single byte range answers 206 (416 when it starts past the end; several ranges get the whole
blob, which RFC 9110 allows).

The bytes go one of two ways, chosen per connection by :func:`copy_wanted`:

- a peer on another host gets them with sendfile(2) (zero copy);
- a peer on this host (a loopback address, or our own address) gets them copied through the
  socket in 512 KiB writes by a sender thread (blocking on the socket, not on the event loop:
  the server's CPU per 256 MiB fell from 0.22 to 0.16 s and the client is refilled sooner);
  TLS connections, and local ones while all ``SENDERS`` threads are busy, get the same copies
  through the aiohttp transport.

Why copy to a local peer (measured, bench/RESULTS.md "Registry"): over loopback the kernel
hands the sender's socket buffers to the receiving socket as they are. Buffers built by
sendfile hold page-cache fragments that the receiver cannot coalesce (TcpExtTCPRcvCoalesce
~10 vs ~2,800 per 256 MiB blob), so the client gets up to 2.5x the segments and ACKs and
spends ~15% more CPU receiving: ``skopeo copy`` out of the registry was slower than out of
distribution (which writes 32 KiB copies) although the server itself was twice as fast.
Copying costs the server ~0.05 s of CPU per 256 MiB and saves the client more. Under TLS
sendfile cannot be used at all.

Reads never block the event loop on a cold disk: on the transport path ``preadv(RWF_NOWAIT)``
takes what the page cache holds and anything else is read on a worker thread; sender threads
read for themselves.
"""
from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import re
import select
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from pallet.distribution.server import keys

CHUNK = 512 * 1024  # 256 KiB-1 MiB measured alike; 64 KiB costs the server ~2x the CPU
SENDERS = 32  # sending threads per worker; more local downloads at once use the event loop
STALL = 60.0  # seconds a local client may take no bytes before the connection is dropped
_NOWAIT = getattr(os, "RWF_NOWAIT", 0)
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")


def _ip(addr: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not isinstance(addr, tuple) or not addr:
        return None
    try:
        ip = ipaddress.ip_address(str(addr[0]).split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_local(peername: object, sockname: object) -> bool:
    """True when the client runs on this host: a loopback peer, or a peer whose address is the
    one it connected to (traffic the kernel routes through the loopback device). Arguments are
    the socket's ``getpeername()`` / ``getsockname()`` tuples."""
    peer = _ip(peername)
    if peer is None:
        return False
    return peer.is_loopback or peer == _ip(sockname)


def copy_wanted(request: web.BaseRequest) -> bool:
    """Whether the body should be copied rather than sendfile'd (see the module docstring)."""
    t = request.transport
    if t is None:
        return True
    if t.get_extra_info("sslcontext") is not None:
        return True
    return is_local(t.get_extra_info("peername"), t.get_extra_info("sockname"))


def _etags_match(header: str, etag: str) -> bool:
    """Weak comparison (RFC 9110 13.1.2) of ``etag`` against an If-(None-)Match list."""
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or etag in tags or f"W/{etag}" in tags


def byte_range(header: str | None, size: int) -> tuple[int, int] | None | bool:
    """The inclusive (first, last) of a single ``bytes=`` range; None to send the whole blob
    (no range, a malformed one, or several); False when it cannot be satisfied."""
    if not header:
        return None
    m = _RANGE.match(header)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):  # suffix: the last N bytes
        n = int(m.group(2))
        return (max(size - n, 0), size - 1) if n > 0 and size > 0 else False
    first = int(m.group(1))
    if m.group(2) and int(m.group(2)) < first:
        return None  # syntactically invalid: ignored (RFC 9110 14.1.1)
    if first >= size:
        return False
    return first, min(int(m.group(2)), size - 1) if m.group(2) else size - 1


def _read_blocking(fd: int, buf: memoryview, offset: int) -> int:
    return os.preadv(fd, [buf], offset)


class _Reader:
    """Reads of a file into a buffer: from the page cache without blocking when it can
    (``RWF_NOWAIT``), else on a worker thread."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.nowait = bool(_NOWAIT)

    async def readinto(self, buf: memoryview, offset: int) -> int:
        if self.nowait:
            try:
                got = os.preadv(self.fd, [buf], offset, _NOWAIT)
                if got > 0:
                    return got
            except BlockingIOError:
                pass
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                self.nowait = False  # this filesystem cannot: always use the thread
        return await asyncio.to_thread(_read_blocking, self.fd, buf, offset)


async def _copy(request: web.Request, resp: web.StreamResponse, fd: int, offset: int, end: int) -> None:
    reader = _Reader(fd)
    buf: memoryview | None = None
    while offset < end:
        if buf is None:
            buf = memoryview(bytearray(CHUNK))
        got = await reader.readinto(buf[: end - offset], offset)
        if not got:
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError(f"blob file ended at {offset} of {end} bytes")
        offset += got
        await resp.write(buf[:got])
        t = request.transport
        if t is None or t.get_write_buffer_size():
            buf = None  # the transport still holds part of it: the next chunk gets a new buffer


class _Senders:
    """The threads that copy to local peers (created on first use)."""

    def __init__(self) -> None:
        self.pool: ThreadPoolExecutor | None = None
        self.busy = 0
        self.lock = threading.Lock()

    def take(self) -> ThreadPoolExecutor | None:
        with self.lock:
            if self.busy >= SENDERS:
                return None
            self.busy += 1
            if self.pool is None:
                self.pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="pallet-blob-send")
            return self.pool

    def give(self) -> None:
        with self.lock:
            self.busy -= 1


_senders = _Senders()


def _send_blocking(sock: socket.socket, fd: int, offset: int, end: int) -> None:
    """Copy ``fd[offset:end]`` to ``sock`` (both dups this function closes). Runs on a sender
    thread: preadv, write and poll release the GIL, so the event loop is not held up, and no
    event-loop round trip sits between the socket draining and the next write."""
    try:
        p = select.poll()
        p.register(sock.fileno(), select.POLLOUT)
        buf = memoryview(bytearray(CHUNK))
        while offset < end:
            n = os.preadv(fd, [buf[: min(CHUNK, end - offset)]], offset)
            if n <= 0:
                raise ConnectionResetError(f"blob file ended at {offset} of {end} bytes")
            view = buf[:n]
            while view:
                try:
                    view = view[os.write(sock.fileno(), view):]
                except BlockingIOError:
                    if not p.poll(STALL * 1000):
                        raise ConnectionResetError(f"client took no bytes for {STALL:.0f} s") from None
            offset += n
    finally:
        sock.close()
        os.close(fd)


async def _copy_threaded(request: web.Request, pool: ThreadPoolExecutor, fd: int, offset: int, end: int) -> None:
    t = request.transport
    assert t is not None
    deadline = asyncio.get_running_loop().time() + STALL
    while t.get_write_buffer_size():  # the headers must be on the wire before the body
        if t.is_closing() or asyncio.get_running_loop().time() > deadline:
            raise ConnectionResetError("client went away before the blob was sent")
        await asyncio.sleep(0.002)
    # dups: the thread's descriptors stay valid (and are not reused) even when the transport
    # or the request's file is closed under it; shutdown() on cancellation stops it at once
    sock = socket.socket(fileno=os.dup(t.get_extra_info("socket").fileno()))
    fut = asyncio.get_running_loop().run_in_executor(pool, _send_blocking, sock, os.dup(fd), offset, end)
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved even when we stopped waiting
    try:
        await asyncio.shield(fut)
    except asyncio.CancelledError:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise
    except OSError:
        t.abort()
        raise


async def send(request: web.Request, path: str, size: int, etag: str, headers: dict[str, str]) -> web.StreamResponse:
    """Answer a GET of the blob file at ``path`` (``size`` bytes, strong ``etag``) with
    ``headers`` added. Raises FileNotFoundError when the file is gone. A file that ends early
    aborts the connection (the promised Content-Length cannot be kept)."""
    h = request.headers
    headers = {**headers, "ETag": etag}
    if "If-Match" in h and not _etags_match(h["If-Match"], etag):
        return web.Response(status=412, headers={**headers, "Content-Length": "0"})
    if "If-None-Match" in h and _etags_match(h["If-None-Match"], etag):
        return web.Response(status=304, headers=headers)
    rng = byte_range(h.get("Range"), size) if h.get("If-Range", etag) == etag else None
    if rng is False:
        return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{size}",
                                                 "Content-Length": "0"})
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        first, last = rng if isinstance(rng, tuple) else (0, size - 1)
        resp = web.StreamResponse(status=206 if rng else 200, headers=headers)
        if rng:
            resp.headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        count = last - first + 1
        resp.content_length = count
        await resp.prepare(request)
        if count <= 0:
            pass
        elif copy_wanted(request):
            t = request.transport
            pool = None if t is None or t.get_extra_info("sslcontext") is not None else _senders.take()
            if pool is None:  # TLS (the transport encrypts), or every sender thread is busy
                await _copy(request, resp, fd, first, last + 1)
            else:
                try:
                    await _copy_threaded(request, pool, fd, first, last + 1)
                finally:
                    _senders.give()
                request[keys.BYTES_SENT] = count  # written past aiohttp's writer
        else:
            with os.fdopen(os.dup(fd), "rb") as f:
                await asyncio.get_running_loop().sendfile(request.transport, f, first, count)  # type: ignore[arg-type]
            request[keys.BYTES_SENT] = count  # aiohttp's writer did not see these bytes: the access log adds them
        await resp.write_eof()
        return resp
    finally:
        os.close(fd)
