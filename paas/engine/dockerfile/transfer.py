"""The COPY and ADD steps: their sources resolved, their cache inputs, and the layer they make.

Sources are resolved before the cache lookup, since the key holds their content: context
sources by `BuildContext.checksum`, a `--from` stage or image by its image id and the paths,
an ADD URL by the digest of what was fetched (so ADD of a URL always fetches). Only a miss
touches the image's files: chown names, destination rules and the staging tree (copy.py).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from paas.engine.dockerfile import stages
from paas.engine.dockerfile.copy import (
    Staging,
    copy_context,
    copy_file,
    copy_image,
    destination,
    parse_chmod,
    parse_chown,
)
from paas.engine.dockerfile.imagefs import ImageFS
from paas.engine.dockerfile.metadata import workdir_path
from paas.engine.dockerfile.parser import Instruction
from paas.engine.dockerfile.remote import Fetched, fetch, is_url, url_basename
from paas.engine.dockerfile.state import Outcome, StageState
from paas.engine.dockerfile.substitute import expand, expand_words
from paas.engine.images import Image
from paas.errors import BuildError, DockerfileError

if TYPE_CHECKING:
    from paas.engine.dockerfile.builder import Build

Make = Callable[[], Outcome]


@dataclass(frozen=True, slots=True)
class Source:
    word: str  # the source as written, after substitution
    rels: tuple[str, ...] = ()  # context paths it matched
    fetched: Fetched | None = None  # an ADD URL's content


def transfer_step(build: Build, state: StageState, ins: Instruction) -> tuple[dict[str, Any], Make]:
    """The cache inputs of a COPY/ADD step, and how to make its layer on a miss."""
    where, escape, env = build.where(ins), build.dockerfile.escape, state.variables()
    if ins.exec_form is not None:
        words = [expand(word, env, escape) for word in ins.exec_form]
    else:
        words = expand_words(ins.args, env, escape)
    if len(words) < 2:
        raise DockerfileError(f"{where}: requires at least two arguments, a source and a destination")
    flags = {name: expand(value, env, escape) for name, value in ins.flags if name != "from"}
    chmod = parse_chmod(flags["chmod"], where) if flags.get("chmod") else None
    sources, dest_word = words[:-1], words[-1]
    inputs: dict[str, Any] = {"dest": workdir_path(state.config.working_dir, dest_word),
                              "dest_dir": dest_word.endswith("/"), "flags": flags}
    from_flag = ins.flag("from")
    if from_flag:
        image = _from_image(build, state, from_flag, where)
        inputs.update({"from": image.id, "sources": sources})
        return inputs, lambda: _make_from(build, state, image, sources, dest_word, flags, chmod, where)
    resolved = [_resolve(build, ins, word, where, flags.get("checksum")) for word in sources]
    rels = [rel for source in resolved for rel in source.rels]
    inputs["sources"] = [[s.word, list(s.rels), s.fetched.digest if s.fetched else ""] for s in resolved]
    inputs["checksum"] = build.context.checksum(rels) if rels else ""
    return inputs, lambda: _make(build, state, ins, resolved, dest_word, flags, chmod)


def _resolve(build: Build, ins: Instruction, word: str, where: str, checksum: str | None) -> Source:
    if not is_url(word):
        if checksum:
            raise BuildError(f"{where}: --checksum only applies to URL sources")
        return Source(word, tuple(build.context.resolve(word, where)))
    if ins.keyword != "ADD":
        raise BuildError(f"{where}: source can't be a URL for COPY (use ADD): {word}")
    out = build.scratch / f"url-{len(os.listdir(build.scratch))}"
    fetched = fetch(word, out)
    if checksum and checksum != fetched.digest:
        raise BuildError(f"{where}: {word}: checksum mismatch: expected {checksum}, got {fetched.digest}")
    if fetched.mtime is not None:
        os.utime(out, (fetched.mtime, fetched.mtime))
    return Source(word, fetched=fetched)


def _from_image(build: Build, state: StageState, value: str, where: str) -> Image:
    """The image of a `--from` stage (by name or index) or, failing that, of an image ref."""
    name = expand(value, stages.defined(build.meta), build.dockerfile.escape)
    ref = stages.stage_ref(build.dockerfile, state.stage.index, name, where)
    if ref is not None:
        image = build.results.get(ref.index)
        if image is None:
            raise BuildError(f"{where}: --from={name}: that stage has no filesystem")
        return image
    if build.images.has(name) or build.options.pull is not None:
        return build.image(name, where)
    raise BuildError(f"{where}: --from={name}: no build stage or image named {name!r}")


def _staging(build: Build, state: StageState, flags: dict[str, str], chmod: int | None,
             where: str) -> tuple[Staging, ImageFS]:
    fs = build.fs(state.image)
    owner = parse_chown(flags["chown"], fs, where) if flags.get("chown") else None
    return Staging(build.staging_dir(), fs, owner, chmod), fs


def _make(build: Build, state: StageState, ins: Instruction, sources: list[Source], dest_word: str,
          flags: dict[str, str], chmod: int | None) -> Outcome:
    where = build.where(ins)
    staging, fs = _staging(build, state, flags, chmod, where)
    count = sum(len(s.rels) or 1 for s in sources)
    dest = destination(fs, state.config.working_dir, dest_word, count, where)
    for source in sources:
        if source.fetched is not None:
            copy_file(staging, source.fetched.path, url_basename(source.word), dest)
            continue
        for rel in source.rels:
            copy_context(staging, build.context, rel, dest, unpack=ins.keyword == "ADD", where=where)
    return Outcome(build.tar(staging.root), state.config)


def _make_from(build: Build, state: StageState, image: Image, sources: list[str], dest_word: str,
               flags: dict[str, str], chmod: int | None, where: str) -> Outcome:
    staging, fs = _staging(build, state, flags, chmod, where)
    source_fs = build.fs(image)
    paths: list[str] = []
    for word in sources:
        found = source_fs.glob(posixpath.join("/", word))
        if not found:
            raise BuildError(f"{where}: {word!r} not found in the --from stage or image")
        paths.extend(found)
    dest = destination(fs, state.config.working_dir, dest_word, len(paths), where)
    copy_image(staging, source_fs, paths, dest)
    return Outcome(build.tar(staging.root), state.config)
