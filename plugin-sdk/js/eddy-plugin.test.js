// Tests of the helper library and the mock host: `plugin-sdk/js/test.sh plugin-sdk/js`.
// The JSON tests are the Rust SDK's (plugin-sdk/src/json), ported; the random ones check
// the quick search against the exact scanner, and code point order against UTF-8 bytes.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Batch, Config, Filter, Output, Selection, Transform, compareCodePoints, debugQuote,
  exportPlugin, fields, log, lookup, mergeObjects, parseF64, state, utf8,
} from "eddy-plugin";
import { InitError, MockHost, MockTrap, packBatch } from "eddy-plugin/testing";

/** Field `name` of a one-event batch holding `value`. */
function field(value, name) {
  return new Batch(packBatch([value])).get(0).field(name);
}

test("finds fields of every kind", () => {
  const v = ' { "a" : 1, "b": "x\\"y", "c": {"a": 2, "d": [1, {"e": "}"}]}, "d": -2.5e1, "e": null } ';
  assert.equal(field(v, "a").asNumber(), 1);
  assert.equal(field(v, "b").asString(), 'x"y');
  assert.equal(field(v, "b").raw, '"x\\"y"');
  assert.equal(field(v, "c").raw, '{"a": 2, "d": [1, {"e": "}"}]}');
  assert.equal(field(v, "d").asNumber(), -25);
  assert.ok(field(v, "e").isNull());
  assert.equal(field(v, "f"), undefined);
  assert.equal(field('{"t": true, "f": false}', "t").asBool(), true);
  assert.equal(field('{"t": true, "f": false}', "f").asBool(), false);
  assert.equal(field('{"t": 1}', "t").asBool(), undefined);
  assert.deepEqual(field('{"x": [1, {"y": 2}]}', "x").json(), [1, { y: 2 }]);
});

test("numbers parse like Rust's parser, fast path or not", () => {
  for (const text of ["1e3", "1.5E-2", "9007199254740993", "-0", "12345678901234567890", "0.1",
    "100.00", "-0.000001", "123456789012.34", "900719925474099.3", "1e400", "-1e400"]) {
    assert.ok(Object.is(field(`{"n": ${text}}`, "n").asNumber(), Number(text)), text);
  }
  for (const notANumber of ['"1"', "true", "[1]", "null", "{}"]) {
    assert.equal(field(`{"n": ${notANumber}}`, "n").asNumber(), undefined, notANumber);
  }
});

test("parseF64 takes what Rust's str::parse::<f64> takes", () => {
  const yes = { "1": 1, "+1": 1, "-1": -1, "1.": 1, ".5": 0.5, "1e5": 1e5, "1E+5": 1e5, "1.e2": 100,
    "007": 7, "inf": Infinity, "-Infinity": -Infinity, "+INF": Infinity, "infinity": Infinity };
  for (const [text, want] of Object.entries(yes)) assert.equal(parseF64(text), want, text);
  assert.ok(Number.isNaN(parseF64("NaN")) && Number.isNaN(parseF64("-nan")));
  for (const no of ["", " 1", "1 ", "0x10", "1_000", ".", "-", "+", "e5", "1e", "1e+", "infin", "1,5", "١"]) {
    assert.equal(parseF64(no), undefined, JSON.stringify(no));
  }
});

test("nested keys are not top level; escaped keys match their text", () => {
  assert.equal(field('{"x": {"amount": 5}}', "amount"), undefined);
  assert.equal(field('{"amou\\u006et": 7}', "amount").asNumber(), 7);
  assert.equal(field('{"a\\"b": 7}', 'a"b').asNumber(), 7);
  assert.equal(field('{"note": "\\"amount\\": 1", "amount": 2}', "amount").asNumber(), 2);
});

test("malformed input gives nothing", () => {
  for (const bad of ["", "[1]", "{", '{"a"', '{"a":', '{"a" 1}', '{"a":1 "b":2}', '"s"']) {
    assert.equal(field(bad, "b"), undefined, bad);
  }
  assert.equal(field("{}", "a"), undefined);
});

test("strings decode as serde_json decodes them", () => {
  assert.equal(field('{"s": "\\ud83d\\ude00 \\u00fc\\n"}', "s").asString(), "\u{1F600} \u00fc\n");
  assert.equal(field('{"s": "\u{1F600}"}', "s").asString(), "\u{1F600}");
  assert.equal(field('{"s": "\\ud800"}', "s").asString(), undefined);
  assert.equal(field('{"s": "x\\udc00"}', "s").asString(), undefined);
  assert.equal(field('{"s": 1}', "s").asString(), undefined);
});

test("merges objects as the Rust SDK does", () => {
  const merge = (a, b) => {
    const out = mergeObjects(a, b);
    return out && utf8(out);
  };
  assert.equal(merge('{"a":1}', ' {"b":2} '), '{"a":1,"b":2}');
  assert.equal(merge('{"a":1,"b":2}', '{"b":3, "c" : [4], "a":0}'), '{"a":1,"b":2,"c":[4]}');
  assert.equal(merge("{}", '{"c":1}'), '{"c":1}');
  assert.equal(merge('{"a":1}', "{}"), '{"a":1}');
  assert.equal(merge("[]", "{}"), undefined);
  // A key escaped on one side is the same key.
  assert.equal(merge(' { "a" : 1 }\n', '{"\\u0061": 2, "b": 3}'), '{"a" : 1,"b":3}');
  // As in Rust: the body is trimmed of ASCII whitespace (form feed too), but the scanner
  // skips JSON whitespace only, so it finds no field in this base and adds them all.
  assert.equal(merge('\f{ "a" : 1 }', '{"\\u0061": 2}'), '{"a" : 1,"\\u0061":2}');
  assert.equal(merge('{"a":1}', "1"), undefined);
});

test("merging by search agrees with merging by scanning both objects", () => {
  const rnd = random(9);
  const pick = (list) => list[rnd(list.length)];
  const keys = ['"a"', '"b"', '"\\u0061"', '"a b"', '"\u{1F600}"', '"\\ud83d\\ude00"', '"x\\"y"', '"ab"', '"\\ud800"'];
  const values = ["1", '"a"', '"\\"b\\":"', '{"a": 1}', '["b"]', '"\\\\"'];
  const object = () => `{${Array.from({ length: rnd(4) }, () => `${pick(keys)}:${pick(values)}`).join(", ")}}`;
  // The Rust SDK's rule, spelled out: a key is taken when base has the same raw key, or
  // (either being escaped) one naming the same text (serde_json refuses lone surrogates).
  const text = (raw) => {
    try {
      const t = JSON.parse(raw);
      return /[\ud800-\udfff]/u.test(t) ? undefined : t;
    } catch {
      return undefined;
    }
  };
  const sameKey = (a, b) => a === b || ((a.includes("\\") || b.includes("\\")) && text(b) !== undefined &&
    (a.slice(1, -1) === text(b) || (a.includes("\\") && text(a) === text(b))));
  for (let i = 0; i < 2000; i++) {
    const [base, extra] = [object(), object()];
    const ours = fields(base).map(([k]) => k);
    const added = fields(extra).filter(([k]) => !ours.some((o) => sameKey(o, k)));
    const body = base.slice(1, -1).trim();
    const want = `{${body}${added.map(([k, f], j) => `${body === "" && j === 0 ? "" : ","}${k}:${f.raw}`).join("")}}`;
    assert.equal(utf8(mergeObjects(base, extra)), want, `${base} + ${extra}`);
  }
});

test("fields lists every top-level member in order", () => {
  const got = fields('{"a": 1, "b": {"c": 2}, "a": "x"}').map(([k, f]) => [k, f.raw]);
  assert.deepEqual(got, [['"a"', "1"], ['"b"', '{"c": 2}'], ['"a"', '"x"']]);
});

/** A small random generator, seeded, for the property tests. */
function random(seed) {
  let x = seed;
  return (n) => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return x % n;
  };
}

test("the quick search agrees with the exact scanner", () => {
  const rnd = random(42);
  const pick = (list) => list[rnd(list.length)];
  const names = ["amount", "user", "a", "s", "x", "", "ünï", "a{b", "k]"];
  const scalars = ["1", "-2.5e3", "true", "null", '"DE"', '"a\\"b"', '"}"', '"\u{1F600}"', '"amount"', '"user"'];
  const value = (d) => (d < 2 && rnd(4) === 0
    ? `{${Array.from({ length: rnd(3) }, () => `"${pick(names)}":${value(d + 1)}`).join(",")}}`
    : rnd(8) === 0 ? `[${value(d + 1)}, ${pick(scalars)}]` : pick(scalars));
  const key = () => {
    const k = pick(names);
    return rnd(8) === 0 && k.length > 0 ? `"\\u${k.charCodeAt(0).toString(16).padStart(4, "0")}${k.slice(1)}"` : `"${k}"`;
  };
  const events = Array.from({ length: 3000 }, () => {
    const members = Array.from({ length: rnd(6) }, () => `${key()}${pick(["", " "])}:${pick(["", " "])}${value(0)}`);
    return `${pick(["", " "])}{${members.join(pick([",", ", "]))}}`;
  });
  const batch = new Batch(packBatch(events));
  const decodeKey = (raw) => {
    try {
      return JSON.parse(raw);
    } catch {
      return undefined;
    }
  };
  for (const name of names) {
    for (const event of batch) {
      const want = fields(event.value).find(([k]) => decodeKey(k) === name);
      assert.equal(event.field(name)?.raw, want?.[1].raw, `${name} of ${event.valueText}`);
    }
    // The column parsed here agrees with the events' fields.
    const numbers = batch.numbers(name);
    for (const event of batch) {
      const want = event.field(name)?.asNumber();
      assert.ok(Object.is(numbers[event.index], want === undefined ? NaN : want));
    }
  }
});

test("compares strings in code point order, as UTF-8 bytes compare", () => {
  const rnd = random(7);
  const chars = ["a", "z", "\u00fc", "\u07ff", "\u0800", "\ud7ff", "\ue000", "\uffff", "\u{10000}", "\u{1F600}", "\u{10FFFF}"];
  const text = () => Array.from({ length: rnd(4) }, () => chars[rnd(chars.length)]).join("");
  for (let i = 0; i < 2000; i++) {
    const [a, b] = [text(), text()];
    const want = Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b)));
    assert.equal(Math.sign(compareCodePoints(a, b)), want, `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
  }
});

test("quotes strings as Rust's {:?} does", () => {
  assert.equal(debugQuote("~"), '"~"');
  assert.equal(debugQuote('a"b\\c'), '"a\\"b\\\\c"');
  assert.equal(debugQuote("\t\r\n\0'"), '"\\t\\r\\n\\0\'"');
  assert.equal(debugQuote("\u0001\u007f\u0085"), '"\\u{1}\\u{7f}\\u{85}"');
  assert.equal(debugQuote("ü \u{1F600} 日本"), '"ü \u{1F600} 日本"');
  assert.equal(debugQuote("e\u0301\u00a0\u200b\u2028\ufeff\ue000"), '"e\\u{301}\\u{a0}\\u{200b}\\u{2028}\\u{feff}\\u{e000}"');
});

test("config errors read as the Rust SDK's", () => {
  const config = new Config([["a", "1"], ["b", "x y"], ["a", "2"], ["e", ""]]);
  assert.equal(config.get("a"), "1");
  assert.equal(config.get("z"), undefined);
  assert.equal(config.number("a"), 1);
  assert.throws(() => config.require("z"), { message: "missing config key `z`" });
  assert.throws(() => config.number("b"), { message: 'config key `b` = "x y": invalid float literal' });
  assert.throws(() => config.number("e"), { message: 'config key `e` = "": cannot parse float from empty string' });
});

test("events carry key, time, value and headers", () => {
  const batch = new Batch(packBatch([
    { key: "k1", timestamp: 10, value: '{"a":1}', headers: [["h", "x"], ["h", "y"]] },
    ["", 20, '{"a":2}'],
  ]));
  const [first, second] = [...batch];
  assert.equal(batch.length, 2);
  assert.equal(first.keyText, "k1");
  assert.equal(second.keyText, "");
  assert.equal(second.timestamp, 20);
  assert.equal(second.index, 1);
  assert.equal(second.valueText, '{"a":2}');
  assert.deepEqual(second.json(), { a: 2 });
  assert.deepEqual(first.headers.map(([n, v]) => [n, utf8(v)]), [["h", "x"], ["h", "y"]]);
  assert.equal(utf8(first.header("h")), "x");
  assert.deepEqual(second.headers, []);
  assert.equal(batch.get(2), undefined);
});

test("outputs check their order as they go", () => {
  const batch = new Batch(packBatch(["{}", "{}", "{}"]));
  const selection = new Selection();
  selection.keep(0);
  selection.keep(batch.get(2));
  assert.throws(() => selection.keep(1), /ascending/);
  assert.throws(() => selection.keep(2), /ascending/);
  assert.deepEqual(Array.from(selection.kept), [0, 2]);
  const out = new Output(batch);
  out.forward(1);
  out.emit(1, { b: 2 }, { key: "new", timestamp: 7 });
  assert.throws(() => out.emit(0, "{}"), /input order/);
  assert.throws(() => out.emit(3, "{}"), RangeError);
  out.emit(2, new TextEncoder().encode('{"c":"\u{1F600}"}'));
  const [packed, origins] = out.toWit();
  const view = new Batch(packed);
  assert.deepEqual([...view].map((e) => [e.keyText, e.timestamp, e.valueText]),
    [["", 0, "{}"], ["new", 7, '{"b":2}'], ["", 0, '{"c":"\u{1F600}"}']]);
  assert.deepEqual(Array.from(origins), [1, 1, 2]);
});

/** A filter whose behaviour its config picks, for the host-facing tests. */
class Probe extends Filter {
  constructor(config) {
    super();
    this.mode = config.get("mode");
    if (this.mode === "refuse") throw new Error("no thanks");
    if (this.mode === "refuse-string") throw "plain string";
    log.info("started", { mode: this.mode });
  }

  select(batch, out) {
    for (const event of batch) {
      if (this.mode === "throw") throw new TypeError(`bad event ${event.index}`);
      if (this.mode === "count") {
        const seen = Number(state.getText(event.key, "seen") ?? "0") + 1;
        state.set(event.key, "seen", String(seen));
        if (seen === 2) state.delete(event.key, "gone");
      }
      if (this.mode === "foreign-key") state.get("not-in-batch", "x");
      if (this.mode === "lookup") {
        const row = lookup("t", event.keyText);
        if (row) out.keep(event);
      }
    }
  }
}

test("init errors carry the exception's message", () => {
  const host = new MockHost();
  assert.throws(() => host.init(Probe, { mode: "refuse" }), new InitError("no thanks"));
  assert.throws(() => host.init(Probe, { mode: "refuse-string" }), new InitError("plain string"));
  host.init(Probe, { mode: "ok" });
  assert.deepEqual(host.logs, [{ level: "info", message: 'started {"mode":"ok"}' }]);
});

test("an exception escaping select is logged and rethrown", () => {
  const host = new MockHost();
  const probe = host.init(Probe, { mode: "throw" });
  assert.throws(() => host.select(probe, ["{}"]), { name: "TypeError", message: "bad event 0" });
  const logs = host.logs.slice(1);
  assert.deepEqual(logs[0], { level: "error", message: "TypeError: bad event 0" });
  assert.equal(logs[1].level, "debug");
  assert.match(logs[1].message, /select/);
});

test("keyed state follows the host's rules", () => {
  const host = new MockHost().withState("k1", "gone", "x");
  const probe = host.init(Probe, { mode: "count" });
  host.select(probe, [["k1", 0, "{}"], ["k2", 0, "{}"]]);
  host.select(probe, [["k1", 0, "{}"]]);
  assert.equal(host.stateText("k1", "seen"), "2");
  assert.equal(host.stateText("k2", "seen"), "1");
  assert.equal(host.state("k1", "gone"), undefined);
  // A key of no event in the batch is a trap, even when the plugin catches it.
  const bad = host.init(Probe, { mode: "foreign-key" });
  assert.throws(() => host.select(bad, [["k1", 0, "{}"]]), MockTrap);
});

test("lookups read declared tables and trap on others", () => {
  const host = new MockHost().withRow("t", "k1", '{"x":1}');
  const probe = host.init(Probe, { mode: "lookup" });
  assert.deepEqual(host.select(probe, [["k1", 0, "{}"], ["k2", 0, "{}"]]).kept, [0]);
  assert.throws(() => new MockHost().select(new MockHost().init(Probe, { mode: "lookup" }), [["k1", 0, "{}"]]), MockTrap);
});

test("the host's column: at once, learnt from the previous call, or never", () => {
  class Numbers extends Transform {
    process(batch, out) {
      const n = batch.numbers("n");
      for (const event of batch) out.emit(event, JSON.stringify(n[event.index]));
    }
  }
  const events = ['{"n": 1}', '{"n": "x"}', '{"m": 2}'];
  for (const fieldNumbers of ["now", "learn", "never"]) {
    const host = new MockHost({ fieldNumbers });
    const plugin = host.init(Numbers);
    for (let call = 0; call < 2; call++) {
      assert.deepEqual(host.process(plugin, events).values, ["1", "null", "null"], `${fieldNumbers} ${call}`);
    }
  }
});

test("exportPlugin wants a Filter or a Transform", () => {
  assert.throws(() => exportPlugin(class {}), TypeError);
  const { lifecycle, filter, transform } = exportPlugin(Probe);
  assert.equal(typeof lifecycle.init, "function");
  assert.equal(typeof filter.select, "function");
  assert.equal(transform, undefined);
  assert.throws(() => filter.select(packBatch(["{}"])), /before a successful init/);
});
