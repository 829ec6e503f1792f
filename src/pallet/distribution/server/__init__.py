"""pallet's registry server (OCI distribution spec v1.1 / Docker Registry HTTP API v2).

Imports only pallet.oci and pallet.errors: it ships alone and doubles as the in-process
registry for other tests (``RegistryThread``). Heavy imports (aiohttp) happen in submodules.

- ``config.Config`` / ``config.load(path)`` / ``config.merge(cfg, **flags)``
- ``app.make_app(config) -> aiohttp.web.Application``
- ``serve.serve(config)``; ``serve.RegistryThread(root)`` (context manager, ``.url``, ``.host``)
- ``gc.collect(root, dry_run=False, grace=3600)``
- ``tokenserver.serve_tokens(...)``
"""
from __future__ import annotations
