"""One build step per instruction kind: metadata, ARG, WORKDIR, RUN, COPY/ADD.

Every step computes its cache key first (parent key + the instruction after substitution +
for COPY/ADD the source checksum) and returns the cached state on a hit. Steps that touch
files use a fresh upper dir under the store's tmp/ that is always removed, whatever happens.
"""
from __future__ import annotations

import copy
import json
import os
import posixpath
import stat
from typing import TYPE_CHECKING, Any

from pallet.build import dispatch, stages
from pallet.build import instructions as ins
from pallet.build.cache import step_key
from pallet.errors import InvalidArgument, PalletError, Unavailable

if TYPE_CHECKING:
    from pallet.build.executor import Builder, StageCtx, State


class StepRunner:
    def __init__(self, b: Builder) -> None:
        self.b = b

    def run(self, sc: StageCtx, state: State, inst: ins.Instruction) -> State:
        if not isinstance(inst, ins.Run | ins.Copy | ins.Workdir):
            return self.meta(sc, state, inst) if not isinstance(inst, ins.From) else self._no_from(inst)
        if isinstance(inst, ins.Run):
            return self.run_(sc, state, inst)
        if isinstance(inst, ins.Copy):
            return self.copy(sc, state, inst)
        if isinstance(inst, ins.Workdir):
            return self.workdir(sc, state, inst)
        raise AssertionError(inst)  # pragma: no cover

    def _no_from(self, inst: ins.Instruction) -> State:
        raise self.b.err("FROM is not allowed here", inst.line)

    # -- metadata ---------------------------------------------------------------------------
    def meta(self, sc: StageCtx, state: State, inst: ins.Instruction) -> State:
        b = self.b
        if isinstance(inst, ins.Arg):
            for k, v in inst.pairs:
                sc.args[k] = v
                b.used_args.add(k)
        cfg = copy.deepcopy(state.cc)
        try:
            created_by = dispatch.apply(cfg, inst, cmd_set=sc.cmd_set)
        except InvalidArgument as e:
            raise b.err(str(e), inst.line) from None
        if isinstance(inst, ins.Cmd) and inst.args:
            sc.cmd_set = True
        key = step_key(state.key, "meta", created_by)
        hit = b.cached(key)
        if hit is not None:
            return hit
        new = b.next_state(state, key, created_by, None, None, cfg)
        if isinstance(inst, ins.Maintainer):
            new.config["author"] = inst.value
        return b.remember(new)

    # -- WORKDIR ----------------------------------------------------------------------------
    def workdir(self, sc: StageCtx, state: State, inst: ins.Workdir) -> State:
        from pallet.build.run import new_scratch
        from pallet.build.sandbox import in_overlay

        b = self.b
        cfg = copy.deepcopy(state.cc)
        wd, created_by = dispatch.workdir(cfg, inst.value)
        key = step_key(state.key, "workdir", created_by)
        hit = b.cached(key)
        if hit is not None:
            return hit
        lowers = b.lowerdirs(state)
        if _exists_dir(lowers, wd):
            return b.remember(b.next_state(state, key, created_by, None, None, cfg))
        scratch = new_scratch(str(b.store.paths.tmp))
        try:
            upper = os.path.join(scratch, "upper")
            os.mkdir(upper)
            in_overlay(scratch, lowers, upper, lambda root, _src: _mkdir_in(root, wd))
            layer, diff = b.commit_upper(upper)
            return b.remember(b.next_state(state, key, created_by, layer, diff, cfg))
        finally:
            b.cleanup(scratch)

    # -- RUN --------------------------------------------------------------------------------
    def run_(self, sc: StageCtx, state: State, inst: ins.Run) -> State:
        b = self.b
        cfg = state.cc
        if "mount" in inst.flags or "security" in inst.flags:
            raise b.err("RUN --mount and --security need BuildKit; pallet build does not support them",
                        inst.line)
        network = inst.flags.get("network") or b.opts.network
        shell = dispatch.shell_of(cfg)
        script = None
        args = dispatch.run_args(cfg, inst)
        if inst.heredocs and inst.prepend_shell:
            from pallet.build.run import heredoc_command

            docs = [(h.name, h.content, h.chomp) for h in inst.heredocs]
            args, script = heredoc_command(shell, inst.args[0], docs)
            shown = shell + [inst.args[0] + "".join("\n" + c + n for n, c, _ in docs)]
        else:
            shown = args
        declared = b.arg_values(sc, cfg)
        created_by = dispatch.run_created_by(shown, declared)
        key = step_key(state.key, "run", created_by, network)
        hit = b.cached(key)
        if hit is not None:
            return hit
        from pallet.build.run import new_scratch, run_container

        env = list(cfg.get("Env") or [])
        names = {e.split("=", 1)[0] for e in env}
        extra = dict(declared)
        for k in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
                  "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            v = b.opts.build_args.get(k)
            if v is not None and k not in extra:
                extra[k] = v
        env += [f"{k}={v}" for k, v in extra.items() if k not in names]
        scratch = new_scratch(str(b.store.paths.tmp))
        try:
            upper, work = os.path.join(scratch, "upper"), os.path.join(scratch, "work")
            os.mkdir(upper)
            os.mkdir(work)
            import uuid

            from pallet.build import volumes

            lowers = b.lowerdirs(state)
            vols = volumes.prepare(lowers, upper, cfg.get("Volumes"))

            shown_id = uuid.uuid4().hex[:12]
            b.say(f" ---> Running in {shown_id}")
            code, _cid = run_container(lowerdirs=lowers, upperdir=upper, workdir=work,
                                       args=args, env=env, cwd=dispatch.clean_dir(cfg.get("WorkingDir") or "/"),
                                       user=cfg.get("User") or "", network=network, runroot=b.runroot,
                                       scratch=scratch, out=None if b.opts.quiet else b.out,
                                       script=script)
            if code != 0:
                from pallet.build.executor import BuildFailed

                raise BuildFailed(f"The command '{' '.join(shown)}' returned a non-zero code: {code}")
            b.say(f"Removing intermediate container {shown_id}")
            volumes.discard(upper, vols)  # docker: writes below a VOLUME go to a throw-away volume
            layer, diff = b.commit_upper(upper, mountpoints=network == "host")
            return b.remember(b.next_state(state, key, created_by, layer, diff))
        finally:
            b.cleanup(scratch)

    # -- COPY / ADD -------------------------------------------------------------------------
    def copy(self, sc: StageCtx, state: State, inst: ins.Copy) -> State:
        from pallet.build.copy import CopyItem, CopyPlan, parse_chmod, run_copy
        from pallet.build.run import new_scratch
        from pallet.build.sandbox import in_overlay

        b = self.b
        what = inst.name
        for unsupported in ("link", "parents", "exclude", "checksum", "keep-git-dir"):
            if unsupported in inst.flags:
                raise b.err(f"{what} --{unsupported} needs BuildKit; pallet build does not support it",
                            inst.line)
        chmod_text = inst.flags.get("chmod")
        chmod = parse_chmod(chmod_text) if chmod_text else None
        chown = inst.flags.get("chown") or None
        from_ref = inst.flags.get("from")
        env = b.expand_env(sc, state.cc)
        plan = CopyPlan([], inst.dest, dispatch.clean_dir(state.cc.get("WorkingDir") or "/"), chown, chmod,
                        inst.is_add, keep_owner=bool(from_ref) and not chown, what=what)
        source_lowers = None
        scratch = new_scratch(str(b.store.paths.tmp))
        try:
            if from_ref:
                st = stages.copy_from_stage(b.df, sc.stage, from_ref, inst.line)
                if st is not None:
                    src_state = b.done[st.index]
                    src_key = src_state.key
                    source_lowers = b.lowerdirs(src_state)
                else:
                    try:
                        rec = b.resolve_base(from_ref)
                    except PalletError as e:
                        raise type(e)(f"{what} --from={from_ref}: no build stage or image named {from_ref!r} "
                                      f"({e})") from None
                    src_key = "image:" + str(rec.id)
                    from pallet.build.executor import unique_lowers

                    source_lowers = unique_lowers(str(p) for p in b.store.lowerdirs(rec))
                plan.from_patterns = list(inst.sources)
                checksum = src_key + "\0" + "\0".join(inst.sources)
                kind = "multi" if len(inst.sources) > 1 else "file"
            else:
                checksum, kind = self._context_items(inst, plan, scratch)
            for name, data, expand in inst.contents:
                body = b.lex.process_heredoc(data, env) if expand else data
                plan.items.append(CopyItem("", name, content=body.encode()))
                checksum += "\0heredoc\0" + name + "\0" + body
            if inst.contents and not inst.sources:
                kind = "file" if len(inst.contents) == 1 else "multi"
            import hashlib

            digest = hashlib.sha256(checksum.encode("utf-8", "surrogateescape")).hexdigest()
            chown_comment = f"--chown={chown}" if chown else ""
            created_by = (" ".join(dispatch.shell_of(state.cc)) +
                          f" #(nop) {what} {chown_comment}{kind + ':' if kind else ''}{digest} in {inst.dest} ")
            key = step_key(state.key, what, json.dumps(inst.flags, sort_keys=True), digest, inst.dest,
                           plan.workdir)
            hit = b.cached(key)
            if hit is not None:
                return hit
            upper = os.path.join(scratch, "upper")
            os.mkdir(upper)
            in_overlay(scratch, b.lowerdirs(state), upper,
                       lambda root, src: run_copy(root, src, plan), source_lowerdirs=source_lowers)
            layer, diff = b.commit_upper(upper)
            return b.remember(b.next_state(state, key, created_by, layer, diff))
        finally:
            b.cleanup(scratch)

    def _context_items(self, inst: ins.Copy, plan: Any, scratch: str) -> tuple[str, str]:
        from pallet.build.copy import CopyItem

        b = self.b
        parts: list[str] = []
        n_items, first_dir = 0, False
        for src in inst.sources:
            if inst.is_add and (src.startswith("http://") or src.startswith("https://")):
                path, name = _fetch(src, scratch)
                plan.items.append(CopyItem(path, name, remote=True))  # docker never extracts these
                from pallet.build.context import file_digest

                parts.append("url\0" + src + "\0" + file_digest(path))   # content, as docker's cache
                n_items += 1
                continue
            if src.startswith("git@") or src.endswith(".git"):
                raise InvalidArgument(f"{inst.name} of a git repository ({src}) needs BuildKit")
            found = b.ctx.resolve(src, inst.name)
            parts.append(b.ctx.checksum(found))
            for s in found:
                entries = b.ctx.walk(s)
                isdir = stat.S_ISDIR(entries[0][2].st_mode)
                name = posixpath.basename(s.rel.rstrip("/")) or "."
                plan.items.append(CopyItem(s.path, name, entries=[(sub, p) for sub, p, _ in entries[1:]]
                                           if isdir else None))
                n_items += 1
                first_dir = isdir
        kind = "multi" if n_items > 1 else ("dir" if first_dir else "file")
        if n_items == 1 and plan.items[0].remote:
            kind = ""  # docker's history names a downloaded source by its bare hash
        return "\0".join(parts), kind


def _exists_dir(lowers: list[str], path: str) -> bool:
    rel = path.lstrip("/")
    if not rel:
        return True
    for d in lowers:
        p = os.path.join(d, rel)
        if os.path.lexists(p):
            return os.path.isdir(p) and not os.path.islink(p)
    return False


def _mkdir_in(root: str, path: str) -> None:
    from pallet.build.context import secure_join

    cur = "/"
    for part in [p for p in path.split("/") if p]:
        cur = posixpath.join(cur, part)
        host = secure_join(root, cur)
        if not os.path.lexists(host):
            os.mkdir(host, 0o755)
            os.chmod(host, 0o755)
        elif not os.path.isdir(host):
            raise InvalidArgument(f"WORKDIR {path}: {cur} exists and is not a directory")


def _fetch(url: str, scratch: str) -> tuple[str, str]:
    import urllib.parse
    import urllib.request

    name = posixpath.basename(urllib.parse.urlparse(url).path) or "download"
    dest = os.path.join(scratch, "url-" + str(len(os.listdir(scratch))))
    try:
        with urllib.request.urlopen(url, timeout=15) as r, open(dest, "wb") as f:  # noqa: S310
            while True:
                chunk = r.read(1 << 20)
                if not chunk:
                    break
                f.write(chunk)
    except Exception as e:  # noqa: BLE001 - any failure to fetch is one clear line
        reason: Any = getattr(e, "reason", None) or e
        raise Unavailable(f"ADD failed: cannot fetch {url}: {reason}") from None
    os.chmod(dest, 0o600)
    return dest, name
