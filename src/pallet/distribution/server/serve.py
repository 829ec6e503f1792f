"""Running the registry: one process, or N worker processes each binding the port with
SO_REUSEPORT (the kernel spreads connections; Python's one-core-per-process limit otherwise
caps throughput). All workers share storage (atomic renames and flocks make that safe) and one
shared counter block. Also an in-process registry on a thread for tests."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import ssl
import sys
import threading
from typing import Any

from pallet.distribution.server.config import Config
from pallet.distribution.server.metrics import Metrics, access_logger_class, open_sink
from pallet.errors import InvalidArgument


def ssl_context(c: Config) -> ssl.SSLContext | None:
    if not c.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(c.tls_cert, c.tls_key)
    except (OSError, ssl.SSLError) as e:
        raise InvalidArgument(f"cannot load TLS certificate {c.tls_cert} / key {c.tls_key}: {e}") from None
    return ctx


def _check_bind(host: str, port: int) -> None:
    """Fail early, with one line, when the address is taken (before forking workers)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
    except OSError as e:
        raise InvalidArgument(f"cannot listen on {host}:{port}: {e.strerror}") from None
    finally:
        s.close()


def _die_with_parent(parent: int) -> None:
    """PR_SET_PDEATHSIG: a worker must not outlive a SIGKILLed parent (it would keep the port).
    A parent that died before the prctl sends nothing: hence the getppid check after it."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(0)


def _run_worker(c: Config, metrics: Metrics, index: int, ctx: ssl.SSLContext | None, reuse: bool) -> None:
    from aiohttp import web

    from pallet.distribution.server.app import make_app

    metrics.set_worker(index)
    host, port = c.host_port()
    app = make_app(c, metrics)
    sink = open_sink(c.access_log)
    web.run_app(app, host=host, port=port, ssl_context=ctx, reuse_port=reuse or None, backlog=1024,
                access_log_class=access_logger_class(metrics, sink),
                access_log=logging.getLogger("pallet.registry.access"), print=None,
                shutdown_timeout=5)


def serve(c: Config) -> int:
    """Serve until SIGTERM/SIGINT. Prints one line when listening."""
    from pallet.distribution.server.app import make_authorizer

    c.validate()
    ctx = ssl_context(c)
    make_authorizer(c)  # unreadable htpasswd / key files fail here, before anything is created
    host, port = c.host_port()
    _check_bind(host, port)
    os.makedirs(c.root, exist_ok=True)
    metrics = Metrics(c.workers)
    scheme = "https" if ctx else "http"
    print(f"pallet registry listening on {scheme}://{host}:{port} (root {c.root}, {c.workers} worker(s))",
          file=sys.stderr, flush=True)
    if c.workers == 1:
        _run_worker(c, metrics, 0, ctx, reuse=False)
        return 0
    pids = []
    parent = os.getpid()
    for i in range(c.workers):
        pid = os.fork()
        if pid == 0:
            code = 0
            _die_with_parent(parent)
            try:
                _run_worker(c, metrics, i, ctx, reuse=True)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        pids.append(pid)

    def forward(signum: int, _frame: Any) -> None:
        for p in pids:
            try:
                os.kill(p, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    rc = 0
    for p in pids:
        while True:
            try:
                _, status = os.waitpid(p, 0)
                rc = rc or os.waitstatus_to_exitcode(status)
                break
            except ChildProcessError:
                break
            except InterruptedError:
                continue
    return 0 if rc in (0, -signal.SIGTERM) else rc


class RegistryThread:
    """An in-process registry on 127.0.0.1 (a free port) for tests of other parts of pallet::

        with RegistryThread(tmp_path) as reg:
            reg.url  # "http://127.0.0.1:PORT"; reg.host == "127.0.0.1:PORT"
    """

    def __init__(self, root: str | os.PathLike[str], config: Config | None = None) -> None:
        self.config = config or Config()
        self.config.root = os.fspath(root)
        self.config.addr = "127.0.0.1:0"
        self.config.access_log = "off"
        self.host = ""
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    async def _main(self) -> None:
        from aiohttp import web

        from pallet.distribution.server.app import make_app

        metrics = Metrics()
        runner = web.AppRunner(make_app(self.config, metrics),
                               access_log_class=access_logger_class(metrics, None),
                               access_log=logging.getLogger("pallet.registry.access"))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        port = sock.getsockname()[1]
        self.host = f"127.0.0.1:{port}"
        self.url = f"http://{self.host}"
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as e:
            self._error = e
            self._ready.set()
        finally:
            self._loop.close()

    def __enter__(self) -> RegistryThread:
        self._thread = threading.Thread(target=self._run, name="pallet-registry", daemon=True)
        self._thread.start()
        if not self._ready.wait(30) or self._error:
            raise RuntimeError(f"in-process registry did not start: {self._error}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread:
            self._thread.join(10)
