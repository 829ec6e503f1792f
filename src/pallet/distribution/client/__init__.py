"""The registry client: auth flows, pull (lazy remote images), push (mounts, chunked uploads).

Entry points: ``Registry(domain, tls_verify=None)`` -> ``.repo(path, push=False)``;
``remote.resolve(repo, ref, platform)`` -> a lazy ``RemoteImage``; ``push.push_image(repo, image, ref)``;
``credentials.lookup/store/erase``. Imports only pallet.image, pallet.oci and pallet.errors.
"""
from __future__ import annotations
