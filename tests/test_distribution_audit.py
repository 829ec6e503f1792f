"""Gaps found by the issue 5/6 audit: pull/push output on a terminal, in a pipe and with ``-q``;
``build --pull always|missing|never``; the server's SIZE_INVALID and BLOB_UPLOAD_INVALID codes."""
from __future__ import annotations

import http.client
import os
import re
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_helpers import Server, start_registry

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_registry(tmp_path_factory.mktemp("audit") / "root")
    yield srv
    srv.stop()


def _in_pty(pallet, *args: str, timeout: float = 60) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """Run the CLI with stdout on a pseudo-terminal (bounded wait); its exit code and output."""
    master, slave = os.openpty()
    p = subprocess.Popen(pallet.argv(*args), stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                         env=dict(pallet.env, TERM="xterm-256color", COLUMNS="60"))
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                out += data
            elif p.poll() is not None:
                break
        rc = p.wait(timeout=10)
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
            p.wait()
    return rc, out.decode(errors="replace")


def test_progress_tty_plain_quiet(pallet, reg: Server, busybox_tar: Path, tmp_path: Path) -> None:
    pallet("import", str(busybox_tar), "bb")
    ref = f"{reg.host}/audit/bb:1"
    r = pallet("push", "bb", ref)  # a pipe: plain lines, docker's wording
    assert f"The push refers to repository [{reg.host}/audit/bb]" in r.out
    assert ": Pushed" in r.out and "\x1b[" not in r.out
    assert "1: digest: sha256:" in r.out
    assert pallet("push", "-q", "bb", f"{reg.host}/audit/bb:2").out == ""

    # a fresh store each time, so every pull downloads
    fresh = [type(pallet)(tmp_path / f"r{i}" / "root", tmp_path / f"r{i}" / "run") for i in range(3)]
    rc, out = _in_pty(fresh[0], "pull", ref)
    assert rc == 0, out
    assert "\x1b[" in out, "no live (rich) display on a terminal"
    assert "Pull complete" in out
    # messages are not hard-wrapped at the terminal's width (60 columns here)
    lines = re.split(r"[\r\n]+", re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out))
    assert any(re.fullmatch(r"Digest: sha256:[0-9a-f]{64}", x) for x in lines), lines
    assert f"Status: Downloaded newer image for {ref}" in lines, lines
    r = fresh[1]("pull", ref)
    assert "\x1b[" not in r.out + r.err
    lines = r.out.splitlines()
    assert lines[0] == "1: Pulling from audit/bb"  # docker prints the path, not the domain
    assert any(x.endswith(": Pull complete") for x in lines)
    assert lines[-2].startswith(f"Status: Downloaded newer image for {ref}") and lines[-1] == ref
    r = fresh[2]("pull", "-q", ref)
    assert r.out == ref + "\n" and r.err == ""


def test_build_pull_policy(pallet, reg: Server, busybox_tar: Path, tmp_path: Path) -> None:
    ref = f"{reg.host}/audit/base:1"
    pusher = type(pallet)(tmp_path / "p" / "root", tmp_path / "p" / "run")
    pusher("import", str(busybox_tar), "bb")
    pusher("push", "-q", "bb", ref)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {ref}\nLABEL audit=yes\n")

    r = pallet.fail("build", "--pull=never", "-t", "x", str(ctx))
    assert r.rc == 125 and "--pull=never" in r.err and len(r.err.strip().splitlines()) == 1
    assert pallet("images", "-q").out.strip() == ""
    r = pallet.fail("build", "--pull=sometimes", str(ctx))
    assert "invalid --pull 'sometimes'" in r.err
    # missing (the default) pulls the absent base; never then builds from the stored one
    pallet("build", "-q", "-t", "x", str(ctx))
    pallet("build", "-q", "--pull=never", "-t", "x", str(ctx))
    # a bare --pull right before CONTEXT (docker's spelling) means always
    r = pallet("build", "--pull", str(ctx))
    assert "1: Pulling from audit/base" in r.out and "Status: Image is up to date" in r.out
    r = pallet("build", "--pull", "always", "-q", str(ctx))
    assert r.out.strip().startswith("sha256:")

    # layer lines as docker's: "Already exists" for a stored layer of a new image, none when up to date
    derived = f"{reg.host}/audit/derived:1"
    pallet("push", "-q", "x", derived)  # the base's layer, a new config (LABEL)
    fresh = type(pallet)(tmp_path / "f" / "root", tmp_path / "f" / "run")
    fresh("pull", "-q", ref)
    r = fresh("pull", derived)
    assert ": Already exists" in r.out and "Pull complete" not in r.out
    assert f"Status: Downloaded newer image for {derived}" in r.out
    r = fresh("pull", derived)
    assert r.out.splitlines()[1:] == ["Digest: " + r.out.split("Digest: ")[1].split()[0],
                                      f"Status: Image is up to date for {derived}", derived], r.out


def _chunked(reg: Server, method: str, path: str, parts: list[bytes], headers: dict[str, str]) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", reg.port, timeout=30)
    try:
        conn.request(method, path, body=iter(parts), headers=headers, encode_chunked=True)
        r = conn.getresponse()
        body = r.read().decode()
        return r.status, body
    finally:
        conn.close()


def test_size_and_upload_invalid_codes(reg: Server) -> None:
    loc = reg.request("POST", "/v2/audit/size/blobs/uploads/").h("Location")
    # a chunk shorter than its Content-Range says (chunked encoding: no Content-Length to compare)
    status, body = _chunked(reg, "PATCH", loc, [b"abc"], {"Content-Range": "0-9",
                                                           "Content-Type": "application/octet-stream"})
    assert status == 400 and '"SIZE_INVALID"' in body, body
    # the short chunk was not kept: the session is still empty
    assert reg.request("GET", loc).h("Range") == "0-0"
    r = reg.request("PATCH", loc, b"abc", {"Content-Range": "not-a-range"})
    assert (r.status, r.code) == (416, "BLOB_UPLOAD_INVALID")
    r = reg.request("PATCH", loc, b"abc", {"Content-Range": "0-9"})  # Content-Length 3 disagrees
    assert (r.status, r.code) == (416, "SIZE_INVALID")
    assert reg.request("PATCH", loc, b"abc", {"Content-Range": "0-2"}).status == 202
    r = reg.request("PATCH", loc, b"abc", {"Content-Range": "9-11"})  # out of order: a full JSON body
    assert (r.status, r.code, r.h("Range")) == (416, "RANGE_INVALID", "0-2")
    reg.request("DELETE", loc)
    assert reg.request("GET", loc).code == "BLOB_UPLOAD_UNKNOWN"
