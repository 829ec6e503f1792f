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
