"""Peer comparison: Eddy, Apache Flink and Bytewax on the same JSON-lines files, in one run.

    python3 tools/peers/run.py --eddy target/release/eddy --filter-wasm target/plugins/filter.wasm \\
        [--events 20000000] [--bytewax-events 2000000] [--only eddy,flink,bytewax] \\
        [--workdir DIR] [--repeat 1] [--startup-runs 3] [--check]

What it measures. Eddy's own generator writes the input (`{"seq":0,"ts":…,"user":"user-17",
"card":…,"amount":42.17,"country":"DE"}`, ~100 bytes a line, ts advancing 1 ms per event, no
disorder) once per (events, keys) into the workdir, so every engine reads the same bytes
(each file is read once before each timed run, so it is in the page cache). Each engine
parses every line as JSON, event time `ts` (ms), key `user`, watermark max ts − 5 s, and
runs, single-threaded in its own terms (Eddy as is, Flink at parallelism 1, Bytewax with
one worker):

  null    source → discarding sink (10k-key file)
  filter  source → `amount >= 100` (~6% pass) → discarding sink (10k-key file)
  window  source → 10 s event-time tumbling window, count per user → discarding sink,
          on the 100, 10k and 100k-key files

Eddy runs `eddy run P.toml --quiet` (file source, Wasm filter plugin, `null` sink). Flink runs
SQL through PyFlink, all in the JVM with Flink's `json` format and a `blackhole` sink
(flink_job.py). Bytewax runs a `FileSource` → `json.loads` → `count_window` dataflow
(bytewax_job.py). Flink and Bytewax run from virtualenvs this script creates once under
~/.cache/eddy/peers/ (versions pinned in VENVS); the script itself needs only the stdlib.

Each figure is the job's whole process tree: wall time from spawn until every process of it has
exited (this script is a child subreaper, so the JVM that PyFlink spawns is waited for too),
CPU = user + sys of all those processes (os.wait4), cores = CPU / wall, peak RSS = the largest
process's peak resident set (VmHWM), read from /proc every 10 ms while the job runs. (Not from
os.wait4: a spawned child's ru_maxrss starts at this script's own resident set, ~40 MB, which
hid any smaller engine's figure behind it.) Every job also runs on a 1,000-event file (--startup-runs times, the median counts):
the engine's fixed start-up cost. Ratios use Eddy's raw throughput (events / wall, start-up
included; it is milliseconds) against the peers' start-up-subtracted throughput (events /
(wall − start-up wall)), which favours the peers. Bytewax, many times slower, reads its own
smaller file (--bytewax-events); its rates are computed on that file. --check runs the filter
and window pipelines once more on the Bytewax-sized files with their results written out, and
compares each peer's results with Eddy's row for row. Generated files, pipeline files and logs
go to --workdir (default ~/.cache/eddy/peers/work).
"""

import argparse
import ctypes
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path.home() / ".cache" / "eddy" / "peers"
VENVS = {"flink": "apache-flink==2.3.0", "bytewax": "bytewax==0.21.1"}
ENGINES = ("eddy", "flink", "bytewax")
TINY_EVENTS = 1000
PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class Pipeline:
    kind: str  # null | filter | window
    keys: int

    @property
    def name(self):
        what = {"null": "source → null", "filter": "filter amount >= 100", "window": "tumbling 10 s count"}
        return f"{what[self.kind]}, {self.keys:,} keys"


PIPELINES = (
    Pipeline("null", 10_000),
    Pipeline("filter", 10_000),
    Pipeline("window", 100),
    Pipeline("window", 10_000),
    Pipeline("window", 100_000),
)


class Failed(Exception):
    """An engine or one of its jobs failed; the message says what and where to look."""


@dataclass
class Usage:
    wall: float
    cpu: float
    peak_rss_mb: float


@dataclass
class Result:
    events: int
    file_bytes: int
    run: Usage
    startup: Usage

    def rate(self, net):
        wall = self.run.wall - self.startup.wall if net else self.run.wall
        return self.events / wall if wall > 0 else None

    def per_core(self, net):
        cpu = self.run.cpu - self.startup.cpu if net else self.run.cpu
        return self.events / cpu if cpu > 0 else None


# ---------------------------------------------------------------- processes


def set_subreaper(on):
    """Orphaned descendants (PyFlink's JVM outlives its Python parent) become our children."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def descendants_peak_rss_kb():
    """The largest peak resident set (VmHWM, of each process's own memory map) among this
    script's descendants now; processes that exit while it looks are skipped."""
    peak, todo = 0, [os.getpid()]
    while todo:
        pid = todo.pop()
        try:
            if pid != os.getpid():
                with open(f"/proc/{pid}/status") as status:
                    for line in status:
                        if line.startswith("VmHWM:"):
                            peak = max(peak, int(line.split()[1]))
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as children:
                    todo.extend(int(c) for c in children.read().split())
        except (OSError, ValueError):
            continue
    return peak


class PeakRss:
    """Polls the descendants' peak resident set every 10 ms while in a `with` block."""

    def __enter__(self):
        self.peak_kb, self.done = 0, threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)
        self.thread.start()
        return self

    def poll(self):
        while not self.done.wait(0.01):
            self.peak_kb = max(self.peak_kb, descendants_peak_rss_kb())

    def __exit__(self, *_):
        self.done.set()
        self.thread.join()


def measure(argv, log):
    """Runs argv (output to log) and returns the wall, CPU and peak RSS of its whole process tree."""
    set_subreaper(True)
    try:
        with PeakRss() as rss:
            start = time.perf_counter()
            pid = os.posix_spawnp(
                argv[0],
                argv,
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
                    (os.POSIX_SPAWN_DUP2, 1, 2),
                ],
            )
            _, status, usage = os.wait4(pid, 0)
            usages = [usage]
            while True:  # the orphans, until none is left
                try:
                    usages.append(os.wait4(-1, 0)[2])
                except ChildProcessError:
                    break
            wall = time.perf_counter() - start
    finally:
        set_subreaper(False)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise Failed(f"exit {code}, see {log}")
    cpu = sum(u.ru_utime + u.ru_stime for u in usages)
    return Usage(wall, cpu, rss.peak_kb / 1024)


def best_of(runs, argv, log):
    return min((measure(argv, log) for _ in range(runs)), key=lambda u: u.wall)


def median_of(runs, argv, log):
    return sorted((measure(argv, log) for _ in range(runs)), key=lambda u: u.wall)[runs // 2]


def output_of(argv):
    run = subprocess.run(argv, capture_output=True, text=True, check=True)
    return (run.stdout + run.stderr).strip()


# ---------------------------------------------------------------- set-up


def ensure_venv(engine):
    """The Python interpreter of the engine's venv, creating and installing it on first use."""
    spec = VENVS[engine]
    venv = CACHE / f"{engine}-venv"
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if python.exists() and marker.exists() and marker.read_text() == spec:
        return python
    log = CACHE / f"{engine}-install.log"
    print(f"installing {spec} into {venv} (log: {log}) ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    with open(log, "w") as out:
        for step in ([sys.executable, "-m", "venv", str(venv)], [str(python), "-m", "pip", "install", spec]):
            if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                raise Failed(f"`{' '.join(step[-3:])}` failed, see {log}")
    marker.write_text(spec)
    print(f"  installed in {time.perf_counter() - started:.0f} s, {du_mb(venv):.0f} MB", file=sys.stderr)
    return python


def toml_str(value):
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(str(value))


def du_mb(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def generate(eddy, workdir, events, keys):
    """The generator's events file for (events, keys), made once and cached in workdir."""
    path = workdir / f"events-{events}-{keys}.jsonl"
    if path.exists():
        return path
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    toml = workdir / f"generate-{events}-{keys}.toml"
    toml.write_text(
        f'[source]\nkind = "generator"\ncount = {events}\nkeys = {keys}\npartitions = 1\nseed = 42\n'
        f"[sink]\nkind = \"file\"\npath = {toml_str(partial)}\n"
    )
    print(f"generating {path.name} ...", file=sys.stderr, flush=True)
    run = subprocess.run([eddy, "run", str(toml), "--quiet"], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"generating {path} with {toml} failed (exit {run.returncode}):\n{run.stderr}")
    partial.rename(path)
    return path


# ---------------------------------------------------------------- engines


class Eddy:
    name = "eddy"

    def __init__(self, binary, filter_wasm, workdir):
        self.binary, self.filter_wasm, self.dir = binary, filter_wasm, workdir / "eddy-pipelines"
        self.dir.mkdir(exist_ok=True)

    def version(self):
        return f"{output_of([self.binary, '--version'])} ({self.binary}; filter plugin {self.filter_wasm})"

    def command(self, pipeline, path, out=None):
        sink = f'kind = "file"\npath = {toml_str(out)}' if out else 'kind = "null"'
        body = f'[source]\nkind = "file"\npath = {toml_str(path)}\ntime_field = "ts"\nkey_field = "user"\n'
        body += '[watermark]\nmax_delay = "5s"\n'
        if pipeline.kind == "filter":
            body += (
                f'[[plugin]]\nname = "big"\npath = {toml_str(self.filter_wasm)}\n'
                'config = { field = "amount", op = ">=", value = "100" }\n'
            )
        if pipeline.kind == "window":
            body += '[window]\nkind = "tumbling"\nsize = "10s"\naggregate = "count"\n'
        toml = self.dir / f"{pipeline.kind}-{path.stem}{'-check' if out else ''}.toml"
        toml.write_text(f"{body}[sink]\n{sink}\n")
        return [self.binary, "run", str(toml), "--quiet"]

    def results(self, pipeline, out):
        rows = (json.loads(line) for line in open(out))
        if pipeline.kind == "filter":
            return sorted(str(r["seq"]) for r in rows)
        return sorted(f"{r['key']},{r['window_start']},{r['count']}" for r in rows)


class Flink:
    name = "flink"

    def __init__(self):
        if not shutil.which("java"):
            raise Failed("java not found on PATH (PyFlink needs a JDK 11 or 17)")
        self.python = ensure_venv("flink")

    def version(self):
        java = output_of(["java", "-version"]).splitlines()[0]
        return f"{VENVS['flink']} (PyFlink; Table API/SQL in the JVM), {java}"

    def command(self, pipeline, path, out=None):
        return [str(self.python), str(HERE / "flink_job.py"), str(path), pipeline.kind] + (["--out", str(out)] if out else [])

    def results(self, pipeline, out):
        return sorted(line for part in sorted(Path(out).glob("part-*")) for line in open(part).read().splitlines())


class Bytewax:
    name = "bytewax"

    def __init__(self):
        self.python = ensure_venv("bytewax")

    def version(self):
        return f"{VENVS['bytewax']}, Python {output_of([str(self.python), '-c', 'import sys; print(sys.version.split()[0])'])}"

    def command(self, pipeline, path, out=None):
        return [str(self.python), str(HERE / "bytewax_job.py"), str(path), pipeline.kind] + (["--out", str(out)] if out else [])

    def results(self, pipeline, out):
        return sorted(open(out).read().splitlines())


def start_engines(args, workdir):
    """The engines asked for; an engine that cannot start is a reason (a string) instead."""
    makers = {
        "eddy": lambda: Eddy(args.eddy, args.filter_wasm, workdir),
        "flink": Flink,
        "bytewax": Bytewax,
    }
    engines = {}
    for name in args.only:
        try:
            engines[name] = makers[name]()
        except (Failed, OSError, subprocess.CalledProcessError) as e:
            print(f"{name}: failed to start: {e}", file=sys.stderr)
            engines[name] = f"failed: {e}"
    return engines


# ---------------------------------------------------------------- running


def run_all(args, engines, workdir):
    """{(engine, pipeline): Result or 'failed: …'} for every live engine and pipeline."""
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    results = {}
    for pipeline in PIPELINES:
        for name, engine in engines.items():
            if isinstance(engine, str):
                results[name, pipeline] = engine
                continue
            events = args.bytewax_events if name == "bytewax" else args.events
            results[name, pipeline] = run_one(args, workdir, logs, engine, pipeline, events)
    return results


def warm(path):
    """Reads `path` once, so every engine reads it from the page cache (this machine's
    kernel reclaims cold cache, and a file generated earlier may be on disk again)."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def run_one(args, workdir, logs, engine, pipeline, events):
    path = generate(args.eddy, workdir, events, pipeline.keys)
    tiny = generate(args.eddy, workdir, TINY_EVENTS, pipeline.keys)
    label = f"{engine.name}-{pipeline.kind}-{pipeline.keys}"
    try:
        startup = median_of(args.startup_runs, engine.command(pipeline, tiny), logs / f"{label}-{TINY_EVENTS}.log")
        warm(path)
        run = best_of(args.repeat, engine.command(pipeline, path), logs / f"{label}-{events}.log")
    except Failed as e:
        print(f"{label}: failed: {e}", file=sys.stderr)
        return f"failed: {e}"
    result = Result(events, path.stat().st_size, run, startup)
    print(
        f"{label}: {events:,} events in {run.wall:.2f} s (start-up {startup.wall:.2f} s), "
        f"{fmt_rate(result.rate(net=False))} ev/s raw, {fmt_rate(result.rate(net=True))} net",
        file=sys.stderr,
        flush=True,
    )
    return result


def check(args, engines, workdir):
    """Each peer's filter and window results against Eddy's, on the Bytewax-sized files."""
    eddy = engines.get("eddy")
    if not isinstance(eddy, Eddy):
        return ["(skipped: the check compares with Eddy, which did not run)"]
    out_dir = workdir / "check"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir()
    lines = []
    for pipeline in (p for p in PIPELINES if p.kind != "null"):
        path = generate(args.eddy, workdir, args.bytewax_events, pipeline.keys)
        rows = {}
        for name, engine in engines.items():
            if isinstance(engine, str):
                continue
            out = out_dir / f"{name}-{pipeline.kind}-{pipeline.keys}"
            try:
                measure(engine.command(pipeline, path, out), out_dir / f"{out.name}.log")
                rows[name] = engine.results(pipeline, out)
            except Failed as e:
                rows[name] = f"failed: {e}"
        lines.append(f"- {pipeline.name} ({args.bytewax_events:,} events): " + compare(rows))
    return lines


def compare(rows):
    base = rows["eddy"]
    if isinstance(base, str):
        return f"eddy {base}"
    said = [f"eddy {len(base):,} rows"]
    for name, theirs in rows.items():
        if name == "eddy":
            continue
        if isinstance(theirs, str):
            said.append(f"{name} {theirs}")
        elif theirs == base:
            said.append(f"{name} identical")
        else:
            only_ours, only_theirs = len(set(base) - set(theirs)), len(set(theirs) - set(base))
            said.append(f"{name} DIFFERS ({len(theirs):,} rows; {only_ours} only in eddy, {only_theirs} only in {name})")
    return ", ".join(said)


# ---------------------------------------------------------------- report


def fmt_rate(value):
    if value is None:
        return "n/a"
    return f"{value / 1e6:.2f} M" if value >= 1e6 else f"{value / 1e3:.0f} k"


def fmt_ratio(ours, theirs):
    return f"{ours / theirs:.1f}x" if ours and theirs else "–"


def machine():
    model = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    return (
        f"{os.cpu_count()} CPUs ({model.group(1) if model else 'unknown model'}), "
        f"{int(mem.group(1)) / 2**20:.0f} GiB, {platform.platform()}"
    )


def detail_table(results):
    lines = [
        "| pipeline | engine | events | file MB | wall s | start-up s | ev/s raw | ev/s net | MB/s raw | cores | ev/s/core raw | ev/s/core net | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, pipeline), r in results.items():
        if isinstance(r, str):
            lines.append(f"| {pipeline.name} | {name} | {r} |" + " |" * 10)
            continue
        lines.append(
            f"| {pipeline.name} | {name} | {r.events:,} | {r.file_bytes / 1e6:.0f} | {r.run.wall:.2f} | {r.startup.wall:.2f} "
            f"| {fmt_rate(r.rate(False))} | {fmt_rate(r.rate(True))} | {r.file_bytes / 1e6 / r.run.wall:.0f} "
            f"| {r.run.cpu / r.run.wall:.2f} | {fmt_rate(r.per_core(False))} | {fmt_rate(r.per_core(True))} "
            f"| {r.run.peak_rss_mb:.0f} |"
        )
    return lines


def summary_table(results):
    """Eddy raw against the peers' start-up-subtracted figures."""

    def figure(name, pipeline, per_core=False):
        r = results.get((name, pipeline))
        if not isinstance(r, Result):
            return None, r or "not run"
        net = name != "eddy"
        value = r.per_core(net) if per_core else r.rate(net)
        return value, fmt_rate(value)

    lines = [
        "| pipeline | Eddy ev/s | Flink ev/s | Bytewax ev/s | Eddy/Flink | Eddy/Flink per core | Eddy/Bytewax | Eddy/Bytewax per core |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for pipeline in PIPELINES:
        (eddy, eddy_s), (flink, flink_s), (bytewax, bytewax_s) = (figure(n, pipeline) for n in ENGINES)
        eddy_core, flink_core, bytewax_core = (figure(n, pipeline, per_core=True)[0] for n in ENGINES)
        lines.append(
            f"| {pipeline.name} | {eddy_s} | {flink_s} | {bytewax_s} | {fmt_ratio(eddy, flink)} "
            f"| {fmt_ratio(eddy_core, flink_core)} | {fmt_ratio(eddy, bytewax)} | {fmt_ratio(eddy_core, bytewax_core)} |"
        )
    return lines


def report(args, engines, results, checked):
    print(f"# Eddy vs Flink vs Bytewax, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(f"\nMachine: {machine()}")
    print("\nVersions:")
    for name, engine in engines.items():
        print(f"- {name}: {engine if isinstance(engine, str) else engine.version()}")
    print(f"- driver: Python {platform.python_version()}")
    print(
        f"\nEvents: {args.events:,} for Eddy and Flink, {args.bytewax_events:,} for Bytewax (its own file; "
        f"its rates come from that file). Start-up = the same job on a {TINY_EVENTS:,}-event file. "
        f"Each figure: the fastest of {args.repeat} run(s); each start-up: the median of {args.startup_runs}."
    )
    print("\n## Summary\n")
    print("Eddy: raw (events / wall, start-up included). Flink and Bytewax: start-up subtracted "
          "(events / (wall − start-up wall)); per core: events / CPU seconds of the process tree "
          "(the peers' start-up CPU subtracted).\n")
    print("\n".join(summary_table(results)))
    print(
        "\nEngines run single-threaded in their own terms: Eddy as is; Flink SQL at parallelism 1, "
        "streaming mode, `json` format, `blackhole` sink, default configuration; Bytewax with one worker, "
        "its EventClock's watermark driven by the data alone (max ts − 5 s), as in the others."
    )
    print("\n## Every run\n")
    print("\n".join(detail_table(results)))
    if checked:
        print("\n## Result check (rows written out and compared with Eddy's)\n")
        print("\n".join(checked))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--eddy", required=True, type=lambda p: str(Path(p).resolve()), help="the eddy binary (release build)")
    parser.add_argument("--filter-wasm", required=True, type=lambda p: str(Path(p).resolve()), help="the filter plugin component")
    parser.add_argument("--events", type=int, default=20_000_000, help="events for Eddy and Flink (default 20M)")
    parser.add_argument("--bytewax-events", type=int, default=2_000_000, help="events for Bytewax (default 2M)")
    parser.add_argument("--only", default=",".join(ENGINES), help="engines to run, comma-separated (default all)")
    parser.add_argument("--workdir", type=lambda p: Path(p).resolve(), default=CACHE / "work", help="generated files and logs")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; the fastest counts")
    parser.add_argument("--startup-runs", type=int, default=3, help="runs of each start-up measurement; the median counts")
    parser.add_argument("--check", action="store_true", help="also compare the results row for row")
    args = parser.parse_args()
    only = {e.strip() for e in args.only.split(",") if e.strip()}
    unknown = only - set(ENGINES)
    if unknown:
        parser.error(f"--only: unknown engine(s) {', '.join(sorted(unknown))}; choose from {', '.join(ENGINES)}")
    for path in (args.eddy, args.filter_wasm):
        if not Path(path).is_file():
            parser.error(f"{path}: no such file")
    args.only = [e for e in ENGINES if e in only]
    return args


def main():
    args = parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    engines = start_engines(args, args.workdir)
    results = run_all(args, engines, args.workdir)
    checked = check(args, engines, args.workdir) if args.check else []
    report(args, engines, results, checked)


if __name__ == "__main__":
    main()
