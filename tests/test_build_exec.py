"""pallet build end to end: a Dockerfile per feature, the resulting file tree and config
asserted. Expected Config values marked "docker:" were observed with
``DOCKER_BUILDKIT=0 docker build`` (dockerd 20.10.24, busybox) on 2026-11-28; dockerd is not
needed to run these tests."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from build_helpers import config, image_tree, leftovers, write_ctx
from conftest import Pallet

pytestmark = pytest.mark.privileged

PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="module")
def bb(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path) -> Pallet:
    d = tmp_path_factory.mktemp("buildroot")
    p = Pallet(d / "root", d / "run")
    p("import", str(busybox_tar), "busybox")
    return p


@pytest.fixture
def fresh(tmp_path: Path, busybox_tar: Path) -> Pallet:
    p = Pallet(tmp_path / "root", tmp_path / "run")
    p("import", str(busybox_tar), "busybox")
    return p


def build(p: Pallet, ctx: Path, *args: str, check: bool = True) -> str:
    return p("build", *args, str(ctx), check=check).out


FEATURES = """FROM busybox
ARG V=1
ENV A=a B=$A C=${V}
ENV A=z
LABEL l1=$A "l 2"="v 2"
WORKDIR /tmp
WORKDIR /newdir
WORKDIR sub
RUN echo $A $V > out
COPY a.txt dir /cp/
COPY --chown=nobody:nogroup a.txt /own/
COPY --chown=5:6 a.txt /own2
EXPOSE 80 90/udp
VOLUME /data ["/v2"]
USER nobody
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --retries=2 CMD true
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN echo onbuild
MAINTAINER me
ENTRYPOINT echo hi
CMD ["x"]
"""

# docker: the Config and history of FEATURES
DOCKER_CONFIG = {
    "User": "nobody", "ExposedPorts": {"80/tcp": {}, "90/udp": {}},
    "Env": [PATH, "A=z", "B=", "C=1"], "Entrypoint": ["/bin/sh", "-ec", "echo hi"], "Cmd": ["x"],
    "Volumes": {"/data": {}, "[/v2]": {}}, "WorkingDir": "/newdir/sub", "Labels": {"l 2": "v 2", "l1": "z"},
    "StopSignal": "SIGTERM", "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 5000000000, "Retries": 2},
    "OnBuild": ["RUN echo onbuild"], "Shell": ["/bin/sh", "-ec"],
}
DOCKER_HISTORY = [  # (created_by prefix, empty_layer), oldest first, after the base
    ("/bin/sh -c #(nop)  ARG V=1", True), ("/bin/sh -c #(nop)  ENV A=a B= C=1", True),
    ("/bin/sh -c #(nop)  ENV A=z", True), ("/bin/sh -c #(nop)  LABEL l1=z l 2=v 2", True),
    ("/bin/sh -c #(nop) WORKDIR /tmp", True), ("/bin/sh -c #(nop) WORKDIR /newdir", False),
    ("/bin/sh -c #(nop) WORKDIR /newdir/sub", False), ("|1 V=1 /bin/sh -c echo $A $V > out", False),
    ("/bin/sh -c #(nop) COPY multi:", False), ("/bin/sh -c #(nop) COPY --chown=nobody:nogroupfile:", False),
    ("/bin/sh -c #(nop) COPY --chown=5:6file:", False), ("/bin/sh -c #(nop)  EXPOSE 80 90/udp", True),
    ("/bin/sh -c #(nop)  VOLUME [/data [/v2]]", True), ("/bin/sh -c #(nop)  USER nobody", True),
    ("/bin/sh -c #(nop)  STOPSIGNAL SIGTERM", True),
    ("/bin/sh -c #(nop)  HEALTHCHECK &{[\"CMD-SHELL\" \"true\"] \"5s\" \"0s\" \"0s\" '\\x02'}", True),
    ("/bin/sh -ec #(nop)  SHELL [/bin/sh -ec]", True), ("/bin/sh -ec #(nop)  ONBUILD RUN echo onbuild", True),
    ("/bin/sh -ec #(nop)  MAINTAINER me", True),
    ("/bin/sh -ec #(nop)  ENTRYPOINT [\"/bin/sh\" \"-ec\" \"echo hi\"]", True),
    ("/bin/sh -ec #(nop)  CMD [\"x\"]", True),
]


def test_features_match_docker(bb: Pallet, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path, {"Dockerfile": FEATURES, "a.txt": "hello\n", "dir/sub/f": "x\n", "dir/g": "y\n"})
    (ctx / "dir/g").chmod(0o600)
    build(bb, ctx, "-t", "features")
    cfg = config(bb, "features")
    assert {k: v for k, v in cfg["config"].items() if k in DOCKER_CONFIG} == DOCKER_CONFIG
    assert cfg["author"] == "me"
    hist = cfg["history"][1:]
    assert len(hist) == len(DOCKER_HISTORY)
    for h, (prefix, empty) in zip(hist, DOCKER_HISTORY, strict=True):
        assert h["created_by"].startswith(prefix), (h, prefix)
        assert bool(h.get("empty_layer")) is empty, h
    assert len(cfg["rootfs"]["diff_ids"]) == 7  # docker: 7 layers
    t = image_tree(bb, "features")
    assert t["/newdir/sub/out"].data == b"z 1\n"
    assert t["/cp/a.txt"].data == b"hello\n" and t["/cp/sub/f"].data == b"x\n"
    assert t["/cp/g"].mode == 0o600 and "/cp/dir" not in t          # a dir source copies its contents
    assert (t["/own"].uid, t["/own"].gid, t["/own/a.txt"].uid) == (65534, 65534, 65534)
    assert (t["/own2"].kind, t["/own2"].uid, t["/own2"].gid) == ("f", 5, 6)


def test_ownership_and_add_archives_like_docker(bb: Pallet, tmp_path: Path) -> None:
    src = tmp_path / "tsrc"
    (src / "sub").mkdir(parents=True)
    (src / "sub/t").write_text("t\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for path in (src, src / "sub", src / "sub/t"):
            ti = tf.gettarinfo(str(path), arcname="./" + str(path.relative_to(src)))
            ti.uid, ti.gid = 7, 8
            tf.addfile(ti, open(path, "rb") if path.is_file() else None)
    ctx = write_ctx(tmp_path / "c", {"a.tar.gz": buf.getvalue(), "p.txt": "plain\n", "Dockerfile": """
FROM busybox AS s
RUN touch /f && chown 5:6 /f && mkdir -p /d/e && chown -R 9:9 /d
FROM busybox
COPY --from=s /f /f
COPY --from=s /d /dd
ADD a.tar.gz /ex/
ADD p.txt /px
COPY --chmod=600 p.txt /pc
USER nobody
WORKDIR /wd
"""})
    (ctx / "p.txt").chmod(0o640)
    build(bb, ctx, "-t", "owners")
    t = image_tree(bb, "owners")
    # docker: /f 5:6 644, /dd 0:0, /dd/e 9:9, /ex 0:0, /ex/sub/t 7:8, /px 0:0 640, /wd 0:0 755
    got = {p: (t[p].uid, t[p].gid, t[p].mode) for p in ("/f", "/dd", "/dd/e", "/ex", "/ex/sub/t", "/px", "/wd")}
    assert got == {"/f": (5, 6, 0o644), "/dd": (0, 0, 0o755), "/dd/e": (9, 9, 0o755), "/ex": (0, 0, 0o755),
                   "/ex/sub/t": (7, 8, 0o644), "/px": (0, 0, 0o640), "/wd": (0, 0, 0o755)}
    assert t["/pc"].mode == 0o600 and t["/ex/sub/t"].data == b"t\n"
    assert "/a.tar.gz" not in t


def test_multistage_args_and_cmd_entrypoint_like_docker(bb: Pallet, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path, {"Dockerfile": """ARG BASE=busybox
ARG G=global
FROM $BASE AS first
RUN echo "G=$G" > /g0
ARG G
RUN echo "G=$G" > /g
ENTRYPOINT ["/bin/echo"]
FROM first
CMD ["x"]
FROM busybox
ARG G
ENV G2=${G:-unset} G3=$BASE
COPY --from=first /g /g0 /
COPY --from=0 /g /g2
CMD echo hi
ENTRYPOINT ["/bin/sh"]
"""})
    out = build(bb, ctx, "-t", "ms")
    # docker: Env [PATH, G2=global, G3=], Entrypoint [/bin/sh], Cmd [/bin/sh -c echo hi]; /g G=global, /g0 G=
    c = config(bb, "ms")["config"]
    assert c["Env"] == [PATH, "G2=global", "G3="]
    assert c["Entrypoint"] == ["/bin/sh"] and c["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    t = image_tree(bb, "ms")
    assert (t["/g"].data, t["/g0"].data, t["/g2"].data) == (b"G=global\n", b"G=\n", b"G=global\n")
    assert "FROM first" not in out  # stage 1 is not needed by the target
    build(bb, ctx, "-t", "ms2", "--build-arg", "G=cli", "--build-arg", "HTTP_PROXY=http://p:1")
    cfg = config(bb, "ms2")
    assert cfg["config"]["Env"] == [PATH, "G2=cli", "G3="]          # docker: same
    assert image_tree(bb, "ms2")["/g"].data == b"G=cli\n"
    assert not any("HTTP_PROXY" in h.get("created_by", "") for h in cfg["history"])


def test_entrypoint_resets_inherited_cmd(bb: Pallet, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path, {"Dockerfile": "FROM busybox\nCMD [\"a\"]\nFROM busybox\nENTRYPOINT [\"e\"]\nCMD c\n"})
    build(bb, ctx, "-t", "ep")
    c = config(bb, "ep")["config"]
    assert c["Cmd"] == ["/bin/sh", "-c", "c"] and c["Entrypoint"] == ["e"]   # docker: same
    ctx2 = write_ctx(tmp_path / "b", {"Dockerfile": "FROM ep\nENTRYPOINT echo ep\n"})
    build(bb, ctx2, "-t", "ep2")
    c = config(bb, "ep2")["config"]
    assert "Cmd" not in c and c["Entrypoint"] == ["/bin/sh", "-c", "echo ep"]


def test_target_builds_only_needed_stages(bb: Pallet, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path, {"Dockerfile": "FROM busybox AS ok\nRUN echo ok > /ok\n"
                                             "FROM busybox AS broken\nRUN exit 1\n"
                                             "FROM busybox\nCOPY --from=ok /ok /ok\n"})
    out = build(bb, ctx, "-t", "tgt")
    assert "exit 1" not in out
    assert image_tree(bb, "tgt")["/ok"].data == b"ok\n"
    build(bb, ctx, "-t", "tgt2", "--target", "ok")
    assert config(bb, "tgt2")["history"][-1]["created_by"].endswith("echo ok > /ok")
    r = bb.fail("build", "--target", "nope", str(ctx))
    assert "failed to reach build target nope" in r.err


def test_copy_rules(bb: Pallet, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path, {
        "a.txt": "a", "b.txt": "b", "c.md": "c", "d/x.txt": "dx", "d/y/z.txt": "z",
        "Dockerfile": """FROM busybox
COPY a.txt /file
COPY a.txt /dir/
COPY a.txt b.txt /two/
COPY *.txt /glob/
COPY d/*.txt /dglob/
COPY d /dcontent
COPY a.txt /etc
WORKDIR /w
COPY b.txt rel
COPY ["a.txt", "/json dest"]
COPY <<EOF <<-"X" /heredocs/
hello $HOSTNAME${UNSET:-}
EOF
\tquoted $X
\tX
"""})
    build(bb, ctx, "-t", "cp")
    t = image_tree(bb, "cp")
    assert t["/file"].kind == "f" and t["/file"].data == b"a"
    assert t["/dir/a.txt"].data == b"a"
    assert t["/two/a.txt"].data == b"a" and t["/two/b.txt"].data == b"b"
    assert {p for p in t if p.startswith("/glob/")} == {"/glob/a.txt", "/glob/b.txt"}
    assert {p for p in t if p.startswith("/dglob/")} == {"/dglob/x.txt"}
    assert t["/dcontent/x.txt"].data == b"dx" and t["/dcontent/y/z.txt"].data == b"z"
    assert t["/etc/a.txt"].data == b"a"                 # an existing directory receives the file
    assert t["/w/rel"].data == b"b" and t["/json dest"].data == b"a"
    assert t["/heredocs/EOF"].data == b"hello \n" and t["/heredocs/X"].data == b"quoted $X\n"


@pytest.mark.parametrize("dockerfile,msg", [
    ("FROM busybox\nCOPY missing /x\n", "Dockerfile:2: COPY failed: file not found in build context"),
    ("FROM busybox\nCOPY ../outside /x\n", "Dockerfile:2: COPY failed: forbidden path outside the build context"),
    ("FROM busybox\nCOPY a.txt a.txt /notdir\n", "destination must be a directory and end with a /"),
    ("FROM busybox\nCOPY nomatch* /x/\n", "no source files were specified"),
    ("FROM busybox\nCOPY --from=127.0.0.1:9/nostage /x /y\n", "COPY --from=127.0.0.1:9/nostage: no build stage or image named"),
    ("FROM busybox AS me\nCOPY --from=me /x /y\n", "Dockerfile:2: invalid from flag value me: refers to current build stage"),
    ("FROM busybox\nCOPY --chown=a:b:c a.txt /x\n", "Dockerfile:2: unable to convert uid/gid chown string to host "
     "mapping: invalid chown string format: a:b:c"),
    ("FROM busybox\nCOPY --chown=nosuchuser a.txt /x\n", "nosuchuser"),
    ("FROM busybox\nCOPY --chmod=abc a.txt /x\n", "invalid chmod"),
    ("FROM busybox\nADD http://127.0.0.1:9/nothing /x\n", "ADD failed: cannot fetch http://127.0.0.1:9/nothing"),
    ("FROM busybox\nFOO bar\n", "Dockerfile:2: unknown instruction: FOO"),
    ("FROM busybox\nRUN echo \\\n  ok\nENV\n", "Dockerfile:4: ENV requires at least one argument"),
    ("FROM 127.0.0.1:9/nosuchimage:1\n", "Dockerfile:1: FROM 127.0.0.1:9/nosuchimage:1"),
    ("FROM busybox\nSTOPSIGNAL NOPE\n", "Invalid signal: NOPE"),
])
def test_bad_input_one_line_and_nothing_left(bb: Pallet, tmp_path: Path, dockerfile: str, msg: str) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": dockerfile, "a.txt": "a"})
    write_ctx(tmp_path, {"outside": "o"})
    before = bb("images", "-q").out
    r = bb.fail("build", "-t", "bad", str(ctx))
    line = r.err.strip().splitlines()[-1]
    assert msg in line, r.err
    assert bb("images", "-q").out == before
    assert leftovers(bb) == []


def test_failing_run_shows_output_and_code_leaves_nothing(fresh: Pallet, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo ok > /f\n"
                                             "RUN echo partial-output; touch /half; exit 7\n"})
    r = fresh.fail("build", "-t", "failing", str(ctx))
    assert r.rc == 1
    assert "partial-output" in r.out
    assert "returned a non-zero code: 7" in r.err
    assert "failing" not in fresh("images").out
    assert leftovers(fresh) == []


def test_run_whiteouts_opaque_and_exec_form(bb: Pallet, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path, {"Dockerfile": """FROM busybox
RUN mkdir -p /o/keep && touch /o/old /o/keep/k /gone
RUN rm /gone && rm -rf /o && mkdir /o && touch /o/new
RUN ["/bin/sh", "-c", "echo exec > /exec"]
RUN <<EOF
echo heredoc > /hd
EOF
RUN cat > /hd2 <<-EOT
\tindented
\tEOT
RUN <<EOF
#!/bin/sh
echo script $0 > /script
EOF
"""})
    out = build(bb, ctx, "-t", "wh")
    t = image_tree(bb, "wh")
    assert "/gone" not in t and "/o/old" not in t and "/o/keep" not in t and "/o/new" in t
    assert t["/exec"].data == b"exec\n" and t["/hd"].data == b"heredoc\n" and t["/hd2"].data == b"indented\n"
    assert t["/script"].data.startswith(b"script ")
    assert "Running in" in out
    from pallet.oci.digest import Digest
    from pallet.store import Store

    with Store.open(bb.root, bb.runroot) as st:
        rec = st.resolve_image("wh")
        with st.open_blob(Digest.parse(str(rec.layer_blobs[2].digest))) as f, tarfile.open(fileobj=f) as tf:
            names = tf.getnames()
    assert ".wh.gone" in names and "o/.wh..wh..opq" in names


def test_onbuild_triggers_run_in_child(bb: Pallet, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path / "p", {"Dockerfile": "FROM busybox\nONBUILD RUN echo trig > /trig\n"
                                                   "ONBUILD ENV T=1\n"})
    build(bb, ctx, "-t", "parent")
    assert config(bb, "parent")["config"]["OnBuild"] == ["RUN echo trig > /trig", "ENV T=1"]
    ctx2 = write_ctx(tmp_path / "c", {"Dockerfile": "FROM parent\nRUN cat /trig\n"})
    out = build(bb, ctx2, "-t", "child")
    assert "# Executing 2 build triggers" in out
    c = config(bb, "child")["config"]
    assert "OnBuild" not in c and "T=1" in c["Env"]
    assert image_tree(bb, "child")["/trig"].data == b"trig\n"


def test_dockerignore(bb: Pallet, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path, {".dockerignore": "# comment\n*.log\n!keep.log\nsecret/\n**/tmp\n/Dockerfile\n",
                               "a.log": "x", "keep.log": "k", "secret/s": "s", "sub/tmp/t": "t", "sub/ok": "ok",
                               "Dockerfile": "FROM busybox\nCOPY . /ctx/\n"})
    build(bb, ctx, "-t", "ign")
    t = image_tree(bb, "ign")
    got = {p for p in t if p.startswith("/ctx/") and t[p].kind == "f"}
    assert got == {"/ctx/keep.log", "/ctx/sub/ok", "/ctx/.dockerignore"}
    r = bb.fail("build", str(write_ctx(tmp_path / "x", {".dockerignore": "!\n", "Dockerfile": "FROM busybox\n"})))
    assert "illegal exclusion pattern" in r.err


def test_stdin_dockerfile_and_tar_context(bb: Pallet, tmp_path: Path) -> None:
    out = bb("build", "-t", "fromstdin", "-", input="FROM busybox\nLABEL from=stdin\n").out
    assert "Successfully tagged fromstdin:latest" in out
    assert config(bb, "fromstdin")["config"]["Labels"] == {"from": "stdin"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in (("Dockerfile", b"FROM busybox\nCOPY f /f\n"), ("f", b"tarctx")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    r = bb("build", "-q", "-t", "tarctx", "-", input=buf.getvalue())
    assert r.out.strip().startswith("sha256:")
    assert image_tree(bb, "tarctx")["/f"].data == b"tarctx"
    ctx = write_ctx(tmp_path / "c", {"f": "dirctx"})
    bb("build", "-t", "dfstdin", "-f", "-", str(ctx), input="FROM busybox\nCOPY f /f\n")
    assert image_tree(bb, "dfstdin")["/f"].data == b"dirctx"


def test_label_flag_and_scratch(bb: Pallet, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path, {"f": "x", "Dockerfile": "FROM scratch\nCOPY f /f\n"})
    build(bb, ctx, "-t", "scr", "--label", "a=b")
    cfg = config(bb, "scr")
    assert cfg["config"]["Labels"] == {"a": "b"} and cfg["config"]["Env"] == [PATH]
    assert len(cfg["rootfs"]["diff_ids"]) == 1
    assert set(image_tree(bb, "scr")) == {"/f"}


def test_context_and_flag_errors(bb: Pallet, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path / "c", {"Dockerfile": "FROM busybox\n", "other.Dockerfile": "FROM busybox\nLABEL f=1\n"})
    (ctx / ".dockerignore").mkdir()
    r = bb.fail("build", str(ctx))
    assert "error reading .dockerignore" in r.err.strip().splitlines()[-1]
    (ctx / ".dockerignore").rmdir()
    r = bb.fail("build", "--build-arg", "=v", str(ctx))
    assert "invalid build-arg" in r.err
    r = bb.fail("build", str(tmp_path / "nope"))
    assert "unable to prepare context" in r.err
    r = bb.fail("build", "-f", "missing.Dockerfile", str(ctx))
    assert "missing.Dockerfile" in r.err
    build(bb, ctx, "-f", str(ctx / "other.Dockerfile"), "-t", "other")
    assert config(bb, "other")["config"]["Labels"] == {"f": "1"}
    out = build(bb, ctx, "--build-arg", "UNUSED=1", "-t", "warned")
    assert "[Warning] One or more build-args [UNUSED] were not consumed" in out
    assert leftovers(bb) == []


def test_add_url_from_loopback_server(bb: Pallet, tmp_path: Path) -> None:
    import http.server
    import threading

    served = tmp_path / "srv"
    served.mkdir()
    (served / "file.txt").write_text("from http\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):  # type: ignore[no-untyped-def]
            super().__init__(*a, directory=str(served), **kw)

        def log_message(self, *a) -> None:  # type: ignore[no-untyped-def]
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        port = srv.server_address[1]
        ctx = write_ctx(tmp_path / "c", {"Dockerfile": f"FROM busybox\nADD http://127.0.0.1:{port}/file.txt /dl/\n"
                                                       f"ADD http://127.0.0.1:{port}/file.txt /named\n"})
        build(bb, ctx, "-t", "addurl")
    finally:
        srv.shutdown()
        srv.server_close()
    tree = image_tree(bb, "addurl")
    assert tree["/dl/file.txt"].data == b"from http\n" and tree["/dl/file.txt"].mode == 0o600  # docker: 0600
    assert tree["/named"].data == b"from http\n"


def test_network_host_run_sees_host_dns_and_leaves_no_mountpoints(bb: Pallet, tmp_path: Path) -> None:
    if not Path("/etc/resolv.conf").is_file():
        pytest.skip("the host has no /etc/resolv.conf")
    ctx = write_ctx(tmp_path, {"Dockerfile": "FROM busybox\nRUN test -s /etc/resolv.conf && echo ok > /ok\n"})
    build(bb, ctx, "--network", "host", "-t", "nethost")
    t = image_tree(bb, "nethost")
    assert t["/ok"].data == b"ok\n" and "/etc/resolv.conf" not in t and "/etc/hosts" not in t
    r = bb.fail("build", str(write_ctx(tmp_path / "n", {"Dockerfile": "FROM busybox\nRUN test -s /etc/resolv.conf\n"})))
    assert "returned a non-zero code: 1" in r.err   # network none: no DNS config inside


def test_onbuild_args_env_labels_like_docker(bb: Pallet, tmp_path: Path) -> None:
    parent = write_ctx(tmp_path / "p", {"Dockerfile": """FROM busybox
ONBUILD ARG OB=obdefault
ONBUILD ENV FROM_TRIGGER=$OB
ONBUILD RUN echo trig > /trig
LABEL parent=yes
"""})
    build(bb, parent, "-t", "obparent")
    child = write_ctx(tmp_path / "c", {"Dockerfile": """FROM obparent
ENV D=/data W=work
WORKDIR $D/${W}
USER 1000:1000
EXPOSE 8000-8002 53/udp
LABEL "quoted key"='single $D' plain=$W
ENV PATH=/custom:$PATH
STOPSIGNAL 9
HEALTHCHECK NONE
"""})
    build(bb, child, "-t", "obchild")
    cfg = config(bb, "obchild")
    # docker: (DOCKER_BUILDKIT=0, dockerd 20.10.24)
    assert cfg["config"] == {
        "User": "1000:1000", "ExposedPorts": {"53/udp": {}, "8000/tcp": {}, "8001/tcp": {}, "8002/tcp": {}},
        "Env": ["PATH=/custom:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "FROM_TRIGGER=obdefault", "D=/data", "W=work"],
        "WorkingDir": "/data/work", "Labels": {"parent": "yes", "plain": "work", "quoted key": "single $D"},
        "StopSignal": "9", "Healthcheck": {"Test": ["NONE"]}}
    assert [h["created_by"] for h in cfg["history"][-12:]][::-1] == [
        "/bin/sh -c #(nop)  HEALTHCHECK &{[\"NONE\"] \"0s\" \"0s\" \"0s\" '\\x00'}",
        "/bin/sh -c #(nop)  STOPSIGNAL 9",
        "/bin/sh -c #(nop)  ENV PATH=/custom:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "/bin/sh -c #(nop)  LABEL quoted key=single $D plain=work",
        "/bin/sh -c #(nop)  EXPOSE 53/udp 8000-8002",
        "/bin/sh -c #(nop)  USER 1000:1000",
        "/bin/sh -c #(nop) WORKDIR /data/work",
        "/bin/sh -c #(nop)  ENV D=/data W=work",
        "|1 OB=obdefault /bin/sh -c echo trig > /trig",
        "/bin/sh -c #(nop)  ENV FROM_TRIGGER=obdefault",
        "/bin/sh -c #(nop)  ARG OB=obdefault",
        "/bin/sh -c #(nop)  LABEL parent=yes"]
    assert image_tree(bb, "obchild")["/trig"].data == b"trig\n"
