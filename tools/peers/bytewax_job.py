"""One peer-benchmark pipeline in Bytewax, run by tools/peers/run.py in its Bytewax venv.

    bytewax_job.py INPUT.jsonl {null,filter,window} [--out FILE]

A single worker (`bytewax.run.cli_main`, what `python -m bytewax.run` calls) reads the file
with `FileSource`, parses each line with `json.loads` and discards the results. The window is
`count_window` over 10 s tumbling windows keyed by `user`, with an `EventClock` on `ts`
waiting 5 s whose system-time terms are pinned, so the watermark is driven by the data alone
(max ts − 5 s). Bytewax keeps one clock per key, so a key's windows close on that key's next
event or at the end of the input; on this in-order input the results are the same as Eddy's
and Flink's (run.py --check compares them). With `--out FILE` the results are written as CSV
instead (filter: `seq`, window: `user,window_start_ms,count`).
"""

import argparse
import json
from datetime import datetime, timedelta, timezone

import bytewax.operators as op
from bytewax.connectors.files import FileSource
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import EventClock, TumblingWindower, count_window
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.run import cli_main

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
WINDOW = timedelta(seconds=10)


class _Drop(StatelessSinkPartition):
    def write_batch(self, items):
        pass


class DropSink(DynamicSink):
    """Discards every item."""

    def build(self, step_id, worker_index, worker_count):
        return _Drop()


class _Lines(StatelessSinkPartition):
    def __init__(self, path):
        self.file = open(path, "w")

    def write_batch(self, items):
        self.file.writelines(f"{item}\n" for item in items)

    def close(self):
        self.file.close()


class LinesSink(DynamicSink):
    """Writes every item as a line of one file (this job runs a single worker)."""

    def __init__(self, path):
        self.path = path

    def build(self, step_id, worker_index, worker_count):
        return _Lines(self.path)


def event_time(event):
    return EPOCH + timedelta(milliseconds=event["ts"])


def build_flow(path, pipeline):
    """The dataflow for `pipeline`, its result stream, and how --out renders one result."""
    flow = Dataflow("peers")
    events = op.map("parse", op.input("read", flow, FileSource(path)), json.loads)
    if pipeline == "null":
        return flow, events, None
    if pipeline == "filter":
        return flow, op.filter("big", events, lambda e: e["amount"] >= 100), lambda e: f"{e['seq']}"
    # With the default system-time terms each key's clock is also woken as wall time passes:
    # same results here, but in testing ~7x slower with 100k keys, so they are pinned.
    clock = EventClock(
        ts_getter=event_time,
        wait_for_system_duration=timedelta(seconds=5),
        now_getter=lambda: EPOCH,
        to_system_utc=lambda _ts: None,
    )
    counts = count_window("count", events, clock, TumblingWindower(WINDOW, EPOCH), lambda e: e["user"])
    size_ms = int(WINDOW.total_seconds() * 1000)
    # A result is (user, (window id, count)); window id n starts at n × size after EPOCH.
    return flow, counts.down, lambda r: f"{r[0]},{r[1][0] * size_ms},{r[1][1]}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("input")
    parser.add_argument("pipeline", choices=["null", "filter", "window"])
    parser.add_argument("--out", help="write the results as CSV to this file instead of discarding them")
    args = parser.parse_args()

    flow, results, render = build_flow(args.input, args.pipeline)
    if args.out:
        results = op.map("render", results, render)
        op.output("write", results, LinesSink(args.out))
    else:
        op.output("drop", results, DropSink())
    cli_main(flow, workers_per_process=1)


if __name__ == "__main__":
    main()
