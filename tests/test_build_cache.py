"""The build cache: hits give the same image; content, mode, build-arg and parent changes miss
(from that step on); mtime and ownership-neutral touches hit; --no-cache rebuilds."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from build_helpers import config, image_tree, write_ctx
from conftest import Pallet

pytestmark = pytest.mark.privileged

DOCKERFILE = """FROM busybox
ARG A=default
RUN echo run1-$RANDOM > /r1
COPY f /f
RUN echo "a=$A" > /a
"""


def steps_cached(out: str) -> list[bool]:
    """For each step after FROM: was it a cache hit?"""
    parts = re.split(r"^Step \d+/\d+ : ", out, flags=re.M)[2:]
    return ["Using cache" in p for p in parts]


def image_id(out: str) -> str:
    m = re.search(r"Successfully built ([0-9a-f]{12})", out)
    assert m, out
    return m.group(1)


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    return write_ctx(tmp_path / "ctx", {"Dockerfile": DOCKERFILE, "f": "content\n"})


@pytest.fixture
def p(tmp_path: Path, busybox_tar: Path) -> Pallet:
    pal = Pallet(tmp_path / "root", tmp_path / "run")
    pal("import", str(busybox_tar), "busybox")
    return pal


def test_rebuild_hits_every_step_same_image(p: Pallet, ctx: Path) -> None:
    first = p("build", "-t", "c", str(ctx)).out
    assert steps_cached(first) == [False] * 4
    second = p("build", "-t", "c", str(ctx)).out
    assert steps_cached(second) == [True] * 4
    assert image_id(first) == image_id(second)
    assert "Running in" not in second


def test_content_change_misses_from_copy(p: Pallet, ctx: Path) -> None:
    p("build", str(ctx))
    (ctx / "f").write_text("changed\n")
    out = p("build", "-t", "c2", str(ctx)).out
    assert steps_cached(out) == [True, True, False, False]
    assert image_tree(p, "c2")["/f"].data == b"changed\n"


def test_mode_change_misses_mtime_does_not(p: Pallet, ctx: Path) -> None:
    p("build", str(ctx))
    os.utime(ctx / "f", (1, 1))
    assert steps_cached(p("build", str(ctx)).out) == [True] * 4
    (ctx / "f").chmod(0o600)
    out = p("build", "-t", "c3", str(ctx)).out
    assert steps_cached(out) == [True, True, False, False]
    assert image_tree(p, "c3")["/f"].mode == 0o600


def test_build_arg_change_misses_at_first_use(p: Pallet, ctx: Path) -> None:
    p("build", str(ctx))
    out = p("build", "-t", "c4", "--build-arg", "A=other", str(ctx)).out
    # the ARG line itself and the first RUN see A (the RUN records |1 A=other)
    assert steps_cached(out) == [True, False, False, False]
    assert image_tree(p, "c4")["/a"].data == b"a=other\n"
    assert steps_cached(p("build", "--build-arg", "A=other", str(ctx)).out) == [True] * 4


def test_parent_change_misses_everything(p: Pallet, ctx: Path, tmp_path: Path) -> None:
    p("build", str(ctx))
    base = write_ctx(tmp_path / "base", {"Dockerfile": "FROM busybox\nRUN touch /new-base\n"})
    p("build", "-t", "busybox", str(base))           # retag busybox to a different image
    out = p("build", str(ctx)).out
    assert steps_cached(out) == [False] * 4


def test_no_cache(p: Pallet, ctx: Path) -> None:
    first = p("build", "-t", "n", str(ctx)).out
    out = p("build", "--no-cache", "-t", "n", str(ctx)).out
    assert steps_cached(out) == [False] * 4
    assert image_id(first) != image_id(out)
    assert config(p, "n")["history"][-1]["created_by"].startswith("|1 A=default")


def test_cached_rebuild_with_new_tag_only_tags(p: Pallet, ctx: Path) -> None:
    first = p("build", "-t", "one", str(ctx)).out
    out = p("build", "-t", "two:v2", "-t", "localhost:5000/x/three", str(ctx)).out
    assert steps_cached(out) == [True] * 4 and image_id(first) == image_id(out)
    assert "Successfully tagged two:v2" in out and "Successfully tagged localhost:5000/x/three:latest" in out
    ids = {line.split()[0]: line.split()[2] for line in p("images").out.splitlines()[1:]}
    assert ids["one"] == ids["two"] == ids["localhost:5000/x/three"]
    r = p.fail("build", "-t", "Bad:Name", str(ctx))
    assert "invalid reference format" in r.err


def test_tag_keys() -> None:
    from pallet.build.quickstore import familiar, tag_key

    assert tag_key("busybox") == "docker.io/library/busybox:latest"
    assert tag_key("a/b:t") == "docker.io/a/b:t"
    assert tag_key("localhost:5000/x:1") == "localhost:5000/x:1"
    assert tag_key("Bad") is None and tag_key("x@sha256:" + "0" * 64) is None
    assert familiar("docker.io/library/busybox:latest") == "busybox:latest"
    assert familiar("docker.io/a/b:t") == "a/b:t" and familiar("h:5000/x:1") == "h:5000/x:1"


def test_removed_image_layers_are_cache_misses(p: Pallet, ctx: Path) -> None:
    p("build", "-t", "gone", str(ctx))
    p("rmi", "gone")                      # its layers go with it (nothing else uses them)
    out = p("build", "-t", "gone", str(ctx)).out
    assert steps_cached(out) == [True, False, False, False]   # ARG hits; the layer steps rebuild
    assert image_tree(p, "gone")["/f"].data == b"content\n"
