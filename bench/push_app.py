"""Push-to-serving times of a Flask app on a whole platform: cold, code-only change, no change.

A platform of its own (scripts/up on random ports, its PAAS_HOME seeded with the stack image,
default health checks: a 2 s wait), an admin key, and pip's packages from a local wheel index
served on the bridge (no internet). Each run pushes a new app (requirements.txt: flask):

- cold: the app's first push (its caches empty: pip downloads and installs everything;
  the stack image is the platform's, built once by `paas up`);
- code-only: app.py changed, requirements unchanged (the cached virtualenv is reused);
- no change: `git commit --allow-empty` (the build is reused; a new release rolls out).

Push-to-serving is measured from the start of `git push` until the router answers with the new
code from a new process (the app serves a per-process token). References measured in the same
run: a push of a branch that is not deployed (SSH + git + hook: the floor of every push), an
SSH command's round trip, and `pip install` of the same wheels into a fresh venv on the host.
Each push's output lines are stamped as they arrive: the second table shows where the time goes.

Run: ``.venv/bin/python bench/push.py app [--quick | --runs N] [-v]``.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import benchlib as b

sys.path[:0] = [str(b.REPO / "tests"), str(b.REPO / "tests" / "e2e")]
from pushkit import Platform, Push, flask_files, running_platform, write_files  # noqa: E402
from wheelhouse import pip_config, serve_wheels, wheel_dir  # noqa: E402

from paas.engine import baseimages  # noqa: E402

CASES = ("cold", "code-only", "no change")
TARGETS_S = {"code-only": 5.0, "no change": 3.0}
SERVE_TIMEOUT_S = 60.0
TESTS_STACK_CACHE = Path("/var/tmp/paas-test-stack")


@dataclass
class Sample:
    serving_s: float
    push_s: float
    steps: list[tuple[float, str]]


@dataclass
class Results:
    samples: dict[str, list[Sample]] = field(default_factory=lambda: {c: [] for c in CASES})
    refs: dict[str, list[float]] = field(default_factory=dict)

    def ref(self, name: str, seconds: float) -> None:
        self.refs.setdefault(name, []).append(seconds)


def arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/push.py app", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{b.QUICK_RUNS} runs")
    parser.add_argument("--runs", type=int, default=0, help=f"number of runs (default {b.FULL_RUNS})")
    parser.add_argument("--stack-cache", type=Path, default=None,
                        help="an engine root holding the stack image (default: the tests' cache "
                             "when it has one; else scripts/up builds it, ~150 s)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each push's output")
    args = parser.parse_args(list(argv))
    args.runs = args.runs or (b.QUICK_RUNS if args.quick else b.FULL_RUNS)
    return args


def stack_root(given: Path | None, ws: b.Workspace) -> Path:
    """An engine root to seed the platform with: given, the tests' cache, or an empty one."""
    if given is not None:
        return given
    key = hashlib.sha256(Path(baseimages.__file__).read_bytes()).hexdigest()[:16]
    cached = TESTS_STACK_CACHE / key / "engine"
    if cached.is_dir():
        return cached
    b.say("no cached stack image: scripts/up builds it (debootstrap + apt, about 150 s)")
    empty = ws.root / "empty-engine"
    empty.mkdir()
    return empty


# --- one push, timed until the new code answers ---


def answer(platform: Platform, app: str) -> tuple[str, str] | None:
    status, body = platform.get(app)
    if status != 200:
        return None
    status, token = platform.get(app, "/token")
    return (body, token) if status == 200 else None


def timed_push(platform: Platform, repo: Path, app: str, body: str, verbose: bool) -> Sample:
    before = answer(platform, app)
    started = time.monotonic()
    push = platform.push(repo)
    pushed = time.monotonic() - started
    while (now := answer(platform, app)) is None or now[0] != body or now == before:
        if time.monotonic() - started > SERVE_TIMEOUT_S:
            raise RuntimeError(f"{app} does not serve {body!r} (it says {now}):\n{push.text}")
        time.sleep(0.02)
    serving = time.monotonic() - started
    if verbose:
        b.say(f"{app} {body}: {serving:.2f}s\n{push.timed_text()}")
    return Sample(serving, pushed, steps_of(push))


def steps_of(push: Push) -> list[tuple[float, str]]:
    """The headings of a push (`-----> ...` lines) with their arrival times, names generalized
    (app, versions, shas, durations) so that runs and cases line up."""
    steps = []
    for at, line in push.lines:
        text = line.removeprefix("remote: ").strip()
        if text.startswith("----->"):
            steps.append((at, normalize(text)))
    return steps


def normalize(text: str) -> str:
    text = re.sub(r"\bflask\d+\b", "APP", text)
    text = re.sub(r"\(\d+(\.\d+)?s\)", "", text)
    text = re.sub(r"\b[0-9a-f]{7,64}\b", "SHA", text)
    return re.sub(r"\bv\d+\b", "vN", text).strip()


# --- the runs ---


def one_run(platform: Platform, n: int, pip: dict[str, str], repos: Path, results: Results,
            verbose: bool) -> None:
    app = f"flask{n}"
    for argv in (("apps:create", app),
                 ("config:set", app, "--no-restart", *(f"{k}={v}" for k, v in pip.items()))):
        done = platform.ssh(*argv)
        if done.returncode != 0:
            raise RuntimeError(f"ssh {' '.join(argv)}: {done.stderr}")
    repo = platform.new_repo(repos, app, flask_files(f"{app} v1", worker=False))
    results.samples["cold"].append(timed_push(platform, repo, app, f"{app} v1", verbose))
    write_files(repo, {"app.py": flask_files(f"{app} v2", worker=False)["app.py"]})
    platform.commit(repo, "v2: code only")
    results.samples["code-only"].append(timed_push(platform, repo, app, f"{app} v2", verbose))
    platform.commit(repo, "nothing changed", "--allow-empty")
    results.samples["no change"].append(timed_push(platform, repo, app, f"{app} v2", verbose))
    measure_refs(platform, repo, n, results)


def measure_refs(platform: Platform, repo: Path, n: int, results: Results) -> None:
    results.ref("git push of a branch that is not deployed (SSH + git + hook)",
                _seconds(lambda: platform.push(repo, "paas", f"main:bench-{n}")))
    results.ref("ssh COMMAND round trip (`ssh ... version`)",
                _seconds(lambda: _check(platform.ssh("version"))))


def pip_reference(venv: Path) -> float:
    """`pip install flask` from the same wheels into a fresh venv on the host (making the
    venv is not timed: the host's `venv` bootstraps pip into it, the stack's does not)."""
    subprocess.run(["rm", "-rf", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    argv = [str(venv / "bin/pip"), "install", "-q", "--disable-pip-version-check", "--no-index",
            "--find-links", str(wheel_dir()), "flask"]
    return _seconds(lambda: _check(subprocess.run(argv, capture_output=True, text=True)))


def _check(proc: subprocess.CompletedProcess[str]) -> None:
    if proc.returncode != 0:
        raise RuntimeError(f"{proc.args} failed: {proc.stderr}")


def _seconds(fn: Callable[[], object]) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started


# --- the tables ---


def fmt_s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def report(results: Results, runs: int) -> None:
    rows = []
    for case in CASES:
        samples = results.samples[case]
        serving = [s.serving_s for s in samples]
        target = TARGETS_S.get(case)
        median = statistics.median(serving)
        verdict = "" if target is None else f"{'ok' if median <= target else 'MISSED'} (<= {target:g} s)"
        rows.append([case, fmt_s(median), fmt_s(statistics.median(s.push_s for s in samples)),
                     f"{min(serving):.2f}-{max(serving):.2f} s", verdict])
    for name, values in results.refs.items():
        rows.append([f"ref: {name}", fmt_s(statistics.median(values)), "", "", ""])
    b.print_table("Push to serving: a Flask app (buildpack python)",
                  ["case", "push -> serving (median)", "git push returns", "range", "target"],
                  rows, notes(runs))
    steps_table(results)


def notes(runs: int) -> list[str]:
    return [
        f"medians of {runs} runs; each run pushes a new app: cold (empty app caches), then a "
        "code-only change, then an empty commit",
        "push -> serving: from starting `git push` until the router answers with the new body "
        "from a new process; the default health check waits 2 s before a new web is checked",
        "pip installs from a local wheel index on the bridge (flask + 6 dependencies); "
        "the stack image is built once by `paas up`, not per app",
        "targets (issue 5): code-only <= 5 s, no change <= 3 s; for scale, Cloud Native "
        "Buildpacks take ~40 s for a no-op rebuild of a small Rails app",
    ]


def merged_order(sequences: list[list[str]]) -> list[str]:
    """The steps of every push in the order they happen: a step first seen in a later push
    goes right after the step it followed there."""
    order: list[str] = []
    for steps in sequences:
        previous = None
        for step in steps:
            if step not in order:
                order.insert(order.index(previous) + 1 if previous else 0, step)
            previous = step
    return order


def steps_table(results: Results) -> None:
    """When each heading arrived (median over runs, seconds from the start of `git push`)."""
    at: dict[tuple[str, str], list[float]] = {}
    for case in CASES:
        for sample in results.samples[case]:
            for seconds, step in sample.steps:
                at.setdefault((case, step), []).append(seconds)
            at.setdefault((case, "git push returns"), []).append(sample.push_s)
            at.setdefault((case, "new release answers"), []).append(sample.serving_s)
    medians = {key: statistics.median(values) for key, values in at.items()}
    order = merged_order([[step for _, step in sample.steps]
                          for case in CASES for sample in results.samples[case]])
    order += ["git push returns", "new release answers"]
    rows = [[step, *(fmt_s(medians.get((case, step))) if (case, step) in medians else ""
                     for case in CASES)] for step in order]
    b.print_table("Where a push spends its time (arrival of each heading at the pusher)",
                  ["step (output line)", *CASES], rows,
                  ["median arrival time of each `----->` line, from the start of `git push`"])


def main(argv: Sequence[str]) -> None:
    args = arguments(argv)
    results = Results()
    with b.workspace("push-app") as ws:
        home, keys, repos = ws.root / "home", ws.root / "keys", ws.root / "repos"
        for path in (keys, repos):
            path.mkdir()
        with running_platform(home, keys, stack_root(args.stack_cache, ws)) as platform, \
                serve_wheels(platform.gateway) as index:
            for n in range(1, args.runs + 1):
                b.say(f"run {n}/{args.runs}")
                results.ref("pip install flask into a fresh venv on the host (same wheels)",
                            pip_reference(ws.root / "venv"))
                one_run(platform, n, pip_config(index.url), repos, results, args.verbose)
    report(results, args.runs)


if __name__ == "__main__":
    main(sys.argv[1:])
