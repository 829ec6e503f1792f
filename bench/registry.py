#!/usr/bin/env python3
"""Registry benchmark: pallet's registry vs distribution 2.8 (Debian's docker-registry), both
fresh, both on loopback, in one run; prints ratios.

(a) ``skopeo copy`` of bench/big:1 (taken from the anchor registry at 127.0.0.1:5000 into both)
    out of each registry into an oci: directory: time ratio pallet/distribution (goal <= 1.0x).
(b) 32 concurrent connections (wrk, else a bounded aiohttp load generator) fetching one
    manifest, then one 10 MB blob: requests/s ratio pallet/distribution (goal >= 1.0x, 0 errors).

Usage: bench/registry.py [--workers N] [--duration S] [--anchor 127.0.0.1:5000] [--skip-copy] [--repeat N]
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


def start_distribution(tmp: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cfg = os.path.join(tmp, "dist.yml")
    with open(cfg, "w") as f:
        f.write(f"""version: 0.1
log: {{level: error, accesslog: {{disabled: true}}}}
storage: {{filesystem: {{rootdirectory: {tmp}/dist}}, delete: {{enabled: true}}}}
http: {{addr: 127.0.0.1:{port}}}
""")
    p = subprocess.Popen(["docker-registry", "serve", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(port, p)
    return p, port


def start_pallet(tmp: str, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "pallet", "registry", "serve", "--addr", f"127.0.0.1:{port}",
                          "--root", f"{tmp}/pallet", "--access-log", "off", "--workers", str(workers)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--anchor", default="127.0.0.1:5000")
    ap.add_argument("--image", default="bench/big:1")
    ap.add_argument("--skip-copy", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="skopeo copy runs per registry (best kept)")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="regbench")
    procs = []
    try:
        dp, dport = start_distribution(tmp)
        procs.append(dp)
        pp, pport = start_pallet(tmp, a.workers)
        procs.append(pp)
        print(f"distribution on :{dport}, pallet ({a.workers} workers) on :{pport}")
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
                    dest = f"{tmp}/oci-{label}"
                    runs[label].append(skopeo(f"docker://127.0.0.1:{port}/{a.image}", f"oci:{dest}:x"))
                    shutil.rmtree(dest)
            times = {k: min(v) for k, v in runs.items()}
            print(f"(a) skopeo copy {a.image} -> oci (best of {a.repeat}): distribution {times['distribution']:.2f}s, "
                  f"pallet {times['pallet']:.2f}s, ratio {times['pallet'] / times['distribution']:.2f}x (goal <= 1.0)"
                  f"; all runs: {runs}")
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
