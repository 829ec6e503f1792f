"""An image whose layer stack holds the same layer twice runs (overlayfs refuses a repeated
lowerdir with ELOOP, so the engine and the store list it once, at its top-most place)."""
from __future__ import annotations

import json

import pytest
from engine_helpers import bb_fixture  # noqa: F401  (registers the 'bb' fixture)

pytestmark = pytest.mark.privileged


def test_image_with_a_repeated_layer_runs(bb, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "f").write_text("same\n")
    # at the root: a COPY into a directory would carry that directory's mtime (the second of the
    # step), and two steps in different seconds would make two layers
    (tmp_path / "Dockerfile").write_text("FROM busybox\nCOPY f /\nRUN rm /f\nCOPY f /\n")
    bb("build", "-q", "-t", "twice", str(tmp_path))
    layers = json.loads(bb("image", "inspect", "twice").out)[0]["RootFS"]["Layers"]
    assert len(layers) == 4 and layers[1] == layers[3], layers  # the two COPYs made one layer
    assert bb("run", "--rm", "--network", "none", "twice", "cat", "/f").out == "same\n"
