"""What the benchmarks share: timing and tables, a throw-away engine root with the base
image, an OCI layout exported from our store, and an isolated containers-storage.

Every benchmark works inside one temporary directory (``Workspace``) and registers a
cleanup for each thing it makes; the cleanups run in reverse order even when a
benchmark fails, and never touch anything outside the workspace (the reference tools
get their own ``--root``/``--runroot``, so the host's containers-storage is untouched).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from paas.config import Settings  # noqa: E402
from paas.engine.baseimages import BUSYBOX_REF, DEBIAN_REF, build_busybox, build_debian  # noqa: E402
from paas.engine.engine import Engine  # noqa: E402
from paas.engine.images import Image, ImageStore  # noqa: E402

PAAS = REPO / ".venv" / "bin" / "paas"
BASE_CACHE_ENV = "PAAS_BENCH_BASE"  # set by bench/run: an engine root that holds the base image
FULL_RUNS = 7
QUICK_RUNS = 3


# --- arguments, timing, tables ---


def arguments(description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None
              ) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RUNS} runs instead of {FULL_RUNS}")
    parser.add_argument("--runs", type=int, default=0, help="number of runs (overrides --quick)")
    parser.add_argument("--base", choices=("debian", "busybox"), default="debian",
                        help="the base image (debian:bookworm needs the Debian mirror)")
    parser.add_argument("--base-cache", type=Path, default=None,
                        help=f"an engine root holding the base already (default ${BASE_CACHE_ENV})")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the tools' output")
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    args.runs = args.runs or (QUICK_RUNS if args.quick else FULL_RUNS)
    if args.base_cache is None and os.environ.get(BASE_CACHE_ENV):
        args.base_cache = Path(os.environ[BASE_CACHE_ENV])
    return args


@contextlib.contextmanager
def stopwatch(samples: list[float]) -> Iterator[None]:
    """Append the wall time of the block, in ms, to samples."""
    start = time.perf_counter()
    yield
    samples.append((time.perf_counter() - start) * 1000)


def median(samples: Sequence[float]) -> float | None:
    return statistics.median(samples) if samples else None


def fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def ratio(ours: float | None, ref: float | None) -> float | None:
    return None if ours is None or not ref else ours / ref


def fmt_ratio(ours: float | None, ref: float | None) -> str:
    return "n/a" if ours is None or not ref else f"{ours / ref:.2f}x"


def verdict(ratio: float | None, target: float | None) -> str:
    if target is None:
        return ""
    if ratio is None:
        return "not measured"
    return f"{'ok' if ratio <= target else 'MISSED'} (<= {target:g}x)"


def print_table(
    title: str, header: Sequence[str], rows: Sequence[Sequence[str]], notes: Sequence[str]
) -> None:
    """A GitHub-markdown table, so the output pastes into docs/benchmarks.md as is."""
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    print(f"\n### {title}\n")
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))
    print()
    for note in (*notes, machine_note()):
        print(f"- {note}")
    print(flush=True)


def machine_note() -> str:
    """When and where: the tables are only comparable on one machine and one load."""
    load = Path("/proc/loadavg").read_text().split()[0]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (f"measured {stamp} on {os.cpu_count()} cores, Linux {os.uname().release}; "
            f"1-min load average {load} at the end")


def say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


# --- the workspace and its cleanups ---


@dataclass
class Workspace:
    """A temp dir plus cleanups run last-in first-out, each one even if another fails."""

    root: Path
    cleanups: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    def on_exit(self, what: str, fn: Callable[[], None]) -> None:
        self.cleanups.append((what, fn))

    def close(self) -> None:
        failed = []
        for what, fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as exc:  # a cleanup failing must not stop the others
                failed.append(f"{what}: {exc}")
        unmount_below(self.root)
        shutil.rmtree(self.root, ignore_errors=True)
        for failure in failed:
            say(f"cleanup failed: {failure}")


@contextlib.contextmanager
def workspace(name: str) -> Iterator[Workspace]:
    # SIGTERM (a timeout, a killed job) must clean up too: turn it into SystemExit.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    ws = Workspace(Path(tempfile.mkdtemp(prefix=f"paas-bench-{name}-")))
    try:
        yield ws
    finally:
        ws.close()


@contextlib.contextmanager
def sigterm_deferred() -> Iterator[None]:
    """Hold a SIGTERM until the block is over: killing a tool half-way (subprocess.run kills
    its child when interrupted) can orphan what it was starting, out of the cleanup's reach."""
    got: list[int] = []
    old = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
        if got:
            sys.exit(128 + signal.SIGTERM)


def unmount_below(root: Path) -> None:
    """Lazily unmount whatever is still mounted under root (deepest first)."""
    prefix = str(root.resolve()) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted({p for p in points if p.startswith(prefix)}, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def run(argv: Sequence[str], *, env: dict[str, str] | None = None, verbose: bool = False,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a tool; on failure show its output and raise."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, env=env, check=False,
                          stdin=subprocess.DEVNULL)
    if verbose:
        sys.stderr.write(proc.stdout + proc.stderr)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc


# --- our engine ---


def free_subnet(prefixlen: int = 24) -> str:
    """A random 10.2xx.yy.0/24 (or larger: /22 holds 1,021 containers) that no host route overlaps."""
    routes = run(["ip", "-4", "-o", "route", "show", "table", "all"]).stdout
    used = []
    for line in routes.splitlines():
        words = line.split()
        dest = words[1] if words[0] in ("local", "broadcast", "unicast", "multicast") else words[0]
        with contextlib.suppress(ValueError):  # "default" and the like
            used.append(ipaddress.IPv4Network(dest, strict=False))
    while True:
        third = random.randint(0, 255) & ~((1 << (24 - prefixlen)) - 1)
        net = ipaddress.IPv4Network(f"10.{random.randint(200, 250)}.{third}.0/{prefixlen}")
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return str(net)


@dataclass
class Ours:
    """One engine root used both in-process (``engine``) and by the CLI (``cli_env``)."""

    engine: Engine
    settings: Settings

    @property
    def images(self) -> ImageStore:
        return self.engine.images

    def cli_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAAS_")}
        env.update(self.settings.to_env())
        return env


def open_ours(ws: Workspace, prefixlen: int = 24, name: str = "home") -> Ours:
    """A fresh engine root at <ws>/home/engine, the path the CLI derives from PAAS_HOME.

    The bridge name is the one Settings derives from the (random) subnet, so the CLI and
    the in-process engine share one network; cleanup_all removes it and every container.
    """
    settings = Settings(home=ws.root / name, subnet=free_subnet(prefixlen))
    engine = Engine.open(settings.engine_root, settings.bridge_name, settings.subnet)
    ws.on_exit("engine cleanup_all", engine.runtime.cleanup_all)
    return Ours(engine, settings)


def base_ref(base: str) -> str:
    return DEBIAN_REF if base == "debian" else BUSYBOX_REF


def ensure_base(store: ImageStore, base: str, cache: Path | None) -> Image:
    """The base image in store: copied from a cache root when given, else built here."""
    ref = base_ref(base)
    if store.has(ref):
        return store.get(ref)
    if cache is not None and ImageStore(cache).has(ref):
        return copy_image(ImageStore(cache), store, ref)
    say(f"building {ref} (debootstrap takes about a minute)" if base == "debian" else f"building {ref}")
    log: list[str] = []
    try:
        return (build_debian if base == "debian" else build_busybox)(store, log.append)
    except Exception:
        sys.stderr.write("\n".join(log[-40:]) + "\n")
        raise


def copy_image(src: ImageStore, dst: ImageStore, ref: str) -> Image:
    """Copy an image's blobs and snapshots (cp -a: unpacking 160 MB again takes far longer)."""
    image = src.get(ref)
    for digest in (image.id, image.manifest_digest, *image.layers):
        target = dst.content.path(digest)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src.content.path(digest), target)
    for chain_id in image.chain_ids:
        target = dst.snapshots.path(chain_id).parent
        if not target.exists():
            run(["cp", "-a", str(src.snapshots.path(chain_id).parent), str(target)])
    added = dst.add_image(src.content.read_bytes(image.id), image.layers)
    dst.tag(added, ref)
    return added


def make_base_cache(root: Path, base: str) -> None:
    """Build the base image (and busybox, which push.py uses) once into root (bench/run)."""
    store = ImageStore(root)
    ensure_base(store, "busybox", None)
    ensure_base(store, base, None)


# --- OCI layout of one of our images (what skopeo reads) ---


def export_oci_layout(store: ImageStore, image: Image, out: Path, tag: str) -> Path:
    """An OCI image layout dir of the image, its blobs hardlinked from our content store."""
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (out / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    for digest in (image.id, image.manifest_digest, *image.layers):
        target = blobs / digest.split(":", 1)[1]
        if not target.exists():
            os.link(store.content.path(digest), target)
    manifest = store.content.read_bytes(image.manifest_digest)
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image.manifest_digest,
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": tag},
    }]}
    (out / "index.json").write_text(json.dumps(index))
    return out


# --- an isolated containers-storage for buildah / podman / skopeo ---


@dataclass(frozen=True)
class Storage:
    root: Path
    runroot: Path

    def opts(self) -> list[str]:
        return ["--root", str(self.root), "--runroot", str(self.runroot), "--storage-driver", "overlay"]

    def buildah(self, *args: str) -> list[str]:
        return ["buildah", *self.opts(), *args]

    def transport(self, ref: str) -> str:
        return f"containers-storage:[overlay@{self.root}+{self.runroot}]{ref}"


def open_storage(ws: Workspace) -> Storage:
    storage = Storage(ws.root / "cstorage", ws.root / "crunroot")
    ws.on_exit("containers-storage", lambda: _drop_storage(storage))
    return storage


def _drop_storage(storage: Storage) -> None:
    if not storage.root.exists():
        return
    run(storage.buildah("rm", "--all"), check=False)
    run(storage.buildah("rmi", "--all", "--force"), check=False)
    unmount_below(storage.root)
    unmount_below(storage.runroot)


def cli_verb_exists(verb: str) -> bool:
    """Whether ``paas engine <verb>`` is there yet (the verbs land while these benches are written)."""
    proc = subprocess.run([str(PAAS), "engine", verb, "--help"], capture_output=True, check=False)
    return proc.returncode == 0


# --- host changes a reference tool needs, undone byte for byte ---


def replace_file(ws: Workspace, path: Path, text: str) -> None:
    """Write text to path for the bench; the cleanup puts back the old bytes (or no file)."""
    old = path.read_bytes() if path.exists() else None

    def restore() -> None:
        if old is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(old)
    ws.on_exit(f"restore {path}", restore)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def mount_cgroup_v1(ws: Workspace, controller: str) -> None:
    """Mount a v1 hierarchy of controller at /sys/fs/cgroup/<controller> if absent; undone after."""
    point = Path("/sys/fs/cgroup") / controller
    if point.is_mount():
        return
    made = not point.exists()
    if made:
        point.mkdir()
    ws.on_exit(f"unmount {point}", lambda: _drop_mount(point, made))
    run(["mount", "-t", "cgroup", "-o", controller, "cgroup", str(point)])


def remove_new_cgroups(ws: Workspace, name: str) -> None:
    """A tool's parent group (podman's libpod_parent) in every hierarchy: removed after, if new."""
    base = Path("/sys/fs/cgroup")
    before = {h for h in base.iterdir() if (h / name).exists()}

    def drop() -> None:
        for hierarchy in base.iterdir():
            group = hierarchy / name
            if hierarchy not in before and group.is_dir():
                groups = [group, *(p for p in group.rglob("*") if p.is_dir())]
                for sub in sorted(groups, key=lambda p: len(p.parts), reverse=True):
                    with contextlib.suppress(OSError):
                        sub.rmdir()
    ws.on_exit(f"cgroups {name}", drop)


def _drop_mount(point: Path, made: bool) -> None:
    if point.is_mount():
        # groups a tool left in the hierarchy would keep it alive, hidden, after the umount
        groups = [p for p in point.rglob("*") if p.is_dir()]
        for group in sorted(groups, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                group.rmdir()
        run(["umount", str(point)])
    if made:
        point.rmdir()


# --- memory of processes ---


def smaps_rollup(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in KiB, from /proc/PID/smaps_rollup; (0, 0) if it is gone."""
    values = {"Rss:": 0, "Pss:": 0}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                words = line.split()
                if words and words[0] in values:
                    values[words[0]] = int(words[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return values["Rss:"], values["Pss:"]


def children(pid: int) -> list[int]:
    """Direct children of pid (every thread's), from /proc/PID/task/*/children."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def descendants(pid: int) -> list[int]:
    found, todo = [], children(pid)
    while todo:
        child = todo.pop()
        found.append(child)
        todo += children(child)
    return found


def fmt_mib(kib: float | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.2f} MiB"
