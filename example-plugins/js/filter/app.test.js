// Tests of the filter example against the mock host: `plugin-sdk/js/test.sh example-plugins/js/filter`.
// The first five are the Rust example's tests, ported; the rest pin down where JavaScript
// and Rust could part ways (number syntax, code point order, escapes).

import { test } from "node:test";
import assert from "node:assert/strict";
import { Batch, Config, Selection } from "eddy-plugin";
import { InitError, MockHost, packBatch } from "eddy-plugin/testing";
import * as app from "./app.js";
import { FieldFilter, Verdict } from "./app.js";

/** Kept indices and rejection reasons of a filter with `config` over `values`. */
function run(config, values, options) {
  const host = new MockHost(options);
  const filter = host.init(FieldFilter, config);
  const out = host.select(filter, values);
  return [out.kept, out.rejected.map((r) => r.reason)];
}

test("compares numbers", () => {
  const values = ['{"amount": 99.5}', '{"amount": 100}', '{"amount": 250.25}'];
  const cases = [[">=", [1, 2]], [">", [2]], ["<", [0]], ["<=", [0, 1]], ["==", [1]], ["!=", [0, 2]]];
  for (const [op, kept] of cases) {
    assert.deepEqual(run({ field: "amount", op, value: "100" }, values)[0], kept, `op ${op}`);
  }
});

test("select agrees with the verdict of each event", () => {
  const values = [
    '{"amount": 99.5}',
    '{"amount": "100"}',
    '{"other": 1}',
    '{"amount": 1e3}',
    '{"am\\u006funt": 150}',
    '{"amount": -0}',
    '{"amount": [100]}',
    '{"amount": 100.0}',
  ];
  const repeated = [...values, ...values, ...values];
  const batch = new Batch(packBatch(repeated));
  for (const op of ["==", "!=", "<", "<=", ">", ">="]) {
    const config = { field: "amount", op, value: "100" };
    const filter = new FieldFilter(new Config(config));
    const verdicts = [...batch].map((e) => filter.verdict(e));
    const wantKept = verdicts.flatMap((v, i) => (v === Verdict.KEEP ? [i] : []));
    const wantRejected = verdicts.filter((v) => v === Verdict.MISSING).length;
    // Through the mock host, with the column from the host (at once, as the real host
    // does from the second batch, and never), and on a plain batch (parsed by the SDK).
    for (const fieldNumbers of ["now", "learn", "never"]) {
      const [kept, rejected] = run(config, repeated, { fieldNumbers });
      assert.deepEqual([kept, rejected.length], [wantKept, wantRejected], `op ${op}, ${fieldNumbers}`);
    }
    const out = new Selection();
    new FieldFilter(new Config(config)).select(batch, out);
    assert.deepEqual(Array.from(out.kept), wantKept, `op ${op}`);
  }
});

test("compares text", () => {
  const config = { field: "country", op: "==", value: "DE" };
  assert.deepEqual(run(config, ['{"country": "DE"}', '{"country": "FR"}'])[0], [0]);
});

test("rejects events without the field", () => {
  const [kept, rejected] = run({ field: "amount", op: ">", value: "1" }, ['{"amount": 5}', '{"other": 5}']);
  assert.deepEqual(kept, [0]);
  assert.deepEqual(rejected, ["no field `amount`"]);
});

test("refuses bad config with the Rust plugin's messages", () => {
  const host = new MockHost();
  assert.throws(() => host.init(FieldFilter, { field: "a", op: "~", value: "1" }),
    new InitError('config key `op` = "~": expected one of == != < <= > >='));
  assert.throws(() => host.init(FieldFilter, { field: "a", op: "==" }), new InitError("missing config key `value`"));
  assert.throws(() => host.init(FieldFilter, { op: "==", value: "1" }), new InitError("missing config key `field`"));
  assert.throws(() => host.init(FieldFilter, { field: "a", value: "1" }), new InitError("missing config key `op`"));
  // `value` is checked first, as in Rust.
  assert.throws(() => host.init(FieldFilter, { op: "~" }), new InitError("missing config key `value`"));
  // Rust's `{:?}` escapes quotes, backslashes and control characters.
  assert.throws(() => host.init(FieldFilter, { field: "a", op: '"=\\\n', value: "1" }),
    new InitError('config key `op` = "\\"=\\\\\\n": expected one of == != < <= > >='));
});

test("the value is a number exactly when Rust's f64 parser takes it", () => {
  const values = ['{"n": 100}', '{"n": "100"}', '{"n": "+100"}', '{"n": " 100"}', '{"n": ""}'];
  // Numbers: compared with the number 100 (and a string field as text).
  assert.deepEqual(run({ field: "n", op: "==", value: "+100" }, values)[0], [0, 2]);
  assert.deepEqual(run({ field: "n", op: "==", value: "1e2" }, values)[0], [0]);
  assert.deepEqual(run({ field: "n", op: "==", value: "100." }, values)[0], [0]);
  // Text for Rust, though `Number()` takes them: compared as text only.
  assert.deepEqual(run({ field: "n", op: "==", value: " 100" }, values)[0], [3]);
  assert.deepEqual(run({ field: "n", op: "==", value: "" }, values)[0], [4]);
  assert.deepEqual(run({ field: "n", op: "==", value: "0x64" }, values)[0], []);
  assert.deepEqual(run({ field: "n", op: "==", value: "1_00" }, values)[0], []);
  // inf and nan are numbers to Rust (strings still compare as text); no number compares
  // with nan, not even as unequal.
  assert.deepEqual(run({ field: "n", op: "<", value: "INF" }, values)[0], [0, 1, 2, 3, 4]);
  assert.deepEqual(run({ field: "n", op: ">", value: "-infinity" }, values)[0], [0, 1]);
  assert.deepEqual(run({ field: "n", op: "!=", value: "NaN" }, values)[0], [1, 2, 3, 4]);
  assert.deepEqual(run({ field: "n", op: "==", value: "nan" }, ['{"n": "nan"}', '{"n": 1}'])[0], [0]);
});

test("text compares in code point order, as Rust compares strings", () => {
  // U+1F600 is past U+FFFD, though its UTF-16 (D83D DE00) sorts before FFFD.
  const values = ['{"s": "\u{1F600}"}', '{"s": "\uFFFD"}', '{"s": "\\ud83d\\ude00"}', '{"s": "a"}'];
  assert.deepEqual(run({ field: "s", op: ">", value: "\uFFFD" }, values)[0], [0, 2]);
  assert.deepEqual(run({ field: "s", op: "<", value: "\u{1F600}" }, values)[0], [1, 3]);
});

test("reads escaped strings and keys, skips nested fields, drops what does not compare", () => {
  const values = [
    '{"s": "a\\"b"}', // a"b
    '{"x": {"s": "a\\"b"}, "s": "zz"}', // the nested s is not the field
    '{"s": null}',
    '{"s": true}',
    '{"s": {"a": 1}}',
    '{"\\u0073": "a\\"b"}', // an escaped key
    '{"s": "\\ud800"}', // a lone surrogate is not a string, as for serde_json
  ];
  const [kept, rejected] = run({ field: "s", op: "==", value: 'a"b' }, values);
  assert.deepEqual(kept, [0, 5]);
  assert.deepEqual(rejected, []);
  assert.deepEqual(run({ field: "s", op: "!=", value: 'a"b' }, values)[0], [1]);
});

test("the first of duplicate keys wins", () => {
  assert.deepEqual(run({ field: "a", op: "==", value: "1" }, ['{"a": 1, "a": 2}', '{"a": 2, "a": 1}'])[0], [0]);
});

test("the app module exports the filter world's interfaces", () => {
  const host = new MockHost();
  const plugin = host.init(app, { field: "a", op: "<", value: "2" });
  assert.deepEqual(host.select(plugin, ['{"a": 1}', '{"a": 3}']).kept, [0]);
  assert.equal(typeof app.lifecycle.init, "function");
  assert.equal(typeof app.filter.select, "function");
});

test("matches the fixture (example-plugins/fixtures/filter: the Rust plugin's output)", async () => {
  const { readFile } = await import("node:fs/promises");
  const read = (name) => readFile(new URL(`../../fixtures/filter/${name}`, import.meta.url), "utf8");
  const lines = (text) => text.split("\n").filter((line) => line !== "");
  // config.toml holds `key = "value"` lines only.
  const config = Object.fromEntries(lines(await read("config.toml")).map((line) => {
    const [, key, value] = /^(\w+) = (".*")$/.exec(line);
    return [key, JSON.parse(value)];
  }));
  const input = lines(await read("input.jsonl"));
  const host = new MockHost();
  const out = host.select(host.init(FieldFilter, config), input);
  assert.deepEqual(out.kept.map((i) => input[i]), lines(await read("expected.jsonl")));
  const dead = lines(await read("expected-dead.jsonl")).map((line) => JSON.parse(line));
  assert.deepEqual(out.rejected, dead.map((d) => ({ index: d.position - 1, reason: d.reason })));
});
