"""The build executor: stages -> image, one step per instruction, with the build cache.

Each step turns a ``State`` (full image config + layer descriptors + cache key) into the next:
metadata instructions change the config and add an ``empty_layer`` history entry; RUN, COPY,
ADD (and WORKDIR when it creates the directory) commit the overlay upper dir as a layer
(an empty diff is an ``empty_layer`` entry, as docker does). Only the target stage becomes an
image in the store; earlier stages are states whose layers COPY --from and FROM use.

Output follows ``docker build`` (legacy builder): ``Step N/M : INSTR``, `` ---> Using cache``,
`` ---> <id>``, ``Successfully built <id>``, ``Successfully tagged NAME``.
"""
from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TextIO

from pallet.build import dispatch, stages
from pallet.build import instructions as ins
from pallet.build.cache import BuildCache, step_key
from pallet.build.parser import DockerfileError
from pallet.build.records import field, record
from pallet.build.shell_lex import ShellLex
from pallet.build.steps import StepRunner
from pallet.errors import InvalidArgument, PalletError
from pallet.oci import mediatypes as mt

if TYPE_CHECKING:
    from pallet.build.context import BuildContext

ImageRecord = Any  # pallet.store.ImageRecord or build.quickstore.QuickRecord (same fields)

BUILTIN_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
                "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")


class BuildFailed(PalletError):
    """A RUN step failed (docker build exits 1)."""

    exit_code = 1


@record
class BuildOptions:
    tags: list[str] = field(default_factory=list)    # as given to -t (validated by the CLI)
    build_args: dict[str, str | None] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    quiet: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    network: str = "none"


@record
class State:
    key: str
    config: dict[str, Any]          # the whole image config
    layers: list[dict[str, Any]]    # {"mediaType", "digest", "size"}, one per diff_id

    @property
    def cc(self) -> dict[str, Any]:
        return self.config.setdefault("config", {})

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config.get("rootfs", {}).get("diff_ids", []))

    def raw(self) -> bytes:
        return json.dumps(self.config, separators=(",", ":")).encode()

    def short_id(self) -> str:
        return self.image_id().split(":", 1)[1][:12]

    def image_id(self) -> str:
        import hashlib

        return "sha256:" + hashlib.sha256(self.raw()).hexdigest()


@record
class StageCtx:
    stage: stages.Stage
    args: dict[str, str | None] = field(default_factory=dict)   # declared ARGs -> value
    cmd_set: bool = False


class Builder:
    def __init__(self, store: Any, runroot: str, ctx: BuildContext, df: stages.Dockerfile,
                 opts: BuildOptions, out: TextIO, resolve_base: Callable[[str], ImageRecord] | None = None
                 ) -> None:
        self.store = store
        self.runroot = runroot
        self.ctx = ctx
        self.df = df
        self.opts = opts
        self.out = out
        self.cache = BuildCache(store)
        self.resolve_base = resolve_base or store.resolve_image
        self.lex = ShellLex(df.escape)
        self.done: dict[int, State] = {}
        self.used_args: set[str] = set()
        self.meta: dict[str, str] = {}
        self.steps = StepRunner(self)

    # -- output -----------------------------------------------------------------------------
    def say(self, text: str) -> None:
        if not self.opts.quiet:
            self.out.write(text + "\n")
            self.out.flush()

    def err(self, msg: str, line: int) -> DockerfileError:
        return DockerfileError(msg, line, self.df.filename)

    # -- build ------------------------------------------------------------------------------
    def build(self) -> ImageRecord:
        for k, v in self.opts.build_args.items():
            if not k:
                raise InvalidArgument(f"invalid build arg {k}={v}: empty name")
        self.meta = stages.meta_arg_values(self.df, self.opts.build_args)
        self.used_args.update(k for a in self.df.meta_args for k, _ in a.pairs)
        plan = stages.plan(self.df, self.opts.target, self.meta)
        total = len(self.df.meta_args) + sum(1 + len(st.commands) for st in plan) + len(self.opts.labels)
        n = 0
        for a in self.df.meta_args:
            n += 1
            self.say(f"Step {n}/{total} : {a.original}")
        state: State | None = None
        for st in plan:
            sc = StageCtx(st)
            n += 1
            self.say(f"Step {n}/{total} : {st.from_.original}")
            state = self.from_(sc)
            for inst in st.commands:
                n += 1
                self.say(f"Step {n}/{total} : {inst.original}")
                state = self.step(sc, state, inst)
            if st is plan[-1]:
                for k, v in sorted(self.opts.labels.items()):  # docker: one LABEL step per --label
                    n += 1
                    text = f"LABEL {k}={v}"
                    self.say(f"Step {n}/{total} : {text}")
                    label = ins.Label(st.from_.line, st.from_.line, text, pairs=[(k, v)])
                    state = self.steps.run(sc, state, label)  # not expanded (docker's NoExp)
            self.done[st.index] = state
        assert state is not None
        unused = sorted(k for k, v in self.opts.build_args.items()
                        if k not in self.used_args and k not in BUILTIN_ARGS)
        if unused:
            self.say(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed")
        return self.write(state)

    def write(self, state: State) -> ImageRecord:
        """The target as an image. A fully cached rebuild finds it already stored and only
        moves the tags that point elsewhere (nothing is written, the Store is not even loaded)."""
        from pallet.build.quickstore import familiar, tag_key

        keys = [tag_key(t) for t in self.opts.tags]
        rec = self._existing(state)
        if rec is None or any(k is None or k not in {str(x) for x in rec.repo_tags} for k in keys):
            from pallet.image.static import StaticImage
            from pallet.oci.digest import Digest
            from pallet.oci.reference import Reference
            full = self.full_store()
            refs = [Reference.parse(t) for t in self.opts.tags]
            if rec is None:
                from pallet.build.commit import stored_layer

                layers = [stored_layer(full, Digest.parse(d["digest"]), Digest.parse(diff), d["size"], d["mediaType"])
                          for d, diff in zip(state.layers, state.diff_ids, strict=True)]
                rec = full.write_image(StaticImage(state.raw(), layers), refs)
            else:
                for r in refs:
                    full.tag(Digest.parse(str(rec.id)), r)
        self.say(f"Successfully built {str(rec.id).split(':', 1)[1][:12]}")
        for t, k in zip(self.opts.tags, keys, strict=True):
            self.say(f"Successfully tagged {familiar(k) if k else t}")
        return rec

    def full_store(self) -> Any:
        """The real Store (the builder may hold a QuickStore)."""
        full = getattr(self.store, "full", None)
        return full() if callable(full) else self.store

    def _existing(self, state: State) -> ImageRecord | None:
        from pallet.errors import NotFound

        try:
            return self.store.get_image(state.image_id())
        except NotFound:
            return None

    # -- FROM -------------------------------------------------------------------------------
    def from_(self, sc: StageCtx) -> State:
        st = sc.stage
        base, parent = stages.resolve_from(self.df, st, self.meta)
        if parent is not None:
            prev = self.done[parent.index]
            cfg = copy.deepcopy(prev.config)
            cfg["config"] = dispatch.begin_stage(cfg.get("config"))
            state = State(step_key(prev.key, "stage"), cfg, copy.deepcopy(prev.layers))
        elif base.lower() == "scratch":
            from pallet.oci.manifest import Platform

            p = Platform.host()
            cfg = {"architecture": p.architecture, "os": p.os, "config": dispatch.begin_stage(None),
                   "rootfs": {"type": "layers", "diff_ids": []}, "history": []}
            state = State("scratch", cfg, [])
        else:
            try:
                rec = self.resolve_base(base)
            except PalletError as e:
                raise type(e)(f"{self.df.filename}:{st.from_.line}: FROM {base}: {e}") from None
            cfg = {k: copy.deepcopy(v) for k, v in rec.config.items()
                   if k not in ("comment", "author", "container", "container_config", "docker_version")}
            cfg["config"] = dispatch.begin_stage(cfg.get("config"))
            layers = [{"mediaType": d.media_type, "digest": str(d.digest), "size": d.size} for d in rec.layer_blobs]
            state = State("image:" + str(rec.id), cfg, layers)
            self.say(f" ---> {str(rec.id).split(':', 1)[1][:12]}")
            triggers = list(cfg["config"].get("OnBuild") or [])
            cfg["config"].pop("OnBuild", None)
            if triggers:
                self.say(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}")
                state = self.run_triggers(sc, state, triggers)
        return state

    def run_triggers(self, sc: StageCtx, state: State, triggers: list[str]) -> State:
        from pallet.build.parser import parse

        for t in triggers:
            parsed = parse(t + "\n", self.df.filename)
            for node in parsed.nodes:
                node.line = node.end_line = sc.stage.from_.line
                inst = ins.from_node(node, self.df.escape, self.df.filename)
                if isinstance(inst, (ins.From, ins.Onbuild, ins.Maintainer)):
                    raise self.err(f"{inst.name} isn't allowed as an ONBUILD trigger", node.line)
                state = self.step(sc, state, inst)
        return state

    # -- environment ------------------------------------------------------------------------
    def arg_values(self, sc: StageCtx, cfg: dict[str, Any]) -> dict[str, str]:
        """Build args visible now (declared in the stage, valued, not overridden by ENV)."""
        env = dispatch.env_map(cfg)
        out: dict[str, str] = {}
        for k, v in sc.args.items():
            if k in env:
                continue
            given = self.opts.build_args.get(k)
            if given is not None:
                out[k] = given
            elif v is not None:
                out[k] = v
            elif k in self.meta:
                out[k] = self.meta[k]
        return out

    def expand_env(self, sc: StageCtx, cfg: dict[str, Any]) -> dict[str, str]:
        env = dispatch.env_map(cfg)
        for k, v in self.arg_values(sc, cfg).items():
            env.setdefault(k, v)
        return env

    # -- one step ---------------------------------------------------------------------------
    def step(self, sc: StageCtx, state: State, inst: ins.Instruction) -> State:
        env = self.expand_env(sc, state.cc)
        try:
            ex = inst.expand(lambda w: self.lex.process_word(w, env))
        except InvalidArgument as e:
            raise self.err(str(e), inst.line) from None
        try:
            return self.steps.run(sc, state, ex)
        except DockerfileError:
            raise
        except BuildFailed:
            raise
        except PalletError as e:
            msg = str(e)
            raise type(e)(f"{self.df.filename}:{inst.line}: {msg}") from None

    def cached(self, key: str) -> State | None:
        if self.opts.no_cache:
            return None
        got = self.cache.get(key)
        if got is None:
            return None
        self.say(" ---> Using cache")
        state = State(key, got["config"], got["layers"])
        self.say(f" ---> {state.short_id()}")
        return state

    def remember(self, state: State) -> State:
        self.cache.put(state.key, {"config": state.config, "layers": state.layers})
        self.say(f" ---> {state.short_id()}")
        return state

    def next_state(self, state: State, key: str, created_by: str, layer: dict[str, Any] | None,
                   diff_id: str | None, cfg: dict[str, Any] | None = None) -> State:
        config = copy.deepcopy(state.config)
        if cfg is not None:
            config["config"] = cfg
        ts = dispatch.now()
        config["created"] = ts
        config.setdefault("history", []).append(
            dispatch.history_entry(created_by, empty=layer is None, created=ts))
        layers = list(state.layers)
        if layer is not None and diff_id is not None:
            config.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"].append(diff_id)
            layers.append(layer)
        config["config"] = dispatch.ordered(config.get("config") or {})
        return State(key, config, layers)

    def commit_upper(self, upper: str, mountpoints: bool = False) -> tuple[dict[str, Any] | None, str | None]:
        """The upper dir as a layer (None when nothing changed). ``mountpoints``: drop the empty
        bind-mount targets a --network host RUN leaves (/etc/hosts, /etc/resolv.conf)."""
        if mountpoints:
            from pallet.image.diff import engine_mountpoints

            for rel in engine_mountpoints(upper):
                os.unlink(os.path.join(upper, rel))
        if not any(True for _ in os.scandir(upper)):
            return None, None
        from pallet.build.commit import layer_from_upper

        new = layer_from_upper(self.full_store(), upper, adopt=True)
        return {"mediaType": mt.DOCKER_LAYER, "digest": str(new.diff_id), "size": new.size}, str(new.diff_id)

    def lowerdirs(self, state: State) -> list[str]:
        return unique_lowers(str(self.store.layer_dir(_digest(d))) for d in reversed(state.diff_ids))

    def cleanup(self, path: str) -> None:
        import shutil

        shutil.rmtree(path, ignore_errors=True)


def unique_lowers(dirs: Iterable[str]) -> list[str]:
    """Top-first layer dirs with repeats dropped: two steps can make the same layer (same
    diff-id, one dir in the store) and overlayfs refuses a lowerdir twice (ELOOP). The top copy
    already shows everything the lower one would (its files, whiteouts and opaque dirs)."""
    seen: set[str] = set()
    out = []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def _digest(d: str) -> Any:
    from pallet.oci.digest import Digest

    return Digest.parse(d)
