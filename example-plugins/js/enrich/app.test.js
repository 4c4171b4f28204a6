// Tests of the enrich example against the mock host: `plugin-sdk/js/test.sh example-plugins/js/enrich`.
// The first two are the Rust example's tests, ported; the rest pin down the exact bytes.

import { test } from "node:test";
import assert from "node:assert/strict";
import { InitError, MockHost, MockTrap } from "eddy-plugin/testing";
import { Enrich } from "./app.js";

function host() {
  return new MockHost().withRow("users", "u1", '{"name": "Ada", "tier": "gold"}');
}

test("merges the row into the event", () => {
  const h = host();
  const enrich = h.init(Enrich, { table: "users", field: "user" });
  const out = h.process(enrich, [
    ["u1", 5, '{"user": "u1", "amount": 3}'],
    ["u2", 6, '{"user": "u2"}'],
  ]);
  const values = out.values.map((v) => JSON.parse(v));
  assert.equal(values[0].name, "Ada");
  assert.equal(values[0].amount, 3);
  assert.deepEqual(values[1], { user: "u2" });
  assert.deepEqual(out.origins, [0, 1]);
  assert.deepEqual(out.outputs.map((o) => o.timestamp), [5, 6]);
  assert.deepEqual(out.outputs.map((o) => o.key), ["u1", "u2"]);
});

test("rejects or drops when asked", () => {
  const h = host();
  const events = [["u2", 1, '{"user": "u2"}']];
  let out = h.process(h.init(Enrich, { table: "users", field: "user", on_missing: "reject" }), events);
  assert.deepEqual(out.rejected, [{ index: 0, reason: "no row in `users` for field `user`" }]);
  assert.deepEqual(out.outputs, []);
  out = h.process(h.init(Enrich, { table: "users", field: "user", on_missing: "drop" }), events);
  assert.deepEqual([out.rejected, out.outputs], [[], []]);
});

test("writes exactly the Rust plugin's bytes", () => {
  const h = host()
    .withRow("users", "5", '{"n": 5}')
    .withRow("users", '"\\ud800"', '{"raw": true}')
    .withRow("users", "{\"a\": 1}", '{"nested": true}')
    .withRow("users", "\u{1F600}", '{"emoji": "\u{1F600}", "user": "not added"}');
  const enrich = h.init(Enrich, { table: "users", field: "user" });
  const out = h.process(enrich, [
    '{"user": "u1", "amount": 3}',
    ' { "user" : "u1" } ',
    '{"user": 5}',
    '{"user": "\\ud800"}', // not a string to serde_json: the raw text is the key
    '{"user": {"a": 1}}',
    '{"user": "\\ud83d\\ude00", "x": [1, {"y": "}"}]}',
    '{"other": "u1"}',
    '{"us\\u0065r": "u1", "name": "kept"}',
  ]);
  assert.deepEqual(out.values, [
    '{"user": "u1", "amount": 3,"name":"Ada","tier":"gold"}',
    '{"user" : "u1","name":"Ada","tier":"gold"}',
    '{"user": 5,"n":5}',
    '{"user": "\\ud800","raw":true}',
    '{"user": {"a": 1},"nested":true}',
    '{"user": "\\ud83d\\ude00", "x": [1, {"y": "}"}],"emoji":"\u{1F600}"}',
    '{"other": "u1"}',
    '{"us\\u0065r": "u1", "name": "kept","tier":"gold"}',
  ]);
  assert.deepEqual(out.origins, [0, 1, 2, 3, 4, 5, 6, 7]);
});

test("refuses bad config with the Rust plugin's messages", () => {
  const h = host();
  assert.throws(() => h.init(Enrich, { table: "users", field: "user", on_missing: "maybe" }),
    new InitError('config key `on_missing` = "maybe": expected keep, reject or drop'));
  assert.throws(() => h.init(Enrich, { field: "user" }), new InitError("missing config key `table`"));
  assert.throws(() => h.init(Enrich, { table: "users" }), new InitError("missing config key `field`"));
  // An undeclared table traps at init, as the host does, even if the plugin caught it.
  assert.throws(() => h.init(Enrich, { table: "nope", field: "user" }), MockTrap);
});

test("matches the fixture (example-plugins/fixtures/enrich: the Rust plugin's output)", async () => {
  const { readFile } = await import("node:fs/promises");
  const read = (name) => readFile(new URL(`../../fixtures/enrich/${name}`, import.meta.url), "utf8");
  const lines = (text) => text.split("\n").filter((line) => line !== "");
  // config.toml holds `key = "value"` lines only.
  const config = Object.fromEntries(lines(await read("config.toml")).map((line) => {
    const [, key, value] = /^(\w+) = (".*")$/.exec(line);
    return [key, JSON.parse(value)];
  }));
  // The side input as the host keys it: by the `user` field's text (a number's digits).
  const h = new MockHost().withTable("users");
  for (const row of lines(await read("users.jsonl"))) h.withRow("users", String(JSON.parse(row).user), row);
  const input = lines(await read("input.jsonl"));
  const out = h.process(h.init(Enrich, config), input);
  assert.deepEqual(out.values, lines(await read("expected.jsonl")));
  const dead = lines(await read("expected-dead.jsonl")).map((line) => JSON.parse(line));
  assert.deepEqual(out.rejected, dead.map((d) => ({ index: d.position - 1, reason: d.reason })));
});
