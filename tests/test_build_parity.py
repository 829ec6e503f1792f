"""pallet build vs Docker's legacy builder on the corners an audit found different: VOLUMEs
during RUN, ``--chown=NAME``, raw absolute WORKDIRs, hard links and set-ID bits in COPY, ignored
directories with re-included contents, backslashes under ``# escape=```, ADD of a URL archive.
Expected values were observed with ``DOCKER_BUILDKIT=0 docker build`` (dockerd 20.10.24) through
``scripts/build_vs_docker.py`` on 2026-11-28; dockerd is not needed to run these tests."""
from __future__ import annotations

import http.server
import os
import tarfile
import threading
from pathlib import Path

import pytest
from build_helpers import config, image_tree, write_ctx
from conftest import Pallet

pytestmark = pytest.mark.privileged


@pytest.fixture(scope="module")
def bb(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path) -> Pallet:
    d = tmp_path_factory.mktemp("parityroot")
    p = Pallet(d / "root", d / "run")
    p("import", str(busybox_tar), "busybox")
    return p


def test_run_below_volume_is_discarded_and_mountpoints_kept(bb: Pallet, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path, {"Dockerfile": """FROM busybox
RUN mkdir -p /data/sub && echo x > /data/f && echo k > /keep && mkdir /real && ln -s /real /lnk
VOLUME /data /newvol /etc/vv /lnk/v
RUN rm -rf /data/f /data/sub /keep && echo y > /data/g && mkdir /newvol/d && echo z > /other && echo v > /lnk/v/f
RUN echo w > /newvol/w
COPY Dockerfile /data/copied
"""})
    bb("build", "-t", "vols", str(ctx))
    t = image_tree(bb, "vols")
    # docker: the volume's old content stays, the run's writes below it are gone
    assert t["/data/f"].data == b"x\n" and "/data/sub" in t and "/data/g" not in t
    assert "/keep" not in t and t["/other"].data == b"z\n"
    # docker: a missing mountpoint is created (empty) in the RUN's layer, symlinks resolved
    for d in ("/newvol", "/etc/vv", "/real/v"):
        assert (t[d].kind, t[d].mode, t[d].uid) == ("d", 0o755, 0), d
    assert "/newvol/d" not in t and "/newvol/w" not in t and "/real/v/f" not in t
    assert "/data/copied" in t                                  # COPY does not go through volumes
    hist = config(bb, "vols")["history"]
    assert hist[-2]["created_by"].endswith("echo w > /newvol/w") and hist[-2].get("empty_layer")
    r = bb.fail("build", str(write_ctx(tmp_path / "f", {"Dockerfile": "FROM busybox\nVOLUME /etc/passwd\nRUN true\n"})))
    assert "Dockerfile:3: cannot mount volume over existing file, file exists /etc/passwd" in r.err


def test_chown_name_alone_names_the_group_too(bb: Pallet, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path, {"a.txt": "A\n", "Dockerfile": """FROM busybox
RUN echo "grp:x:1234:" >> /etc/group && echo "usr:x:4322:" >> /etc/group && echo "usr:x:4321:1234::/h:/bin/sh" >> /etc/passwd
COPY --chown=usr a.txt /o1
COPY --chown=4321 a.txt /o2
COPY --chown=usr:grp a.txt /o3
"""})
    bb("build", "-t", "chowns", str(ctx))
    t = image_tree(bb, "chowns")
    # docker: the user's name is looked up as a group too (not the passwd entry's gid)
    assert [(t[p].uid, t[p].gid) for p in ("/o1", "/o2", "/o3")] == [(4321, 4322), (4321, 4321), (4321, 1234)]
    r = bb.fail("build", str(write_ctx(tmp_path / "f", {"a": "", "Dockerfile": "FROM busybox\nCOPY --chown=nobody a /x\n"})))
    assert "Dockerfile:2:" in r.err and "no such group: nobody" in r.err


def test_workdir_keeps_absolute_path_as_written(bb: Pallet, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path, {"Dockerfile": "FROM busybox\nWORKDIR //x/./y/../z/\nRUN pwd > /p\nCOPY Dockerfile f\n"})
    bb("build", "-t", "wdraw", str(ctx))
    cfg = config(bb, "wdraw")
    assert cfg["config"]["WorkingDir"] == "//x/./y/../z/"          # docker: as written
    assert cfg["history"][1]["created_by"] == "/bin/sh -c #(nop) WORKDIR //x/./y/../z/"
    t = image_tree(bb, "wdraw")
    assert t["/p"].data == b"/x/z\n" and "/x/y" not in t and "/x/z/f" in t
    bb("build", "-t", "wdrel", str(write_ctx(tmp_path / "r", {"Dockerfile": "FROM wdraw\nWORKDIR q/\n"})))
    assert config(bb, "wdrel")["config"]["WorkingDir"] == "/x/z/q"  # docker: joined and cleaned


def test_copy_hard_links_setid_bits_and_reincluded_dirs(bb: Pallet, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path, {"d/h1": "h\n", "u": "u\n", "g": "g\n", "gn": "n\n", "keep/x/1": "1", "drop/y/2": "2",
                               "drop/z": "z", ".dockerignore": "drop\n!drop/y\n", "Dockerfile": """FROM busybox AS a
COPY . /p/
FROM busybox
COPY --from=a /p /q
COPY --from=a --chown=1:1 /p /t
"""})
    os.link(ctx / "d/h1", ctx / "d/h2")
    os.link(ctx / "d/h1", ctx / "h3")
    for name, mode in (("u", 0o4755), ("g", 0o2750), ("gn", 0o2640)):
        (ctx / name).chmod(mode)
    bb("build", "-t", "links", "--target", "a", str(ctx))
    t = image_tree(bb, "links")
    # docker: links inside one source stay links; chown after the copy clears set-user-ID and an
    # executable set-group-ID
    assert (t["/p/d/h2"].kind, t["/p/d/h2"].link) == ("h", "p/d/h1") and t["/p/h3"].kind == "h"
    assert (t["/p/u"].mode, t["/p/g"].mode, t["/p/gn"].mode) == (0o755, 0o750, 0o2640)
    # docker: an exception re-includes below an ignored dir (created 0755), the rest stays out
    assert t["/p/drop/y/2"].data == b"2" and t["/p/drop"].mode == 0o755 and "/p/drop/z" not in t
    bb("build", "-t", "links2", str(ctx))
    t = image_tree(bb, "links2")
    assert t["/q/h3"].link == "q/d/h1" and t["/t/d/h2"].link == "t/d/h1"


def test_backslash_is_literal_under_backtick_escape(bb: Pallet, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path, {"a\\b.txt": "x", "Dockerfile": "# escape=`\nFROM busybox\nCOPY a\\b.txt /w\\x\n"})
    bb("build", "-t", "bslash", str(ctx))
    assert image_tree(bb, "bslash")["/w\\x"].data == b"x"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a: object) -> None:
        pass


def test_add_url_archive_is_not_extracted(bb: Pallet, tmp_path: Path) -> None:
    www = tmp_path / "www"
    (www / "t").mkdir(parents=True)
    (www / "t/in").write_text("in\n")
    with tarfile.open(www / "arc.tar.gz", "w:gz") as tf:
        tf.add(www / "t", "t")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                          lambda *a: _Quiet(*a, directory=str(www)))  # type: ignore[misc]
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/arc.tar.gz"
        ctx = write_ctx(tmp_path / "c", {"Dockerfile": f"FROM busybox\nADD {url} /u3/\n"})
        bb("build", "-t", "urltar", str(ctx))
    finally:
        srv.shutdown()
        srv.server_close()
    t = image_tree(bb, "urltar")
    assert t["/u3/arc.tar.gz"].mode == 0o600 and "/u3/t" not in t        # docker: kept as a file
    created = config(bb, "urltar")["history"][-1]["created_by"]
    assert created.startswith("/bin/sh -c #(nop) ADD ") and "file:" not in created


def test_label_flags_are_one_unexpanded_step_each(bb: Pallet, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path, {"Dockerfile": "FROM busybox AS x\nLABEL s=x\nFROM busybox\nLABEL s=z\n"})
    out = bb("build", "-t", "lbls", "--target", "x", "--label", "s=q", "--label", "c=x y $z", "--label", "a=b",
             str(ctx)).out
    # docker: sorted, one "LABEL k=v" step per flag, on the target stage, no substitution
    assert "Step 3/5 : LABEL a=b\n" in out and "Step 4/5 : LABEL c=x y $z\n" in out and "Step 5/5 : LABEL s=q\n" in out
    cfg = config(bb, "lbls")
    assert cfg["config"]["Labels"] == {"a": "b", "c": "x y $z", "s": "q"}
    assert [h["created_by"] for h in cfg["history"][-3:]] == [
        "/bin/sh -c #(nop)  LABEL a=b", "/bin/sh -c #(nop)  LABEL c=x y $z", "/bin/sh -c #(nop)  LABEL s=q"]


def test_copy_replaces_a_symlink_named_in_a_dir_dest_and_repeated_layers_stack(bb: Pallet, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path, {"d1/x/f": "1\n", "a2": "b\n", "Dockerfile": """FROM busybox
RUN mkdir -p /real/sub /d/x/a2 && ln -s /real /link && touch /d/x/a2/keep
COPY --from=busybox /bin/sh /bin/
COPY d1 /link/sub/
COPY a2 /d/x/
COPY d1 /real/sub/
RUN test -f /real/sub/x/f
"""})
    bb("build", "-t", "symdest", str(ctx))
    t = image_tree(bb, "symdest")
    # docker: the dir is resolved, the name in it is not: the symlink /bin/sh becomes the file
    # (and /bin/busybox is untouched); a directory there is replaced
    assert t["/bin/sh"].kind == "f" and t["/bin/sh"].data == t["/bin/busybox"].data
    assert t["/d/x/a2"].kind == "f" and "/d/x/a2/keep" not in t
    # the two COPY d1 steps make the same layer; the next RUN still mounts (no repeated lowerdir)
    ids = config(bb, "symdest")["rootfs"]["diff_ids"]
    assert ids[3] == ids[5]
