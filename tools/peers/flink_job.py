"""One peer-benchmark pipeline in Apache Flink, run by tools/peers/run.py in its PyFlink venv.

    flink_job.py INPUT.jsonl {null,filter,window} [--out DIR]

Everything runs in the JVM: Flink SQL with the filesystem connector and Flink's own `json`
format (Jackson), parallelism 1, streaming mode, event time `TO_TIMESTAMP_LTZ(ts, 3)` with a
watermark of max ts − 5 s. No Python UDF is involved, so this measures Flink, not Python.
The sink is `blackhole`; with `--out DIR` it is a CSV filesystem sink instead (for the
result check: filter writes `seq`, window writes `user,window_start_ms,count`).
"""

import argparse

from pyflink.table import EnvironmentSettings, TableEnvironment

SOURCE = """
CREATE TABLE events (
    seq BIGINT,
    ts BIGINT,
    `user` STRING,
    card STRING,
    amount DOUBLE,
    country STRING,
    rowtime AS TO_TIMESTAMP_LTZ(ts, 3),
    WATERMARK FOR rowtime AS rowtime - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json')
"""

# pipeline: (sink columns, query, query for --out)
PIPELINES = {
    "null": (
        "seq BIGINT, ts BIGINT, `user` STRING, card STRING, amount DOUBLE, country STRING",
        "SELECT seq, ts, `user`, card, amount, country FROM events",
        None,
    ),
    "filter": (
        "seq BIGINT, ts BIGINT, `user` STRING, card STRING, amount DOUBLE, country STRING",
        "SELECT seq, ts, `user`, card, amount, country FROM events WHERE amount >= 100",
        ("seq BIGINT", "SELECT seq FROM events WHERE amount >= 100"),
    ),
    "window": (
        "`user` STRING, window_start TIMESTAMP_LTZ(3), window_end TIMESTAMP_LTZ(3), n BIGINT",
        """SELECT `user`, window_start, window_end, COUNT(*)
           FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(rowtime), INTERVAL '10' SECOND))
           GROUP BY `user`, window_start, window_end""",
        (
            "`user` STRING, window_start_ms BIGINT, n BIGINT",
            # The window's start in ms: windows are aligned to multiples of 10 s.
            """SELECT `user`, MIN(ts) - MOD(MIN(ts), 10000), COUNT(*)
               FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(rowtime), INTERVAL '10' SECOND))
               GROUP BY `user`, window_start, window_end""",
        ),
    ),
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("input")
    parser.add_argument("pipeline", choices=PIPELINES)
    parser.add_argument("--out", help="write the results as CSV into this directory instead of discarding them")
    args = parser.parse_args()

    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    env.get_config().set("parallelism.default", "1")
    env.execute_sql(SOURCE.format(path=args.input))
    columns, query, check = PIPELINES[args.pipeline]
    if args.out:
        columns, query = check
        sink = f"'connector' = 'filesystem', 'path' = '{args.out}', 'format' = 'csv'"
    else:
        sink = "'connector' = 'blackhole'"
    env.execute_sql(f"CREATE TABLE results ({columns}) WITH ({sink})")
    env.execute_sql(f"INSERT INTO results {query}").wait()


if __name__ == "__main__":
    main()
