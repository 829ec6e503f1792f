"""``pallet inspect NAME...``: low-level information as a docker-shaped JSON array. Images
today; containers are looked up first once the engine's container code registers
``pallet.engine.containers`` support here (``--type`` picks one)."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("inspect", help="return low-level information on images")
    p.add_argument("names", nargs="+", metavar="NAME|ID")
    p.add_argument("-f", "--format", help="a template such as '{{.Id}}', or json")
    p.add_argument("--type", choices=["container", "image"], default=None, help="only this kind of object")
    p.set_defaults(func=_inspect)


def _inspect(g: Any, ns: argparse.Namespace) -> int:
    from pallet.cli.image import inspect_images

    if ns.type in (None, "container"):  # engine hook: containers first, as docker does
        from pallet.cli.ps_cmd import inspect_containers

        rc = inspect_containers(g, ns.names, ns.format, strict=ns.type == "container")
        if rc != 2:
            return rc

    return inspect_images(g, ns.names, ns.format)
