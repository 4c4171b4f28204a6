"""Compares Eddy's window results with Apache Flink's DataStream API on the same input.

Not part of the test suite (PyFlink is ~850 MB); run it by hand:

    python3 -m venv /tmp/flinkenv && /tmp/flinkenv/bin/pip install apache-flink==2.3.0
    /tmp/flinkenv/bin/python tools/flink/compare.py target/release/eddy

It writes a generator stream with bounded disorder (Eddy's `generator` source to a file),
then runs tumbling, sliding and session windows with `sum(amount)` per user in both engines
(event time, bounded out-of-orderness, the default trigger) and compares every window's
final result. With disorder within `max_delay` no event is late in either engine, whatever
each engine's watermark cadence, so the results must be identical.
"""

import json
import math
import os
import subprocess
import sys
import tempfile

from pyflink.common import Duration, Types, WatermarkStrategy
from pyflink.common.time import Time
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.datastream.functions import ProcessWindowFunction
from pyflink.datastream.window import (
    EventTimeSessionWindows,
    SlidingEventTimeWindows,
    TumblingEventTimeWindows,
)

MAX_DELAY_MS = 2000
WINDOWS = {
    "tumbling": ('kind = "tumbling"\nsize = "5s"', lambda: TumblingEventTimeWindows.of(Time.milliseconds(5000))),
    "sliding": (
        'kind = "sliding"\nsize = "10s"\nslide = "3s"',
        lambda: SlidingEventTimeWindows.of(Time.milliseconds(10000), Time.milliseconds(3000)),
    ),
    "session": ('kind = "session"\ngap = "40ms"', lambda: EventTimeSessionWindows.with_gap(Time.milliseconds(40))),
}


def run_eddy(eddy, workdir, name, body):
    path = os.path.join(workdir, f"{name}.toml")
    with open(path, "w") as f:
        f.write(body)
    subprocess.run([eddy, "run", path, "--quiet"], check=True)


class EventTime(TimestampAssigner):
    def extract_timestamp(self, value, record_timestamp):
        return value[1]


class Sum(ProcessWindowFunction):
    def process(self, key, context, elements):
        window = context.window()
        yield key, window.start, window.end, sum(e[2] for e in elements)


def flink_windows(events, assigner):
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1)
    env.set_python_executable(sys.executable)
    stream = env.from_collection(events, type_info=Types.TUPLE([Types.STRING(), Types.LONG(), Types.DOUBLE()]))
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(MAX_DELAY_MS)).with_timestamp_assigner(EventTime())
    results = (
        stream.assign_timestamps_and_watermarks(strategy)
        .key_by(lambda e: e[0], key_type=Types.STRING())
        .window(assigner())
        .process(Sum(), output_type=Types.TUPLE([Types.STRING(), Types.LONG(), Types.LONG(), Types.DOUBLE()]))
    )
    return {(k, s, e): v for k, s, e, v in results.execute_and_collect()}


def main():
    eddy = os.path.abspath(sys.argv[1])
    workdir = tempfile.mkdtemp(prefix="eddy-flink-")
    run_eddy(
        eddy,
        workdir,
        "input",
        '[source]\nkind = "generator"\ncount = 20000\nkeys = 40\npartitions = 1\n'
        f'max_disorder = "{MAX_DELAY_MS}ms"\nseed = 5\n[sink]\nkind = "file"\npath = "input.jsonl"\n',
    )
    with open(os.path.join(workdir, "input.jsonl")) as f:
        raw = [json.loads(line) for line in f]
    events = [(e["user"], e["ts"], float(e["amount"])) for e in raw]
    failures = 0
    for name, (eddy_window, flink_assigner) in WINDOWS.items():
        run_eddy(
            eddy,
            workdir,
            name,
            '[source]\nkind = "file"\npath = "input.jsonl"\ntime_field = "ts"\nkey_field = "user"\n'
            f'[watermark]\nmax_delay = "{MAX_DELAY_MS}ms"\n[window]\n{eddy_window}\naggregate = "sum"\nfield = "amount"\n'
            f'[sink]\nkind = "file"\npath = "{name}.jsonl"\n[late]\nkind = "file"\npath = "{name}-late.jsonl"\n',
        )
        ours = {}
        with open(os.path.join(workdir, f"{name}.jsonl")) as f:
            for line in f:
                r = json.loads(line)
                ours[(r["key"], r["window_start"], r["window_end"])] = float(r["sum"])
        theirs = flink_windows(events, flink_assigner)
        late = sum(1 for _ in open(os.path.join(workdir, f"{name}-late.jsonl")))
        differ = [k for k in set(ours) | set(theirs) if not math.isclose(ours.get(k, math.nan), theirs.get(k, math.nan), rel_tol=1e-9)]
        print(f"{name}: eddy {len(ours)} windows, flink {len(theirs)} windows, {len(differ)} differ, eddy late {late}")
        for k in sorted(differ)[:5]:
            print(f"  {k}: eddy {ours.get(k)} flink {theirs.get(k)}")
        failures += len(differ) + late
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
