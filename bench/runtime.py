"""Container runtime: start-to-exit, memory per container and density, ours vs crun and podman.

Four parts, each in this one process with every side interleaved round by round:

  start     ``busybox /bin/true`` with no network: ours through the Python API
            (Runtime.run + remove, as the pipeline calls it) and through
            ``paas engine run --rm --network none``, vs ``crun run`` of an OCI bundle on the
            same rootfs, ``podman run --rm --network none`` and the ``unshare ... chroot`` floor
  bridge    the same with a private network (ours: bridge; podman: its default bridge)
  memory    RSS and PSS (smaps_rollup) of the host processes each running ``sleep``
            container adds: ours = our init (+ the app), podman = conmon (+ the app)
  density   N ``sleep`` containers on the bridge started one after the other, then all
            removed, then a check that nothing is left behind

Host changes the reference tools need (a v1 hugetlb hierarchy for crun, default_ulimits in
/etc/containers/containers.conf for podman) are undone at the end, even on failure or
SIGTERM. podman gets its own --root/--runroot/--tmpdir under the temp dir and its containers
carry a label; only those are removed. Run: ``.venv/bin/python bench/runtime.py [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import benchlib as b

from paas.engine.baseimages import BUSYBOX_REF
from paas.engine.containers import ContainerSpec
from paas.engine.network import veth_names

CNI_STATE = Path("/var/lib/cni")
CONTAINERS_CONF = Path("/etc/containers/containers.conf")
PODMAN_CONF = '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
ISSUE_MS = {"crun": "12-18", "podman none": "142-182", "podman bridge": "318-375", "floor": "4.0-4.7"}
LABEL = "paas-bench"


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parts", default="start,bridge,memory,density",
                        help="comma-separated: start,bridge,memory,density")
    parser.add_argument("--memory-count", type=int, default=0, help="containers for memory (50; quick 20)")
    parser.add_argument("--density", type=int, default=0, help="containers for density (500; quick 100)")
    parser.add_argument("--jobs", type=int, default=1, help="density: containers started at once (threads)")


# --- set-up -----------------------------------------------------------------------------


@dataclass
class Setup:
    ours: b.Ours
    lowerdirs: tuple[str, ...]
    rootfs: Path
    bundle: Path
    podman: list[str]
    podman_image: str
    token: str = field(default_factory=lambda: secrets.token_hex(4))


def make_bundle(ws: b.Workspace, lowerdirs: tuple[str, ...]) -> tuple[Path, Path]:
    """An OCI bundle (crun spec, /bin/true, no terminal) whose rootfs is a copy of the image."""
    bundle = ws.root / "bundle"
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True)
    for layer in reversed(lowerdirs):  # bottom first; busybox has no whiteouts
        b.run(["cp", "-a", f"{layer}/.", str(rootfs)])
    subprocess.run(["crun", "spec"], cwd=bundle, check=True, capture_output=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/true"]
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle, rootfs


def prepare(ws: b.Workspace, args: argparse.Namespace) -> Setup:
    ours = b.open_ours(ws)
    image = b.ensure_base(ours.images, "busybox", args.base_cache)
    lowerdirs = tuple(str(p) for p in ours.images.lowerdirs(image))
    bundle, rootfs = make_bundle(ws, lowerdirs)
    b.mount_cgroup_v1(ws, "hugetlb")  # crun refuses hybrid cgroups without it
    b.replace_file(ws, CONTAINERS_CONF, PODMAN_CONF)
    podman = ["podman", "--root", str(ws.root / "pstorage"), "--runroot", str(ws.root / "prunroot"),
              "--tmpdir", str(ws.root / "ptmp"), "--storage-driver", "overlay",
              "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
    setup = Setup(ours, lowerdirs, rootfs, bundle, podman, "")
    b.remove_new_cgroups(ws, "libpod_parent")  # after the mount: runs before the umount
    watch_podman_bridge(ws)
    ws.on_exit("podman containers and image", lambda: drop_podman(setup))
    tar = ws.root / "busybox.tar"
    b.run([str(b.PAAS), "engine", "save", BUSYBOX_REF, "-o", str(tar)], env=ours.cli_env())
    loaded = b.run([*podman, "load", "-q", "-i", str(tar)]).stdout
    setup.podman_image = loaded.strip().splitlines()[-1].split(": ", 1)[-1].strip()
    return setup


def podman(setup: Setup, *args: str) -> subprocess.CompletedProcess[str]:
    """A podman command, never cut short: a run killed half-way leaves an orphan conmon."""
    with b.sigterm_deferred():
        return b.run([*setup.podman, *args])


def drop_podman(setup: Setup) -> None:
    ids = b.run([*setup.podman, "ps", "-aq", "--filter", f"label={LABEL}={setup.token}"], check=False)
    if ids.stdout.split():
        b.run([*setup.podman, "rm", "-f", "-t", "0", *ids.stdout.split()], check=False)
    if setup.podman_image:
        b.run([*setup.podman, "rmi", "-f", setup.podman_image], check=False)
    b.run([*setup.podman, "system", "reset", "-f"], check=False)  # only its own --root


def links() -> set[str]:
    out = b.run(["ip", "-o", "link"]).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines()}


def cni_chains() -> set[str]:
    return {line[1:].split()[0] for line in b.run(["iptables-save", "-t", "filter"]).stdout.splitlines()
            if line.startswith(":CNI-")}


def watch_podman_bridge(ws: b.Workspace) -> None:
    """podman's bridge leaves its link (cni-podman0), the CNI firewall chains and
    /var/lib/cni behind for good: remove after what was not there before."""
    before, chains, had_cni_dir = links(), cni_chains(), CNI_STATE.exists()

    def drop() -> None:
        for name in links() - before:
            if name.startswith(("cni-podman", "podman")):
                b.run(["ip", "link", "del", name], check=False)
        new = cni_chains() - chains
        for rule in b.run(["iptables-save", "-t", "filter"]).stdout.splitlines():
            if rule.startswith("-A ") and any(f"-j {c}" in rule for c in new) and rule.split()[1] not in new:
                b.run(["iptables", "-D", *shlex.split(rule)[1:]], check=False)
        for chain in new:
            b.run(["iptables", "-F", chain], check=False)
        for chain in new:
            b.run(["iptables", "-X", chain], check=False)
        if not had_cni_dir:
            shutil.rmtree(CNI_STATE, ignore_errors=True)
    ws.on_exit("podman bridge", drop)


# --- start to exit ----------------------------------------------------------------------


def api_side(setup: Setup, network: str) -> tuple[Callable[[], None], list[float]]:
    runtime = setup.ours.engine.runtime
    run_only: list[float] = []

    def once() -> None:
        spec = ContainerSpec(name="bench", lowerdirs=setup.lowerdirs, argv=("/bin/true",), network=network)  # type: ignore[arg-type]
        start = time.perf_counter()
        result = runtime.run(spec, lambda line: None)
        run_only.append((time.perf_counter() - start) * 1000)
        runtime.remove(result.container_id)
        if result.exit_code != 0:
            raise RuntimeError(f"ours exited {result.exit_code}")
    return once, run_only


def start_sides(setup: Setup, network: str) -> dict[str, Callable[[], object]]:
    env = setup.ours.cli_env()
    crun_root = setup.bundle.parent / "crun-state"
    label = f"{LABEL}={setup.token}"
    net = ["--network", "none"] if network == "none" else []
    sides: dict[str, Callable[[], object]] = {
        "crun": lambda: b.run(["crun", "--root", str(crun_root), "run", "--bundle", str(setup.bundle),
                               f"pb{secrets.token_hex(6)}"]),
        "ours CLI": lambda: b.run([str(b.PAAS), "engine", "run", "--rm", "--network", network,
                                   BUSYBOX_REF, "true"], env={**env, "PAAS_ENGINE_SERVER": "0"}),
        "ours CLI server": lambda: b.run([str(b.PAAS), "engine", "run", "--rm", "--network", network,
                                          BUSYBOX_REF, "true"], env=env),  # via engine_server()
        f"podman {network}": lambda: podman(setup, "run", "--rm", *net, "--label", label,
                                            setup.podman_image, "true"),
    }
    if network == "none":
        sides["floor"] = lambda: b.run(["unshare", "--mount", "--pid", "--fork", "--uts", "--ipc", "--net",
                                        "chroot", str(setup.rootfs), "/bin/true"])
    return sides


@contextlib.contextmanager
def engine_server(setup: Setup) -> Iterator[None]:
    """`paas engine serve` for the bench's root: the "ours CLI server" side goes through it
    (the thin client forwards to it), "ours CLI" opts out and runs in-process."""
    env = setup.ours.cli_env()
    sock = setup.ours.settings.engine_root / "engine.sock"
    proc = subprocess.Popen([str(b.PAAS), "engine", "serve"], env=env, stdin=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        proc.wait()


def measure_start(setup: Setup, network: str, runs: int) -> dict[str, list[float]]:
    api, run_only = api_side(setup, network)
    sides: dict[str, Callable[[], object]] = {"ours API": api, **start_sides(setup, network)}
    samples: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    with engine_server(setup):
        _rounds(sides, samples, names, network, runs)
    samples["ours API run only"] = run_only[1:]
    return samples


def _rounds(sides: dict[str, Callable[[], object]], samples: dict[str, list[float]], names: list[str],
            network: str, runs: int) -> None:
    for n in range(runs + 1):  # round 0 warms up
        if n % 10 == 0:
            b.say(f"{network}: round {n}/{runs}")
        order = names[n % len(names):] + names[: n % len(names)]
        for name in order:
            taken: list[float] = []
            with b.stopwatch(taken):
                sides[name]()
            if n > 0:
                samples[name] += taken


def report_start(none: dict[str, list[float]], bridge: dict[str, list[float]] | None, runs: int) -> None:
    med = {k: b.median(v) for k, v in none.items()}
    crun, podman = med["crun"], med["podman none"]
    header = ["side", "median", "vs crun", "vs podman", "target", "issue ref."]
    api_ratio, cli_ratio = b.ratio(med["ours API"], crun), b.ratio(med["ours CLI"], podman)
    rows = [
        ["ours: Runtime.run + remove (API)", b.fmt_ms(med["ours API"]), b.fmt_ratio(med["ours API"], crun),
         b.fmt_ratio(med["ours API"], podman), b.verdict(api_ratio, 1.0), ""],
        ["ours: Runtime.run only (API)", b.fmt_ms(med["ours API run only"]),
         b.fmt_ratio(med["ours API run only"], crun), b.fmt_ratio(med["ours API run only"], podman), "", ""],
        ["ours: paas engine run --rm --network none", b.fmt_ms(med["ours CLI"]),
         b.fmt_ratio(med["ours CLI"], crun),
         b.fmt_ratio(med["ours CLI"], podman), b.verdict(cli_ratio, 1 / 3).replace("0.333333x", "1/3"), ""],
        ["ours: paas engine run --rm (engine server)", b.fmt_ms(med["ours CLI server"]),
         b.fmt_ratio(med["ours CLI server"], crun), b.fmt_ratio(med["ours CLI server"], podman),
         b.verdict(b.ratio(med["ours CLI server"], podman), 1 / 3).replace("0.333333x", "1/3"), ""],
        ["crun run (bundle, same rootfs)", b.fmt_ms(crun), "1.00x", b.fmt_ratio(crun, podman), "",
         ISSUE_MS["crun"]],
        ["podman run --rm --network none", b.fmt_ms(podman), b.fmt_ratio(podman, crun), "1.00x", "",
         ISSUE_MS["podman none"]],
        ["floor: unshare -mpuin --fork chroot", b.fmt_ms(med["floor"]), b.fmt_ratio(med["floor"], crun),
         b.fmt_ratio(med["floor"], podman), "", ISSUE_MS["floor"]],
    ]
    notes = [f"medians of {runs} runs after 1 warm-up round, the sides interleaved (rotated each round)",
             "ours: the full profile (namespaces, pivot_root, masked /proc, caps, seccomp, cgroup); "
             "crun: `crun spec` defaults (pid, net, ipc, uts, mount ns; caps; masked paths; no seccomp)",
             "CLI target: at least 3x faster than podman, i.e. ratio <= 0.33"]
    b.print_table("Start to exit of busybox /bin/true, no network", header, rows, notes)
    if bridge is None:
        return
    bmed = {k: b.median(v) for k, v in bridge.items()}
    rows = []
    for label, key, none_key in (("ours: Runtime.run + remove (API)", "ours API", "ours API"),
                                 ("ours: Runtime.run only (API)", "ours API run only", "ours API run only"),
                                 ("ours: paas engine run --rm --network bridge", "ours CLI", "ours CLI"),
                                 ("podman run --rm (default bridge)", "podman bridge", "podman none"),
                                 ("crun run (no network, same round)", "crun", "crun")):
        ratio = b.ratio(bmed[key], med[none_key])
        target = b.verdict(ratio, 1.5) if key.startswith("ours") and key != "ours API run only" else ""
        rows.append([label, b.fmt_ms(bmed[key]), b.fmt_ms(med[none_key]),
                     b.fmt_ratio(bmed[key], med[none_key]), target,
                     ISSUE_MS["podman bridge"] if key == "podman bridge" else ""])
    b.print_table("Start to exit with a private network", ["side", "bridge", "no network (table above)",
                  "bridge / none", "target", "issue ref."], rows,
                  [f"medians of {runs} runs, interleaved as above; ours: veth pair + address from IPAM + "
                   "netns, removed after each run"])


# --- memory per running container --------------------------------------------------------


def ours_memory(setup: Setup, count: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    runtime = setup.ours.engine.runtime
    ids = []
    try:
        for i in range(count):
            spec = ContainerSpec(name=f"mem{i}", lowerdirs=setup.lowerdirs, argv=("sleep", "3600"),
                                 network="none")
            ids.append(runtime.create(spec).id)
            runtime.start(ids[-1])
        time.sleep(1)
        inits, apps = [], []
        for cid in ids:
            pid = runtime.get(cid).state.pid
            assert pid is not None
            inits.append(b.smaps_rollup(pid))
            apps += [b.smaps_rollup(child) for child in b.descendants(pid)]
        return inits, apps
    finally:
        for cid in ids:
            runtime.remove(cid, timeout=1)


def podman_memory(setup: Setup, count: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    label = f"{LABEL}={setup.token}"
    ids = []
    try:
        for _ in range(count):
            ids.append(podman(setup, "run", "-d", "--network", "none", "--label", label,
                              setup.podman_image, "sleep", "3600").stdout.strip())
        time.sleep(1)
        conmons, apps = [], []
        for cid in ids:
            out = b.run([*setup.podman, "inspect", "--format", "{{.State.ConmonPid}} {{.State.Pid}}", cid])
            conmon, app = (int(x) for x in out.stdout.split())
            conmons.append(b.smaps_rollup(conmon))
            apps += [b.smaps_rollup(app), *(b.smaps_rollup(p) for p in b.descendants(app))]
        return conmons, apps
    finally:
        if ids:
            b.run([*setup.podman, "rm", "-f", "-t", "0", *ids], check=False)


def report_memory(setup: Setup, count: int) -> None:
    b.say(f"memory: {count} sleep containers each")
    ours_init, ours_app = ours_memory(setup, count)
    pod_mon, pod_app = podman_memory(setup, count)

    def per(samples: list[tuple[int, int]], index: int) -> float:
        return sum(s[index] for s in samples) / count

    rows = []
    for label, procs in (("ours: init only (the per-container overhead)", ours_init),
                         ("ours: init + app", ours_init + ours_app),
                         ("podman: conmon only (the per-container overhead)", pod_mon),
                         ("podman: conmon + app", pod_mon + pod_app)):
        rss, pss = per(procs, 0), per(procs, 1)
        target = ("ok" if rss <= 2048 else "MISSED") + " (<= 2 MiB RSS)" if "init only" in label else ""
        rows.append([label, b.fmt_mib(rss), b.fmt_mib(pss), target])
    b.print_table(f"Host memory per running container ({count} sleep containers, no network)",
                  ["processes counted", "RSS / container", "PSS / container", "target"], rows,
                  ["RSS and PSS from /proc/PID/smaps_rollup, summed, divided by the count",
                   "ours: the container's init (state pid; a host process in the container's pid ns) "
                   "and its descendants; the launcher has exited. podman: conmon "
                   "(State.ConmonPid) and the app (State.Pid); crun itself has exited",
                   "the app (busybox sleep) is the same on both sides; the overhead is init vs conmon",
                   "issue ref.: conmon 2.0 MiB RSS / 0.4 MiB PSS"])


# --- density ----------------------------------------------------------------------------


def leftovers(ours: b.Ours, ids: list[str], before_netns: str) -> list[str]:
    root = str(ours.settings.engine_root)
    mounts = Path("/proc/mounts").read_text().splitlines()
    found = [f"mount {line.split()[1]}" for line in mounts if root in line]
    present = links()
    found += [f"link {n}" for cid in ids for n in veth_names(cid) if n in present]
    if ours.settings.bridge_name in present:
        found.append(f"bridge {ours.settings.bridge_name}")
    found += [f"cgroup {p}" for p in ours.engine.runtime.cgroups.parents if p.exists()]
    rules = b.run(["iptables-save"]).stdout.splitlines()
    net = ours.settings.subnet
    found += [f"iptables {r}" for r in rules if net in r or ours.settings.bridge_name in r]
    if b.run(["ip", "netns", "list"]).stdout != before_netns:
        found.append("ip netns list changed")
    return found


def report_density(ws: b.Workspace, args: argparse.Namespace, count: int) -> None:
    ours = b.open_ours(ws, prefixlen=22, name="density")
    image = b.ensure_base(ours.images, "busybox", args.base_cache)
    lowerdirs = tuple(str(p) for p in ours.images.lowerdirs(image))
    runtime = ours.engine.runtime
    netns = b.run(["ip", "netns", "list"]).stdout
    ids: list[str] = []

    def start_one(i: int) -> None:
        spec = ContainerSpec(name=f"d{i}", lowerdirs=lowerdirs, argv=("sleep", "3600"), network="bridge")
        container_id = runtime.create(spec).id
        ids.append(container_id)  # atomic under the GIL; cleanup_all finds them all anyway
        runtime.start(container_id)

    b.say(f"density: starting {count} containers on {ours.settings.subnet}, {args.jobs} at once")
    start = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(start_one, range(count)))
    started = time.perf_counter() - start
    running = sum(1 for c in runtime.list() if c.status.value == "running")
    load = Path("/proc/loadavg").read_text().split()[0]
    b.say(f"density: {count} started in {started:.1f}s; removing")
    start = time.perf_counter()
    for cid in ids:
        runtime.remove(cid, timeout=1)
    removed = time.perf_counter() - start
    runtime.cleanup_all(timeout=1)  # the bridge and NAT rules, which outlive the containers
    left = leftovers(ours, ids, netns)
    how = "one after the other" if args.jobs == 1 else f"{args.jobs} threads"
    rows = [[f"start {count} (create + start, {how})", f"{started:.1f} s",
             f"{started * 1000 / count:.0f} ms", "ok (<= 60 s)" if started <= 60 else "MISSED (<= 60 s)"],
            [f"remove {count} (stop + release + delete)", f"{removed:.1f} s",
             f"{removed * 1000 / count:.0f} ms", ""],
            ["left behind after removal + network teardown", str(len(left)), "",
             "ok" if not left else "MISSED"]]
    b.print_table(f"Density: {count} sleep containers with a bridge network",
                  ["step", "total", "per container", "target"], rows,
                  [f"{running} of {count} running when all were started (load average then {load})",
                   f"subnet {ours.settings.subnet}; checked: mounts under the engine root, veth pairs, the "
                   "bridge, cgroup dirs, iptables-save lines naming the subnet or bridge, ip netns list",
                   *left[:10]])


def main() -> None:
    args = b.arguments(__doc__.splitlines()[0], options)
    parts = set(args.parts.split(","))
    default = b.QUICK_RUNS if args.quick else b.FULL_RUNS
    runs = args.runs if args.runs != default else (10 if args.quick else 50)  # --runs given, else 50
    with b.workspace("runtime") as ws:
        if parts & {"start", "bridge", "memory"}:
            setup = prepare(ws, args)
            none = measure_start(setup, "none", runs) if parts & {"start", "bridge"} else None
            bridge = measure_start(setup, "bridge", runs) if "bridge" in parts else None
            if none is not None:
                report_start(none, bridge, runs)
            if "memory" in parts:
                report_memory(setup, args.memory_count or (20 if args.quick else 50))
        if "density" in parts:
            report_density(ws, args, args.density or (100 if args.quick else 500))


if __name__ == "__main__":
    main()
