// eddy-plugin/testing: an in-memory Eddy host for testing JavaScript plugins under Node,
// with `plugin-sdk/js/test.sh APP_DIR` (node's built-in test runner; no Wasm involved).
//
//     import { test } from "node:test";
//     import assert from "node:assert/strict";
//     import { MockHost } from "eddy-plugin/testing";
//     import { BigSpenders } from "./app.js";
//
//     test("keeps big spenders", () => {
//       const host = new MockHost();
//       const plugin = host.init(BigSpenders, { min: "100" });
//       const out = host.select(plugin, ['{"amount": 99}', '{"amount": 250}']);
//       assert.deepEqual(out.kept, [1]);
//     });
//
// The JavaScript twin of the Rust SDK's `MockHost` (plugin-sdk/src/mock.rs).
//
// Invariants:
// - The mock drives a plugin through its exported interfaces (`lifecycle.init`,
//   `filter.select`, `transform.process`) with the same packed records a component gets,
//   and checks the answer as the host does (kept indices ascending, origins in order,
//   columns that agree), so a test covers what the component will do.
// - Under test.sh this module is also the WIT import `eddy:plugin/host@0.2.0` (the named
//   exports `log`, `stateGet`, `stateSet`, `stateDelete`, `lookup`, `fieldNumbers`), which
//   serve the mock host running the current call. A host call outside a call fails.
// - It enforces the host's rules: keyed state only for keys of events in the current batch
//   (none during init), lookups only in declared tables. Breaking one is a trap: the call
//   fails with a `MockTrap` even if the plugin caught the exception.

import { runInNewContext } from "node:vm";
import { Batch, PLUGIN_CLASS, exportPlugin } from "eddy-plugin";

/**
 * Typed-array constructors of another realm. In a component, the bindings that hand the
 * plugin its batch and the host's answers run in a realm of their own, where
 * `x instanceof Uint8Array` is false; the mock hands over such arrays too, so a test
 * catches code that relies on it.
 */
const foreign = runInNewContext("({ Uint8Array, Uint32Array, BigInt64Array, Float64Array })");

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Bytes as a Map key. */
function keyOf(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function bytesOf(value, what) {
  if (Object.prototype.toString.call(value) === "[object Uint8Array]") return value;
  if (typeof value === "string") return encoder.encode(value);
  throw new TypeError(`${what} must be a string or a Uint8Array`);
}

/** What the real host does to a plugin that breaks its rules: the call fails. */
export class MockTrap extends Error {
  constructor(message) {
    super(message);
    this.name = "MockTrap";
  }
}

/** A plugin refused its config: `message` is exactly the plugin's error. */
export class InitError extends Error {
  constructor(message) {
    super(message);
    this.name = "InitError";
  }
}

/**
 * Packs events into the WIT `batch` record a plugin receives.
 * An event is `[key, timestamp, value]` (key and value strings or bytes, timestamp ms),
 * `{key, timestamp, value, headers}` (headers: [name, value] pairs), or a bare value
 * string (key "", timestamp 0).
 * @param {Array<string | [string | Uint8Array, number | bigint, string | Uint8Array] | object>} events
 * @returns {object} the record: values, valueEnds, keys, keyEnds, timestamps, headers
 */
export function packBatch(events) {
  const list = events.map((e) => {
    if (typeof e === "string" || Object.prototype.toString.call(e) === "[object Uint8Array]") {
      return { key: "", timestamp: 0, value: e };
    }
    if (Array.isArray(e)) return { key: e[0], timestamp: e[1], value: e[2] };
    return e;
  });
  const values = [];
  const keys = [];
  const valueEnds = new Uint32Array(list.length);
  const keyEnds = new Uint32Array(list.length);
  const timestamps = new BigInt64Array(list.length);
  let valueBytes = 0;
  let keyBytes = 0;
  const anyHeaders = list.some((e) => e.headers && e.headers.length > 0);
  const headers = { headerEnds: [], names: [], nameEnds: [], values: [], valueEnds: [] };
  let nameBytes = 0;
  let headerValueBytes = 0;
  list.forEach((e, i) => {
    const value = bytesOf(e.value, "an event's value");
    const key = bytesOf(e.key ?? "", "an event's key");
    values.push(value);
    keys.push(key);
    valueEnds[i] = valueBytes += value.length;
    keyEnds[i] = keyBytes += key.length;
    timestamps[i] = BigInt(e.timestamp ?? 0);
    for (const [name, hv] of e.headers ?? []) {
      const n = bytesOf(name, "a header name");
      const v = bytesOf(hv, "a header value");
      headers.names.push(n);
      headers.values.push(v);
      headers.nameEnds.push(nameBytes += n.length);
      headers.valueEnds.push(headerValueBytes += v.length);
    }
    headers.headerEnds.push(headers.nameEnds.length);
  });
  return {
    values: concat(values, valueBytes),
    valueEnds,
    keys: concat(keys, keyBytes),
    keyEnds,
    timestamps,
    headers: anyHeaders ? {
      headerEnds: Uint32Array.from(headers.headerEnds),
      names: concat(headers.names, nameBytes),
      nameEnds: Uint32Array.from(headers.nameEnds),
      values: concat(headers.values, headerValueBytes),
      valueEnds: Uint32Array.from(headers.valueEnds),
    } : undefined,
  };
}

function concat(parts, size) {
  const out = new Uint8Array(size);
  let p = 0;
  for (const part of parts) {
    out.set(part, p);
    p += part.length;
  }
  return out;
}

/** A copy of a typed array, made in the foreign realm. */
function handOver(array) {
  return new foreign[array.constructor.name](array);
}

/** A copy of a record's columns, as the bindings hand a plugin its own copy. */
function copyRecord(r) {
  return {
    values: handOver(r.values),
    valueEnds: handOver(r.valueEnds),
    keys: handOver(r.keys),
    keyEnds: handOver(r.keyEnds),
    timestamps: handOver(r.timestamps),
    headers: r.headers && Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k, handOver(v)])),
  };
}

/** The mock host running the current call, for the host functions below. */
let current = null;

/**
 * A stand-in for the Eddy host in tests: side-input tables, keyed state, captured logs.
 */
export class MockHost {
  /**
   * @param {{fieldNumbers?: "now" | "learn" | "never"}} [options] how `field-numbers` answers:
   *   "now" (the default, as the Rust MockHost) parses any field at once; "learn" answers as
   *   the real host does (a field from the call after the one that first asked for it, up to
   *   16 fields); "never" always answers with an empty list, so the SDK parses itself.
   */
  constructor(options = {}) {
    this._mode = options.fieldNumbers ?? "now";
    if (!["now", "learn", "never"].includes(this._mode)) throw new TypeError(`fieldNumbers: ${this._mode}`);
    this._tables = new Map();
    this._state = new Map();
    this._logs = [];
    this._known = new Set();
    this._asked = new Set();
    this._batch = null;
    this._batchKeys = new Set();
    this._trap = null;
  }

  /** Adds a row to side-input table `table` (declaring the table), as JSON text.
   *  @param {string} table @param {string | Uint8Array} key @param {string} row @returns {this} */
  withRow(table, key, row) {
    this.withTable(table)._tables.get(table).set(keyOf(bytesOf(key, "a row key")), bytesOf(row, "a row"));
    return this;
  }

  /** Declares an empty side-input table. @param {string} table @returns {this} */
  withTable(table) {
    if (!this._tables.has(table)) this._tables.set(table, new Map());
    return this;
  }

  /** Seeds keyed state `name` of `key`.
   *  @param {string | Uint8Array} key @param {string} name @param {string | Uint8Array} value @returns {this} */
  withState(key, name, value) {
    this._state.set(stateKey(bytesOf(key, "a state key"), name), bytesOf(value, "a state value").slice());
    return this;
  }

  /**
   * Creates a plugin from its config, as the host does when it loads it: calls
   * `lifecycle.init`. Throws an `InitError` with the plugin's message when it refuses.
   * @param {Function | object} plugin a plugin class (each call makes a new instance), or
   *   the app's module (`import * as app from "./app.js"`: its exported interfaces)
   * @param {Record<string, string> | Array<[string, string]>} [config]
   * @returns {object} the plugin's interfaces, for `select` and `process`
   */
  init(plugin, config = {}) {
    let exports;
    if (typeof plugin === "function") exports = exportPlugin(plugin);
    else if (plugin && plugin.lifecycle) {
      const cls = plugin.lifecycle[PLUGIN_CLASS];
      exports = cls ? exportPlugin(cls) : plugin;
    } else throw new TypeError("init: pass a plugin class or the app's module");
    const entries = Array.isArray(config) ? config : Object.entries(config).map(([k, v]) => [k, String(v)]);
    // The binding's rule: a returned {tag, val} is the result, a thrown value the error.
    const result = this._run(packBatch([]), () => {
      try {
        const r = exports.lifecycle.init(entries.map(([k, v]) => [k, v]));
        return r && (r.tag === "ok" || r.tag === "err") ? r : { tag: "ok" };
      } catch (e) {
        if (e instanceof MockTrap) throw e;
        return { tag: "err", val: e && Object.hasOwn(e, "payload") ? e.payload : e };
      }
    });
    if (result.tag === "err") {
      if (typeof result.val !== "string") {
        throw new TypeError(`init failed with a ${typeof result.val}, not a string: the component would trap (${result.val})`);
      }
      throw new InitError(result.val);
    }
    return exports;
  }

  /**
   * Runs a filter over a batch of events (see `packBatch` for their forms).
   * @returns {{kept: number[], rejected: Array<{index: number, reason: string}>}}
   */
  select(plugin, events) {
    if (!plugin.filter) throw new TypeError("select: the plugin is not a filter");
    const batch = packBatch(events);
    const n = batch.timestamps.length;
    const [kept, rejected] = this._run(batch, () => plugin.filter.select(copyRecord(batch)));
    const keptList = Array.from(kept);
    if (keptList.some((k, i) => !(k < n) || (i > 0 && keptList[i - 1] >= k))) {
      throw new Error(`malformed result: kept indices ${JSON.stringify(keptList)} are not ascending within the batch of ${n}`);
    }
    return { kept: keptList, rejected: checkRejections(rejected, n) };
  }

  /**
   * Runs a transform over a batch of events (see `packBatch` for their forms).
   * @returns {{outputs: Array<{key: string, timestamp: number, value: string}>,
   *            values: string[], origins: number[], rejected: Array<{index: number, reason: string}>}}
   */
  process(plugin, events) {
    if (!plugin.transform) throw new TypeError("process: the plugin is not a transform");
    const batch = packBatch(events);
    const n = batch.timestamps.length;
    const [out, origins, rejected] = this._run(batch, () => plugin.transform.process(copyRecord(batch)));
    const m = out.timestamps.length;
    const ends = (name, ends, bytes) => {
      if (ends.length !== m) throw new Error(`malformed result: ${m} timestamps but ${ends.length} ${name} ends`);
      for (let i = 0; i < m; i++) {
        if (ends[i] > bytes.length || (i > 0 && ends[i] < ends[i - 1])) {
          throw new Error(`malformed result: ${name} end ${i} (${ends[i]}) is out of order or past ${bytes.length} bytes`);
        }
      }
    };
    ends("value", out.valueEnds, out.values);
    ends("key", out.keyEnds, out.keys);
    const originList = Array.from(origins);
    if (originList.length !== m) throw new Error(`malformed result: ${m} events but ${originList.length} origins`);
    if (originList.some((o, i) => !(o < n) || (i > 0 && originList[i - 1] > o))) {
      throw new Error(`malformed result: origins ${JSON.stringify(originList)} are not ascending within the batch of ${n}`);
    }
    const view = new Batch(out);
    const outputs = [];
    for (const e of view) outputs.push({ key: e.keyText, timestamp: e.timestamp, value: e.valueText });
    return { outputs, values: outputs.map((o) => o.value), origins: originList, rejected: checkRejections(rejected, n) };
  }

  /** Keyed state `name` of `key` as the plugin left it, or `undefined`.
   *  @param {string | Uint8Array} key @param {string} name @returns {Uint8Array | undefined} */
  state(key, name) {
    return this._state.get(stateKey(bytesOf(key, "a state key"), name));
  }

  /** The same as text. @returns {string | undefined} */
  stateText(key, name) {
    const value = this.state(key, name);
    return value === undefined ? undefined : decoder.decode(value);
  }

  /** Everything the plugin logged so far. @type {Array<{level: string, message: string}>} */
  get logs() {
    return this._logs.map((l) => ({ ...l }));
  }

  /** Runs `call` as this host's current call over `batch`. */
  _run(batch, call) {
    const previous = current;
    current = this;
    this._batch = batch;
    this._batchKeys = new Set();
    for (let i = 0, start = 0; i < batch.keyEnds.length; start = batch.keyEnds[i++]) {
      this._batchKeys.add(keyOf(batch.keys.subarray(start, batch.keyEnds[i])));
    }
    this._asked = new Set();
    this._trap = null;
    try {
      const result = call();
      if (this._trap) throw this._trap; // a trap ends the call, whatever the plugin did
      return result;
    } finally {
      current = previous;
      this._batch = null;
      // The real host parses, before each call, what the previous call asked for.
      this._known = new Set([...this._asked].slice(0, 16));
    }
  }

  _trapWith(message) {
    this._trap = new MockTrap(message);
    throw this._trap;
  }

  _checkKey(key) {
    if (!this._batchKeys.has(keyOf(key))) {
      this._trapWith(`state key ${JSON.stringify(decoder.decode(key))} is not the key of an event in the current batch; the host refuses it`);
    }
  }
}

function stateKey(key, name) {
  return `${keyOf(key)}/${name}`;
}

function checkRejections(rejected, n) {
  return Array.from(rejected, (r) => {
    if (!(r.index < n)) throw new Error(`malformed result: it rejected event ${r.index} of a batch of ${n}`);
    if (typeof r.reason !== "string") throw new Error(`malformed result: a rejection's reason is a ${typeof r.reason}`);
    return { index: r.index, reason: r.reason };
  });
}

// ---------------------------------------------------------------------------------------
// The WIT import `eddy:plugin/host@0.2.0`, served by the mock host running the call.
// ---------------------------------------------------------------------------------------

function running() {
  if (current === null) {
    throw new MockTrap("host call outside a plugin call: run the plugin through a MockHost");
  }
  return current;
}

const LEVELS = ["trace", "debug", "info", "warn", "error"];

/** `log(level, message)` of the WIT host interface. */
export function log(level, message) {
  const host = running();
  if (!LEVELS.includes(level)) host._trapWith(`"${level}" is not one of the cases of level`);
  if (typeof message !== "string") host._trapWith("log: the message must be a string");
  host._logs.push({ level, message });
}

/** `state-get(key, name)` of the WIT host interface. */
export function stateGet(key, name) {
  const host = running();
  host._checkKey(key);
  const value = host._state.get(stateKey(key, name));
  return value && handOver(value);
}

/** `state-set(key, name, value)` of the WIT host interface. */
export function stateSet(key, name, value) {
  const host = running();
  host._checkKey(key);
  host._state.set(stateKey(key, name), Uint8Array.from(value));
}

/** `state-delete(key, name)` of the WIT host interface. */
export function stateDelete(key, name) {
  const host = running();
  host._checkKey(key);
  host._state.delete(stateKey(key, name));
}

/** `lookup(table, key)` of the WIT host interface. */
export function lookup(table, key) {
  const host = running();
  const rows = host._tables.get(table);
  if (rows === undefined) host._trapWith(`no side-input table \`${table}\`; declare it on the MockHost (withTable or withRow)`);
  const row = rows.get(keyOf(key));
  return row && handOver(row);
}

/** `field-numbers(name)` of the WIT host interface. */
export function fieldNumbers(name) {
  const host = running();
  host._asked.add(name);
  const known = host._mode === "now" || (host._mode === "learn" && host._known.has(name));
  if (!known || host._batch.timestamps.length === 0) return new foreign.Float64Array(0);
  return handOver(new Batch(host._batch).numbers(name));
}
