#!/usr/bin/env python3
"""Registry benchmark: pallet's registry vs distribution 2.8 (Debian's docker-registry), both
fresh, both on loopback, in one run; prints ratios.

(a) ``skopeo copy`` of bench/big:1 (taken from the anchor registry at 127.0.0.1:5000 into both)
    out of each registry into an oci: directory, runs interleaved (order alternating, ``sync``
    before each): ratio of the median times pallet/distribution (goal <= 1.0x), best-of too.
(b) 32 concurrent connections (wrk, else a bounded aiohttp load generator) fetching one
    manifest, then one 10 MB blob: requests/s ratio pallet/distribution (goal >= 1.0x, 0 errors).

Both servers run as a user would start them: distribution with Debian's shipped config
(/etc/docker/registry/config.yml: info logging, access log on, in-memory blob descriptor
cache; auth, port and storage path aside), pallet with its defaults (1 worker, JSON access log
on stderr); both logs go to /dev/null. ``--quiet-logs`` turns both access logs off,
``--workers N`` gives pallet N worker processes.

Usage: bench/registry.py [--workers N] [--quiet-logs] [--duration S] [--anchor 127.0.0.1:5000]
                         [--skip-copy] [--repeat N] [--dest-dir DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[bytes], limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server on {port} exited {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/v2/")
            if c.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"server on {port} not ready")


def start_distribution(tmp: str, quiet: bool) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cfg = os.path.join(tmp, "dist.yml")
    log = "{level: error, accesslog: {disabled: true}}" if quiet else "{fields: {service: registry}}"
    with open(cfg, "w") as f:
        f.write(f"""version: 0.1
log: {log}
storage: {{cache: {{blobdescriptor: inmemory}}, filesystem: {{rootdirectory: {tmp}/dist}}, delete: {{enabled: true}}}}
http: {{addr: 127.0.0.1:{port}, headers: {{X-Content-Type-Options: [nosniff]}}}}
""")
    p = subprocess.Popen(["docker-registry", "serve", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(port, p)
    return p, port


def start_pallet(tmp: str, workers: int | None, quiet: bool) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    argv = [sys.executable, "-m", "pallet", "registry", "serve", "--addr", f"127.0.0.1:{port}", "--root", f"{tmp}/pallet"]
    argv += ["--access-log", "off"] if quiet else []
    argv += ["--workers", str(workers)] if workers else []
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(port, p)
    return p, port


def push_blob(port: int, name: str, data: bytes) -> str:
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", f"/v2/{name}/blobs/uploads/")
    r = c.getresponse()
    r.read()
    loc = r.getheader("Location") or ""
    sep = "&" if "?" in loc else "?"
    path = re.sub(r"^https?://[^/]+", "", loc) + f"{sep}digest={d}"
    c.request("PUT", path, body=data, headers={"Content-Type": "application/octet-stream"})
    r = c.getresponse()
    r.read()
    assert r.status == 201, (r.status, name)
    return d


def push_small_image(port: int, blob: bytes) -> tuple[str, str]:
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    cd = push_blob(port, "bench/load", cfg)
    bd = push_blob(port, "bench/load", blob)
    m = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(cfg)},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": bd,
                                "size": len(blob)}]}).encode()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("PUT", "/v2/bench/load/manifests/v1", body=m, headers={"Content-Type": OCI_MANIFEST})
    r = c.getresponse()
    r.read()
    assert r.status == 201, r.status
    return "/v2/bench/load/manifests/v1", f"/v2/bench/load/blobs/{bd}"


def skopeo(src: str, dest: str) -> float:
    os.sync()  # the previous run's dirty pages are not this run's writeback
    t = time.monotonic()
    subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false", src, dest],
                   check=True, stdout=subprocess.DEVNULL, timeout=600)
    return time.monotonic() - t


def wrk(port: int, path: str, duration: int) -> tuple[float, int]:
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(f'wrk.headers["Accept"] = "{OCI_MANIFEST}"\n'
                 'done = function(summary, latency, requests)\n'
                 '  io.write(string.format("NON2XX %d\\n", summary.errors.status))\n'
                 '  io.write(string.format("ERRS %d\\n", summary.errors.connect + summary.errors.read + '
                 'summary.errors.write + summary.errors.timeout))\nend\n')
    script.close()
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{duration}s", "--timeout", "30s", "-s", script.name,
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=duration + 60).stdout
    os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errs = int(re.search(r"NON2XX (\d+)", out).group(1)) + int(re.search(r"ERRS (\d+)", out).group(1))  # type: ignore[union-attr]
    return rps, errs


def pyload(port: int, path: str, duration: int) -> tuple[float, int]:
    """Fallback load generator: 32 aiohttp connections, bounded by ``duration``."""
    import asyncio

    import aiohttp

    async def main() -> tuple[float, int]:
        n = errs = 0
        end = time.monotonic() + duration
        conn = aiohttp.TCPConnector(limit=32)
        async with aiohttp.ClientSession(connector=conn) as s:
            async def one() -> None:
                nonlocal n, errs
                while time.monotonic() < end:
                    try:
                        async with s.get(f"http://127.0.0.1:{port}{path}", headers={"Accept": OCI_MANIFEST}) as r:
                            async for _ in r.content.iter_chunked(1 << 20):
                                pass
                            n += 1
                            errs += r.status != 200
                    except aiohttp.ClientError:
                        errs += 1
            t = time.monotonic()
            await asyncio.gather(*(one() for _ in range(32)))
            return n / (time.monotonic() - t), errs

    return asyncio.run(main())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=None, help="pallet worker processes (default: pallet's)")
    ap.add_argument("--quiet-logs", action="store_true", help="both access logs off")
    ap.add_argument("--dest-dir", default=None, help="where the oci: copies go (default: the temp dir; a tmpfs "
                    "such as /dev/shm leaves out the destination disk's fsync time and noise)")
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--anchor", default="127.0.0.1:5000")
    ap.add_argument("--image", default="bench/big:1")
    ap.add_argument("--skip-copy", action="store_true")
    ap.add_argument("--repeat", type=int, default=5, help="skopeo copy runs per registry (interleaved)")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="regbench")
    procs = []
    try:
        dp, dport = start_distribution(tmp, a.quiet_logs)
        procs.append(dp)
        pp, pport = start_pallet(tmp, a.workers, a.quiet_logs)
        procs.append(pp)
        print(f"distribution on :{dport}, pallet ({a.workers or 'default'} workers) on :{pport}, "
              f"access logs {'off' if a.quiet_logs else 'on'}, load average {os.getloadavg()[0]:.2f}")
        if not a.skip_copy:
            push = {}
            for label, port in (("distribution", dport), ("pallet", pport)):
                push[label] = skopeo(f"docker://{a.anchor}/{a.image}", f"docker://127.0.0.1:{port}/{a.image}")
            print(f"(c) skopeo copy {a.image} from the anchor into: distribution {push['distribution']:.2f}s, "
                  f"pallet {push['pallet']:.2f}s, ratio {push['pallet'] / push['distribution']:.2f}x (push, info)")
            runs: dict[str, list[float]] = {"distribution": [], "pallet": []}
            for i in range(a.repeat):  # alternate the order, keep the best of each (noisy machine)
                order = [("distribution", dport), ("pallet", pport)]
                for label, port in order if i % 2 == 0 else order[::-1]:
                    dest = f"{a.dest_dir or tmp}/oci-{label}-{os.getpid()}"
                    try:
                        runs[label].append(skopeo(f"docker://127.0.0.1:{port}/{a.image}", f"oci:{dest}:x"))
                    finally:
                        shutil.rmtree(dest, ignore_errors=True)
            med = {k: statistics.median(v) for k, v in runs.items()}
            best = {k: min(v) for k, v in runs.items()}
            print(f"(a) skopeo copy {a.image} -> oci, {a.repeat} interleaved runs each: medians distribution "
                  f"{med['distribution']:.2f}s, pallet {med['pallet']:.2f}s, ratio {med['pallet'] / med['distribution']:.2f}x "
                  f"(goal <= 1.0); best-of {best['pallet'] / best['distribution']:.2f}x; load average "
                  f"{os.getloadavg()[0]:.2f}; all runs: { {k: [round(x, 2) for x in v] for k, v in runs.items()} }")
        blob = os.urandom(10 * 1024 * 1024)
        paths = {}
        for label, port in (("distribution", dport), ("pallet", pport)):
            paths[label] = push_small_image(port, blob)
        load = wrk if shutil.which("wrk") else pyload
        for i, what in ((0, "manifest"), (1, "10 MB blob")):
            res = {}
            for label, port in (("distribution", dport), ("pallet", pport)):
                res[label] = load(port, paths[label][i], a.duration)
            d, p = res["distribution"], res["pallet"]
            print(f"(b) {what}, 32 conns ({load.__name__}): distribution {d[0]:.0f} req/s ({d[1]} errors), "
                  f"pallet {p[0]:.0f} req/s ({p[1]} errors), ratio {p[0] / d[0]:.2f}x (goal >= 1.0)")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
