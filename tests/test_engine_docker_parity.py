"""Container behaviours checked against the anchor dockerd by hand (docker 20.10+ on busybox):
supplementary groups, the pull-on-run messages, --dns-search/--dns-option, --network-alias and
-p refused or ignored on networks that can't carry them."""
from __future__ import annotations

import pytest
from engine_helpers import bb_fixture  # noqa: F401  (bb_fixture registers the 'bb' fixture)

pytestmark = pytest.mark.privileged


def test_supplementary_groups_like_docker(bb) -> None:  # type: ignore[no-untyped-def]
    # `docker run --rm --network none [-u X] busybox id` on the anchor
    assert bb("run", "--rm", "--network", "none", "busybox", "id").out.strip() == \
        "uid=0(root) gid=0(root) groups=0(root)"
    assert bb("run", "--rm", "--network", "none", "-u", "65534", "busybox", "id").out.strip() == \
        "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)"
    assert bb("run", "--rm", "--network", "none", "-u", "1000:1000", "busybox", "id").out.strip() == \
        "uid=1000 gid=1000 groups=1000"
    assert bb("run", "--rm", "--network", "none", "-u", "1000", "busybox", "id").out.strip() == \
        "uid=1000 gid=0(root) groups=0(root)"
    bb("run", "-d", "--name", "g1", "--network", "none", "busybox", "sleep", "30")
    assert bb("exec", "-u", "65534", "g1", "id").out.strip() == \
        "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)"
    assert bb("exec", "-u", "1000:1000", "g1", "grep", "Groups", "/proc/self/status").out.split() == \
        ["Groups:", "1000"]
    bb("rm", "-f", "g1")


def test_run_pulls_missing_image_with_dockers_messages(bb, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import re

    from pallet.distribution.server.serve import RegistryThread

    bb.env["DOCKER_CONFIG"] = str(tmp_path / "dockercfg")
    with RegistryThread(tmp_path / "reg") as reg:
        name = f"{reg.host}/par/bb"
        bb("tag", "busybox:latest", f"{name}:1")
        bb("push", "-q", f"{name}:1", timeout=60)
        bb("rmi", f"{name}:1", "busybox:latest")  # the image gone, not just the tag
        r = bb("run", "--rm", "--network", "none", f"{name}:1", "echo", "hi", timeout=60)
        assert r.out == "hi\n"  # messages on stderr only, as docker
        lines = r.err.splitlines()
        assert lines[0] == f"Unable to find image '{name}:1' locally", r.err
        assert lines[1] == "1: Pulling from par/bb", r.err
        assert any(re.fullmatch(r"[0-9a-f]{12}: Pull complete", ln) for ln in lines), r.err
        assert any(ln.startswith("Digest: sha256:") for ln in lines), r.err
        assert lines[-1] == f"Status: Downloaded newer image for {name}:1", r.err
        bb("rmi", f"{name}:1")
        r = bb("create", "-q", f"{name}:1", "true", timeout=60)  # -q: nothing but the id
        assert r.err == "" and re.fullmatch(r"[0-9a-f]{64}\n", r.out), (r.out, r.err)
        bb("rm", r.out.strip())
        bb("rmi", f"{name}:1")
        r = bb.fail("run", "--rm", "-q", "--network", "none", f"{name}:2", "true", timeout=60)
        assert "No such image" in r.err


def test_dns_search_and_option_like_docker(bb) -> None:  # type: ignore[no-untyped-def]
    """/etc/resolv.conf as dockerd 20.10 writes it for the same flags (libnetwork's Build order:
    search, nameservers, options; `--dns-search .` drops the search line)."""
    def resolv(*flags: str, net: str = "none") -> str:
        return bb("run", "--rm", "--network", net, *flags, "busybox", "cat", "/etc/resolv.conf").out

    assert resolv("--dns", "1.2.3.4", "--dns-search", "a.example", "--dns-search", "b.example",
                  "--dns-option", "ndots:2", "--dns-option", "timeout:3") == \
        "search a.example b.example\nnameserver 1.2.3.4\noptions ndots:2 timeout:3\n"
    assert resolv("--dns", "1.2.3.4", "--dns-option", "ndots:5") == "nameserver 1.2.3.4\noptions ndots:5\n"
    assert resolv("--dns", "1.2.3.4", "--dns-search", ".") == "nameserver 1.2.3.4\n"
    host_ns = resolv()  # no flags: the host's (filtered) file
    assert resolv("--dns-search", "x.y").startswith("search x.y\nnameserver ")
    assert "options ndots:2\n" in resolv("--dns-option", "ndots:2") and "nameserver" in host_ns
    assert resolv("--dns", "1.2.3.4", "--dns-search", "x.y", net="bridge") == "search x.y\nnameserver 1.2.3.4\n"
    cid = bb("create", "--dns-search", "s.example", "--dns-option", "ndots:1", "busybox", "true").out.strip()
    import json

    host = json.loads(bb("inspect", cid).out)[0]["HostConfig"]
    assert (host["DnsSearch"], host["DnsOptions"]) == (["s.example"], ["ndots:1"])
    bb("rm", cid)


def test_alias_refused_and_ports_discarded_like_docker(bb) -> None:  # type: ignore[no-untyped-def]
    # docker: "network-scoped aliases are only supported for user-defined networks" (exit 125)
    for net in ([], ["--network", "bridge"], ["--network", "none"], ["--network", "host"]):
        r = bb.fail("run", "--rm", *net, "--network-alias", "x", "busybox", "true")
        assert r.rc == 125 and r.err.strip() == \
            "Error: network-scoped aliases are only supported for user-defined networks", r.err
    assert not bb("ps", "-aq").out.strip()
    r = bb("run", "--rm", "--network", "host", "-p", "18931:80", "busybox", "true")
    assert r.err == "WARNING: Published ports are discarded when using host network mode\n", r.err
    r = bb("run", "--rm", "--network", "none", "-p", "18931:80", "busybox", "true")
    assert r.err == ""  # docker says nothing with none
    cid = bb("create", "--network", "none", "-p", "18932:80", "busybox", "true").out.strip()
    assert bb("port", cid).out == ""
    bb("rm", cid)
