// eddy-plugin: write Eddy stream-processing plugins in JavaScript.
//
// A plugin is a class extending `Filter` (keeps, drops or rejects events) or `Transform`
// (rewrites, enriches, drops or fans out events), exported with `exportPlugin`:
//
//     import { Filter, exportPlugin } from "eddy-plugin";
//
//     export class BigSpenders extends Filter {
//       constructor(config) {                 // throw to refuse the config
//         super();
//         this.min = config.number("min") ?? 100;
//       }
//       select(batch, out) {
//         const amounts = batch.numbers("amount"); // parsed by the host, NaN: no number
//         for (let i = 0; i < batch.length; i++) {
//           if (Number.isNaN(amounts[i])) out.reject(i, "no numeric `amount`");
//           else if (amounts[i] >= this.min) out.keep(i);
//         }
//       }
//     }
//     export const { lifecycle, filter } = exportPlugin(BigSpenders);
//
// `plugin-sdk/js/build.sh` bundles the app with this file and turns it into a component;
// `plugin-sdk/js/test.sh` runs its tests under Node against the mock host (testing.js).
//
// Invariants this file keeps:
// - The host is the WIT import `eddy:plugin/host@0.2.0`. In a component it is the Eddy
//   host; under test.sh the same specifier resolves to testing.js, the mock host. Nothing
//   here calls it at module load (the module is evaluated when the component is built).
// - Batches arrive packed: all values back to back with their end offsets, keys likewise
//   (see wit/eddy.wit). An `Event` is a view (its batch and index): walking a batch copies
//   no bytes, and text is decoded only when asked for (`event.valueText`, `field.asString()`).
// - JSON fields are read by scanning the raw bytes of the event's top-level object, as the
//   Rust SDK's `json::field` does: the first member with the key wins, escaped keys match
//   their text, a field's `raw` is its exact JSON text. Numbers parse as Rust's
//   `str::parse::<f64>` does; strings decode as serde_json does (a lone surrogate escape is
//   not a string). So a JavaScript plugin sees exactly what a Rust one sees.
// - Output builders pack the WIT answer straight into typed arrays. Kept indices must be
//   strictly ascending and outputs in input order: the builders check it as they go and
//   throw at the call that breaks it (the host would fail the whole batch).
// - An exception escaping the plugin's constructor refuses `init` with its message. One
//   escaping `select` or `process` is logged (error level "<Error name>: <message>", the
//   stack at debug level) and rethrown, so the call traps and the host fails the batch.
// - Typed arrays and errors from the component's bindings belong to another realm: this
//   file never tests them with `instanceof` (the mock host hands over such arrays too).
// - Cost model in a component (SpiderMonkey's interpreter inside Wasm, no JIT; measured):
//   ~0.3 µs per call, allocation or typed-array view, ~80 ns per byte a JavaScript loop
//   touches, ~20 µs per host import call (the generated bindings), while native string
//   searches and decoding cost next to nothing per byte. Hot paths here lean on the native
//   ones; `batch.numbers` (a column parsed by the host) is the cheapest way to read a number.

import * as host from "eddy:plugin/host@0.2.0";

const decoder = new TextDecoder();
const encoder = new TextEncoder();

// ---------------------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------------------

/**
 * Decodes UTF-8 bytes to a string.
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function utf8(bytes) {
  return decoder.decode(bytes);
}

// The component's bindings run in a realm of their own: the typed arrays and errors they
// hand over fail `instanceof Uint8Array` and `instanceof Error` here. These tests do not.
const toStringTag = Object.prototype.toString;

/** Whether `value` is a Uint8Array, of whatever realm. */
function isBytes(value) {
  return toStringTag.call(value) === "[object Uint8Array]";
}

/** Whether `value` is an Error, of whatever realm. */
function isError(value) {
  return value instanceof Error || toStringTag.call(value) === "[object Error]";
}

/** A string as UTF-8 bytes; bytes as they are. */
function toBytes(value, what) {
  if (isBytes(value)) return value;
  if (typeof value === "string") return encoder.encode(value);
  throw new TypeError(`${what} must be a string or a Uint8Array, not ${typeof value}`);
}

/** Encoded field names, so a lookup per event does not encode its name each time. */
const nameCache = new Map();
function nameBytes(name) {
  let bytes = nameCache.get(name);
  if (bytes === undefined) {
    if (typeof name !== "string") throw new TypeError("a field name must be a string");
    if (nameCache.size >= 256) nameCache.clear();
    bytes = encoder.encode(name);
    nameCache.set(name, bytes);
  }
  return bytes;
}

/** Whether `s` holds a surrogate that is not half of a pair (JSON.parse makes them from
 *  `\ud800` escapes; serde_json refuses them). */
function hasLoneSurrogate(s) {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    if (c > 0xdbff) return true; // a trail without a lead
    const next = s.charCodeAt(i + 1); // NaN past the end
    if (!(next >= 0xdc00 && next <= 0xdfff)) return true;
    i++;
  }
  return false;
}

/**
 * Compares two strings in Unicode code point order: the order of their UTF-8 bytes, which
 * is how Rust compares `str`s. (`<` on JavaScript strings compares UTF-16 code units, which
 * puts U+E000..U+FFFF after the characters beyond U+FFFF.)
 * @param {string} a
 * @param {string} b
 * @returns {number} negative, zero or positive as `a` sorts before, with or after `b`
 */
export function compareCodePoints(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (D800-DFFF) stand for code points past FFFF: move them above E000-FFFF.
    if (x >= 0xd800 && y >= 0xd800) {
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}

/**
 * Code points Rust's `{:?}` shows as `\u{…}`, as [first, last] pairs: controls (Cc), format
 * characters (Cf), private use (Co), separators other than the space (Zs, Zl, Zp), and the
 * common blocks of combining marks (grapheme extenders). The engine in a component has no
 * Unicode property tables (`\p{…}` does not compile there), and Rust's own tables (all
 * 383 ranges of grapheme extenders, unassigned code points) are not worth shipping for
 * error messages: a config value with a rarer mark or an unassigned code point is quoted
 * as it is, where Rust would escape it.
 */
const DEBUG_ESCAPED = [
  [0x0, 0x1f], [0x7f, 0x9f], [0xa0, 0xa0], [0xad, 0xad], [0x300, 0x36f], [0x483, 0x489],
  [0x600, 0x605], [0x61c, 0x61c], [0x6dd, 0x6dd], [0x70f, 0x70f], [0x890, 0x891],
  [0x8e2, 0x8e2], [0x1680, 0x1680], [0x180e, 0x180e], [0x1ab0, 0x1aff], [0x1dc0, 0x1dff],
  [0x2000, 0x200f], [0x2028, 0x202f], [0x205f, 0x2064], [0x2066, 0x206f], [0x20d0, 0x20f0],
  [0x3000, 0x3000], [0xe000, 0xf8ff], [0xfe00, 0xfe0f], [0xfe20, 0xfe2f], [0xfeff, 0xfeff],
  [0xfff9, 0xfffb], [0x110bd, 0x110bd], [0x110cd, 0x110cd], [0x13430, 0x1343f],
  [0x1bca0, 0x1bca3], [0x1d173, 0x1d17a], [0xe0001, 0xe0001], [0xe0020, 0xe007f],
  [0xe0100, 0xe01ef], [0xf0000, 0xffffd], [0x100000, 0x10fffd],
];

function debugEscaped(cp) {
  // Lone surrogates (Cs) cannot come from Rust; shown escaped as Rust would show them.
  if (cp >= 0xd800 && cp <= 0xdfff) return true;
  return DEBUG_ESCAPED.some(([first, last]) => cp >= first && cp <= last);
}

/**
 * Quotes a string as Rust's `{:?}` does (`"op \"~\""`), so that error messages match the
 * Rust SDK's word for word.
 * @param {string} text
 * @returns {string}
 */
export function debugQuote(text) {
  let out = '"';
  for (const c of text) {
    switch (c) {
      case "\t": out += "\\t"; break;
      case "\r": out += "\\r"; break;
      case "\n": out += "\\n"; break;
      case "\\": out += "\\\\"; break;
      case '"': out += '\\"'; break;
      case "\0": out += "\\0"; break;
      default:
        out += debugEscaped(c.codePointAt(0)) ? `\\u{${c.codePointAt(0).toString(16)}}` : c;
    }
  }
  return out + '"';
}

// ---------------------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------------------

/** What Rust's `str::parse::<f64>` accepts, besides inf, infinity and nan. */
const RUST_DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const RUST_SPECIAL = /^([+-]?)(inf|infinity|nan)$/i;

/**
 * Parses `text` as Rust's `str::parse::<f64>` does, or returns `undefined` where Rust
 * fails: digits with an optional sign (`+` too), point and exponent, and `inf`, `infinity`
 * and `nan` in any case. Unlike `Number()`, it refuses "", whitespace, `0x10` and `1_000`.
 * @param {string} text
 * @returns {number | undefined}
 */
export function parseF64(text) {
  if (RUST_DECIMAL.test(text)) return Number(text);
  const special = RUST_SPECIAL.exec(text);
  if (special === null) return undefined;
  if (special[2].toLowerCase() === "nan") return NaN;
  return special[1] === "-" ? -Infinity : Infinity;
}

const POW10 = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13,
  1e14, 1e15, 1e16, 1e17, 1e18];

/**
 * The number a JSON number's bytes `t[s..e)` stand for, or `undefined` when they are not
 * one. The common `-?digits(.digits)?` shape is read off the bytes (exact: the digits fit
 * in 2^53 and one division by an exact power of ten rounds correctly, as in the Rust SDK);
 * anything else goes through the text.
 */
function numberAt(t, s, e) {
  const first = t[s];
  if (first !== 0x2d && !(first >= 0x30 && first <= 0x39)) return undefined; // '-' or digit
  const i = first === 0x2d ? s + 1 : s;
  if (e - i <= 19 && e > i) {
    let mantissa = 0;
    let point = -1;
    for (let j = i; j < e; j++) {
      const digit = t[j] - 0x30;
      if (digit >= 0 && digit <= 9) mantissa = mantissa * 10 + digit;
      else if (t[j] === 0x2e && point < 0 && j > i) point = j;
      else { mantissa = -1; break; }
    }
    const scale = point < 0 ? 0 : e - 1 - point;
    // Below 2^53 every step above was exact (at 2^53 it may have rounded: the text decides).
    if (mantissa >= 0 && mantissa < 2 ** 53 && (point < 0 || scale > 0)) {
      const value = mantissa / POW10[scale];
      return first === 0x2d ? -value : value;
    }
  }
  return parseF64(decoder.decode(t.subarray(s, e)));
}

// ---------------------------------------------------------------------------------------
// The raw JSON scanner: walks an object's top level member by member, skipping values
// without building them. The byte-for-byte twin of the Rust SDK's `json/scan.rs`; every
// function returns -1 where the text is malformed (the host only hands over well-formed
// objects, so that is for text a plugin builds itself).
// ---------------------------------------------------------------------------------------

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

// (The tests are written out rather than calling a helper: in the engine a component
// runs, every JavaScript call and byte costs ~100 ns.)

function skipWs(t, p, end) {
  while (p < end) {
    const b = t[p];
    if (b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09) break;
    p++;
  }
  return p;
}

/** The position after the string opening at `p`, or -1. */
function skipString(t, p, end) {
  if (p >= end || t[p] !== QUOTE) return -1;
  let q = p + 1;
  for (;;) {
    q = t.indexOf(QUOTE, q); // native search: most of an event's bytes are in strings
    if (q < 0 || q >= end) return -1;
    // The quote closes the string unless an odd number of backslashes precede it.
    let b = q - 1;
    while (t[b] === BACKSLASH) b--;
    if ((q - 1 - b) % 2 === 0) return q + 1;
    q++;
  }
}

/** The position after the value starting at `p`, or -1. */
function skipValue(t, p, end) {
  if (p >= end) return -1;
  const c = t[p];
  if (c === QUOTE) return skipString(t, p, end);
  if (c === 0x7b || c === 0x5b) {
    // An object or array, however deep: count brackets outside strings.
    let depth = 0;
    while (p < end) {
      const b = t[p];
      if (b === QUOTE) {
        p = skipString(t, p, end);
        if (p < 0) return -1;
        continue;
      }
      if (b === 0x7b || b === 0x5b) depth++;
      else if (b === 0x7d || b === 0x5d) {
        if (--depth === 0) return p + 1;
      }
      p++;
    }
    return -1;
  }
  // A number or literal: up to a delimiter.
  const start = p;
  while (p < end) {
    const b = t[p];
    if (b === 0x2c || b === 0x7d || b === 0x5d || b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09) break;
    p++;
  }
  return p > start ? p : -1;
}

/**
 * Reads the member at `p` (after `{` or a `,`): key, `:`, value and the `,` after it, or
 * stops before `}`. Writes the key's and value's ranges to `at` ([keyStart, keyEnd,
 * valueStart, valueEnd], the key with its quotes) and returns where the next member starts,
 * or -1 when there is none (the object ended, or is malformed there).
 */
function member(t, p, end, at) {
  p = skipWs(t, p, end);
  const keyEnd = skipString(t, p, end);
  if (keyEnd < 0) return -1;
  let q = skipWs(t, keyEnd, end);
  if (t[q] !== 0x3a || q >= end) return -1; // ':'
  q = skipWs(t, q + 1, end);
  const valueEnd = skipValue(t, q, end);
  if (valueEnd < 0) return -1;
  at[0] = p;
  at[1] = keyEnd;
  at[2] = q;
  at[3] = valueEnd;
  const r = skipWs(t, valueEnd, end);
  if (r >= end) return -1;
  if (t[r] === 0x2c) return r + 1; // ','
  return t[r] === 0x7d ? r : -1; // '}': the next call finds no key there
}

/** Where the first member of the object `t[s..e)` starts, or -1 when it is not an object. */
function firstMember(t, s, e) {
  const p = skipWs(t, s, e);
  return p < e && t[p] === 0x7b ? p + 1 : -1;
}

/** Scratch for `member`, reused: a lookup per event allocates nothing until it finds. */
const scratch = new Uint32Array(4);

/**
 * The decoded text of the JSON string `t[s..e)` (with its quotes), or `undefined` when it
 * is not a string serde_json would decode (a lone surrogate escape, malformed text).
 */
function stringAt(t, s, e) {
  if (e - s < 2 || t[s] !== QUOTE || t[e - 1] !== QUOTE) return undefined;
  const inner = t.subarray(s + 1, e - 1);
  if (inner.indexOf(BACKSLASH) < 0) return decoder.decode(inner);
  let text;
  try {
    text = JSON.parse(decoder.decode(t.subarray(s, e)));
  } catch {
    return undefined;
  }
  return typeof text === "string" && !hasLoneSurrogate(text) ? text : undefined;
}

/** Whether the raw key `t[ks..ke)` (with quotes) names `name` (`bytes` its UTF-8). */
function keyEquals(t, ks, ke, bytes, name) {
  const n = ke - ks - 2;
  if (n === bytes.length) {
    let i = 0;
    while (i < n && t[ks + 1 + i] === bytes[i]) i++;
    if (i === n) return true;
  }
  // An escaped key names what it decodes to.
  const inner = t.subarray(ks + 1, ke - 1);
  return inner.indexOf(BACKSLASH) >= 0 && stringAt(t, ks, ke) === name;
}

/**
 * Finds the first top-level member of the object `t[s..e)` whose key is `name` and returns
 * where its value starts, its end left in `scratch[3]`; -1 when there is none.
 */
function locate(t, s, e, name) {
  const bytes = nameBytes(name);
  let p = firstMember(t, s, e);
  while (p >= 0) {
    p = member(t, p, e, scratch);
    if (p < 0) break;
    if (keyEquals(t, scratch[0], scratch[1], bytes, name)) return scratch[2];
  }
  return -1;
}

// ---------------------------------------------------------------------------------------
// Fast lookups in a batch. The scanner above is exact but runs byte by byte, and in a
// component every byte of JavaScript costs ~100 ns: ~45 µs for a field of a 100-byte event.
// Native string searches cost a fraction of that, so a batch's fields are found first the
// way the Rust SDK's `find_by_quotes` finds them (json/index.rs), over the batch's bytes as
// a string of one character per byte:
//
// - Up to the first backslash or bracket after the object's `{`, nothing is escaped or
//   nested, so the first `"name"` there that is followed by `:` is the member, and the
//   value after it is the answer. (Exactly that rule, quirks included: the Rust SDK answers
//   so, and a plugin must see what a Rust plugin sees.)
// - An event without a backslash that does not hold `"name"` anywhere has no such field.
// - Anything else is left to the exact scanner, as the Rust SDK leaves it to its block walk.
//
// Each search starts where the previous one for the same text ended when it can (events
// are usually read in order), so a batch is searched about once per text whatever its size.
// ---------------------------------------------------------------------------------------

const UNDECIDED = -2;

/** Bytes as a string of one UTF-16 unit per byte (windows-1252, which the component's
 *  engine and Node both have); structural JSON characters map to themselves. */
let singleByte;
function byteString(bytes) {
  if (singleByte === undefined) {
    try {
      singleByte = new TextDecoder("latin1");
    } catch {
      singleByte = null;
    }
  }
  if (singleByte !== null) return singleByte.decode(bytes);
  let out = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    out += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
  }
  return out;
}

/** What the quick search needs of a name, per name: its length in bytes, `"name"` as a
 *  byte string, and whether the Rust SDK's quick search takes it at all. */
const searchNames = new Map();
function searchName(name) {
  let found = searchNames.get(name);
  if (found === undefined) {
    if (searchNames.size >= 256) searchNames.clear();
    const bytes = nameBytes(name);
    found = {
      length: bytes.length,
      pattern: `"${byteString(bytes)}"`,
      quick: bytes.length <= 62 && bytes.indexOf(QUOTE) < 0 && bytes.indexOf(BACKSLASH) < 0,
    };
    searchNames.set(name, found);
  }
  return found;
}

/** A backslash or bracket: where the quick search stops. `test` with a global regex finds
 *  it natively, from `lastIndex`, without allocating. */
const STOP = /[\\{}[\]]/g;

/** Where the value of field `name` of the object `t[s..e)` of batch `b` starts (its end in
 *  `scratch[3]`), -1 when it has none, or UNDECIDED for the exact scanner to say. */
function quickLocate(b, s, e, name) {
  const t = b.values;
  const open = skipWs(t, s, e);
  if (open >= e || t[open] !== 0x7b) return UNDECIDED;
  const first = open + 1;
  const { length: n, pattern, quick } = searchName(name);
  // The quick search's own conditions in the Rust SDK (`locate` and `find_by_quotes`).
  if (quick && e - s >= 16 && e - n - 17 >= first) {
    STOP.lastIndex = first;
    const stop = STOP.test(b._byteText()) ? STOP.lastIndex - 1 : e;
    for (let c = b._next(pattern, first); c < stop && c + n + 2 <= e; c = b._next(pattern, c + 1)) {
      const colon = skipWs(t, c + n + 2, e);
      if (colon >= e || t[colon] !== 0x3a) continue; // a string value that spells the name
      const v = skipWs(t, colon + 1, e);
      const end = skipValue(t, v, e);
      const next = end < 0 ? e : skipWs(t, end, e);
      if (next >= e || (t[next] !== 0x2c && t[next] !== 0x7d)) return UNDECIDED;
      scratch[3] = end;
      return v;
    }
  }
  // Without escapes, a member called `name` would be spelled `"name"`.
  if (b._next("\\", s) >= e && b._next(pattern, first) + n + 2 > e) return -1;
  return UNDECIDED;
}

/** `locate` for an event of a batch: the quick search first. */
function locateIn(b, s, e, name) {
  const at = quickLocate(b, s, e, name);
  return at === UNDECIDED ? locate(b.values, s, e, name) : at;
}

/** The top-level members of the object `t[s..e)`: [keyStart, keyEnd, valueStart, valueEnd]
 *  four by four, up to the first malformed part. */
function members(t, s, e) {
  const out = [];
  let p = firstMember(t, s, e);
  while (p >= 0) {
    p = member(t, p, e, scratch);
    if (p < 0) break;
    out.push(scratch[0], scratch[1], scratch[2], scratch[3]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Fields and events
// ---------------------------------------------------------------------------------------

const TRUE = encoder.encode("true");
const FALSE = encoder.encode("false");
const NULL = encoder.encode("null");

/** Whether `t[s..e)` holds exactly `bytes`. */
function bytesAre(t, s, e, bytes) {
  if (e - s !== bytes.length) return false;
  for (let i = 0; i < bytes.length; i++) if (t[s + i] !== bytes[i]) return false;
  return true;
}

/** The raw JSON text of one field's value, read from the event's bytes (see `Event.field`). */
export class Field {
  /** @internal */
  constructor(bytes, start, end) {
    this._t = bytes;
    this._s = start;
    this._e = end;
  }

  /** The value's JSON text exactly as in the event, e.g. `42.5` or `"DE"`. @type {string} */
  get raw() {
    return decoder.decode(this.rawBytes);
  }

  /** The same as UTF-8 bytes (a view of the batch, not a copy). @type {Uint8Array} */
  get rawBytes() {
    return this._t.subarray(this._s, this._e);
  }

  /** The value as a number if it is a JSON number, else `undefined`. @returns {number | undefined} */
  asNumber() {
    return numberAt(this._t, this._s, this._e);
  }

  /** The value as a string if it is a JSON string (escapes decoded), else `undefined`.
   *  @returns {string | undefined} */
  asString() {
    return stringAt(this._t, this._s, this._e);
  }

  /** `true` or `false` if the value is that literal, else `undefined`. @returns {boolean | undefined} */
  asBool() {
    if (bytesAre(this._t, this._s, this._e, TRUE)) return true;
    if (bytesAre(this._t, this._s, this._e, FALSE)) return false;
    return undefined;
  }

  /** Whether the value is JSON `null`. @returns {boolean} */
  isNull() {
    return bytesAre(this._t, this._s, this._e, NULL);
  }

  /** The value parsed with `JSON.parse`. @returns {unknown} */
  json() {
    return JSON.parse(this.raw);
  }
}

/**
 * One event of a batch: a view of the batch's columns, valid as long as the batch (a plugin
 * may keep events of the batch it is processing, not past the call).
 */
export class Event {
  /** @internal */
  constructor(batch, index) {
    /** The event's position in its batch; outputs and rejections refer to it. @type {number} */
    this.index = index;
    this._batch = batch;
  }

  /** The value (a JSON object) as UTF-8 bytes, a view of the batch. @type {Uint8Array} */
  get value() {
    const b = this._batch;
    const i = this.index;
    return b.values.subarray(i === 0 ? 0 : b.valueEnds[i - 1], b.valueEnds[i]);
  }

  /** The value as text. @type {string} */
  get valueText() {
    return decoder.decode(this.value);
  }

  /** The key as bytes (empty when the pipeline has no `key_field`). @type {Uint8Array} */
  get key() {
    const b = this._batch;
    const i = this.index;
    return b.keys.subarray(i === 0 ? 0 : b.keyEnds[i - 1], b.keyEnds[i]);
  }

  /** The key as text. @type {string} */
  get keyText() {
    return decoder.decode(this.key);
  }

  /** The event time, in milliseconds since the Unix epoch. @type {number} */
  get timestamp() {
    return Number(this._batch.timestamps[this.index]);
  }

  /** The top-level field `name` of the value, or `undefined` when there is none. The value
   *  is scanned, not parsed; the first member with that key wins.
   *  @param {string} name @returns {Field | undefined} */
  field(name) {
    const b = this._batch;
    const i = this.index;
    const end = b.valueEnds[i];
    const at = locateIn(b, i === 0 ? 0 : b.valueEnds[i - 1], end, name);
    return at < 0 ? undefined : new Field(b.values, at, scratch[3]);
  }

  /** The whole value parsed with `JSON.parse`. @returns {any} */
  json() {
    return JSON.parse(this.valueText);
  }

  /** The event's headers as [name, value bytes] pairs. @type {Array<[string, Uint8Array]>} */
  get headers() {
    const h = this._batch.headers;
    if (!h) return [];
    const out = [];
    const i = this.index;
    for (let k = i === 0 ? 0 : h.headerEnds[i - 1]; k < h.headerEnds[i]; k++) {
      const name = h.names.subarray(k === 0 ? 0 : h.nameEnds[k - 1], h.nameEnds[k]);
      const value = h.values.subarray(k === 0 ? 0 : h.valueEnds[k - 1], h.valueEnds[k]);
      out.push([decoder.decode(name), value]);
    }
    return out;
  }

  /** The value of the first header called `name`. @param {string} name @returns {Uint8Array | undefined} */
  header(name) {
    const found = this.headers.find(([n]) => n === name);
    return found && found[1];
  }
}

/**
 * A batch of events, as the host packed it (the WIT `batch` record: `values`, `valueEnds`,
 * `keys`, `keyEnds`, `timestamps`, `headers`). Iterate it for `Event`s, or index it with
 * `get(i)` for `i` below `length`.
 */
export class Batch {
  /**
   * @param {{values: Uint8Array, valueEnds: Uint32Array, keys: Uint8Array, keyEnds: Uint32Array,
   *          timestamps: BigInt64Array, headers?: object}} record the packed columns
   * @param {boolean} [fromHost] whether this is the batch the host is running the plugin
   *   on (then `numbers` asks the host first)
   */
  constructor(record, fromHost = false) {
    this.values = record.values;
    this.valueEnds = record.valueEnds;
    this.keys = record.keys;
    this.keyEnds = record.keyEnds;
    this.timestamps = record.timestamps;
    this.headers = record.headers ?? undefined;
    /** Number of events. @type {number} */
    this.length = record.timestamps.length;
    this._fromHost = fromHost;
    this._text = undefined; // the values as a byte string, for `_next`
    this._hits = new Map(); // text searched for -> [searched from, found at]
  }

  /** The values as a byte string (see `byteString`), made once. @internal */
  _byteText() {
    if (this._text === undefined) this._text = byteString(this.values);
    return this._text;
  }

  /** The first position at or after `from` where `needle` starts in the values (as a
   *  byte string), or `values.length`. Reuses the previous answer for the same needle
   *  when it still holds. @internal */
  _next(needle, from) {
    let hit = this._hits.get(needle);
    if (hit !== undefined && from >= hit[0] && hit[1] >= from) return hit[1];
    const at = this._byteText().indexOf(needle, from);
    if (hit === undefined) this._hits.set(needle, (hit = [0, 0]));
    hit[0] = from;
    hit[1] = at < 0 ? this.values.length : at;
    return hit[1];
  }

  /** Event `index`, or `undefined` past the end. @param {number} index @returns {Event | undefined} */
  get(index) {
    return index >= 0 && index < this.length ? new Event(this, index) : undefined;
  }

  /** The events in order. @returns {Iterator<Event>} */
  [Symbol.iterator]() {
    // One result object for the whole walk: `for…of` reads it before asking for the next.
    const batch = this;
    const result = { value: undefined, done: false };
    let next = 0;
    return {
      next() {
        if (next < batch.length) result.value = new Event(batch, next++);
        else { result.value = undefined; result.done = true; }
        return result;
      },
      [Symbol.iterator]() { return this; },
    };
  }

  /**
   * The number in top-level field `name` of every event, in order; NaN where an event has
   * no such field or it is not a JSON number. The host parses the column with native code
   * (from the second batch that asks for the field on); when it has not, the column is
   * parsed here. Reading a number of every event this way costs a JavaScript plugin far
   * less than `event.field(name).asNumber()` per event.
   * @param {string} name
   * @returns {Float64Array}
   */
  numbers(name) {
    if (this._fromHost) {
      const column = host.fieldNumbers(name);
      if (column.length === this.length) return column;
    }
    const out = new Float64Array(this.length);
    const t = this.values;
    let start = 0;
    for (let i = 0; i < this.length; i++) {
      const end = this.valueEnds[i];
      const at = locateIn(this, start, end, name);
      const number = at < 0 ? undefined : numberAt(t, at, scratch[3]);
      out[i] = number === undefined ? NaN : number;
      start = end;
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------

/** The index of an event given as an `Event` or an index. */
function indexOf(event) {
  return typeof event === "number" ? event : event.index;
}

/** `array` with room for `needed` items, grown by doubling. */
function grow(array, needed) {
  if (needed <= array.length) return array;
  const bigger = new array.constructor(Math.max(needed, array.length * 2, 16));
  bigger.set(array);
  return bigger;
}

/**
 * A filter's verdict on a batch: which events to keep (in ascending order) and which to
 * reject (to the dead-letter sink, with a reason). Events neither kept nor rejected are
 * dropped.
 */
export class Selection {
  /** @param {number} [capacity] events it can keep before it grows */
  constructor(capacity = 0) {
    this._kept = new Uint32Array(capacity);
    this._count = 0;
    /** @type {Array<{index: number, reason: string}>} */
    this.rejected = [];
  }

  /** Keeps an event (an `Event` or its index); after any event kept before it.
   *  @param {Event | number} event */
  keep(event) {
    const index = indexOf(event);
    if (this._count > 0 && this._kept[this._count - 1] >= index) {
      throw new Error(`keep: event ${index} kept after event ${this._kept[this._count - 1]}; keep events in ascending order, once each`);
    }
    this._kept = grow(this._kept, this._count + 1);
    this._kept[this._count++] = index;
  }

  /** Rejects an event: it goes to the dead-letter sink with `reason`.
   *  @param {Event | number} event @param {string} reason */
  reject(event, reason) {
    this.rejected.push({ index: indexOf(event), reason: String(reason) });
  }

  /** The indices kept so far. @type {Uint32Array} */
  get kept() {
    return this._kept.subarray(0, this._count);
  }
}

/**
 * A transform's output for a batch: new events, each tied to the input event it came from.
 * Outputs go in input order (all outputs of event 3 before any of event 4); an input may
 * have zero, one or many. Outputs carry no headers (as in the Rust SDK).
 */
export class Output {
  /** @param {Batch} batch the input batch */
  constructor(batch) {
    this._in = batch;
    this._values = new Uint8Array(batch.values.length + 64);
    this._valueBytes = 0;
    this._keys = new Uint8Array(batch.keys.length);
    this._keyBytes = 0;
    this._valueEnds = new Uint32Array(batch.length);
    this._keyEnds = new Uint32Array(batch.length);
    this._timestamps = new BigInt64Array(batch.length);
    this._origins = new Uint32Array(batch.length);
    /** Number of events emitted so far. @type {number} */
    this.length = 0;
    /** @type {Array<{index: number, reason: string}>} */
    this.rejected = [];
  }

  /** Emits the event unchanged. @param {Event | number} event */
  forward(event) {
    const b = this._in;
    const i = indexOf(event);
    this._begin(i);
    this._appendValue(b.values.subarray(i === 0 ? 0 : b.valueEnds[i - 1], b.valueEnds[i]));
    this._finish(i, undefined, undefined);
  }

  /**
   * Emits a new value for the event, with the event's key and event time unless given.
   * @param {Event | number} event the input it comes from
   * @param {string | Uint8Array | object} value JSON text, its UTF-8 bytes, or a value to
   *   `JSON.stringify`
   * @param {{key?: string | Uint8Array, timestamp?: number | bigint}} [options]
   */
  emit(event, value, options) {
    const i = indexOf(event);
    this._begin(i);
    if (typeof value === "string") this._appendText(value);
    else if (isBytes(value)) this._appendValue(value);
    else {
      const text = JSON.stringify(value);
      if (text === undefined) throw new TypeError(`emit: ${typeof value} is not JSON`);
      this._appendText(text);
    }
    this._finish(i, options && options.key, options && options.timestamp);
  }

  /** Rejects an event: it goes to the dead-letter sink with `reason`.
   *  @param {Event | number} event @param {string} reason */
  reject(event, reason) {
    this.rejected.push({ index: indexOf(event), reason: String(reason) });
  }

  /** The packed WIT answer: [batch, origins, rejections]. @internal */
  toWit() {
    const n = this.length;
    return [{
      values: this._values.subarray(0, this._valueBytes),
      valueEnds: this._valueEnds.subarray(0, n),
      keys: this._keys.subarray(0, this._keyBytes),
      keyEnds: this._keyEnds.subarray(0, n),
      timestamps: this._timestamps.subarray(0, n),
      headers: undefined,
    }, this._origins.subarray(0, n), this.rejected];
  }

  _begin(index) {
    if (!(index >= 0 && index < this._in.length)) {
      throw new RangeError(`emit: event ${index} is not in the batch of ${this._in.length}`);
    }
    const last = this.length > 0 ? this._origins[this.length - 1] : 0;
    if (index < last) {
      throw new Error(`emit: an output of event ${index} after one of event ${last}; emit in input order`);
    }
  }

  _appendValue(bytes) {
    this._values = grow(this._values, this._valueBytes + bytes.length);
    this._values.set(bytes, this._valueBytes);
    this._valueBytes += bytes.length;
  }

  _appendText(text) {
    // At most 3 UTF-8 bytes per UTF-16 unit.
    this._values = grow(this._values, this._valueBytes + text.length * 3);
    this._valueBytes += encoder.encodeInto(text, this._values.subarray(this._valueBytes)).written;
  }

  _finish(index, key, timestamp) {
    const b = this._in;
    const n = this.length;
    let keyBytes;
    if (key === undefined) keyBytes = b.keys.subarray(index === 0 ? 0 : b.keyEnds[index - 1], b.keyEnds[index]);
    else keyBytes = toBytes(key, "emit: key");
    this._keys = grow(this._keys, this._keyBytes + keyBytes.length);
    this._keys.set(keyBytes, this._keyBytes);
    this._keyBytes += keyBytes.length;
    this._valueEnds = grow(this._valueEnds, n + 1);
    this._keyEnds = grow(this._keyEnds, n + 1);
    this._timestamps = grow(this._timestamps, n + 1);
    this._origins = grow(this._origins, n + 1);
    this._valueEnds[n] = this._valueBytes;
    this._keyEnds[n] = this._keyBytes;
    this._timestamps[n] = timestamp === undefined ? b.timestamps[index] : BigInt(timestamp);
    this._origins[n] = index;
    this.length = n + 1;
  }
}

// ---------------------------------------------------------------------------------------
// JSON objects
// ---------------------------------------------------------------------------------------

/**
 * The top-level fields of a JSON object, in order, as [raw key with its quotes, value],
 * up to the first malformed part (the Rust SDK's `json::fields`). Duplicate keys are all
 * there; `Event.field` answers with the first.
 * @param {string | Uint8Array} object
 * @returns {Array<[string, Field]>}
 */
export function fields(object) {
  const t = toBytes(object, "fields: object");
  const found = members(t, 0, t.length);
  const out = [];
  for (let j = 0; j < found.length; j += 4) {
    out.push([decoder.decode(t.subarray(found[j], found[j + 1])), new Field(t, found[j + 2], found[j + 3])]);
  }
  return out;
}

/** Rust's `u8::is_ascii_whitespace`, which `trim_ascii` trims (JSON's four and form feed). */
function isAsciiWs(b) {
  return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0c || b === 0x0d;
}

/** [start, end) of the body of the object `t` between its braces, trimmed; undefined when
 *  `t` (trimmed) does not start with `{` and end with `}`. */
function objectBody(t) {
  let s = 0;
  let e = t.length;
  while (s < e && isAsciiWs(t[s])) s++;
  while (e > s && isAsciiWs(t[e - 1])) e--;
  if (e - s < 2 || t[s] !== 0x7b || t[e - 1] !== 0x7d) return undefined;
  s++;
  e--;
  while (s < e && isAsciiWs(t[s])) s++;
  while (e > s && isAsciiWs(t[e - 1])) e--;
  return [s, e];
}

/** Whether two raw keys (with quotes) name the same field: the same bytes, or, when either
 *  has an escape, the same text (the Rust SDK's `raw_keys_equal`). */
function rawKeysEqual(a, as, ae, b, bs, be) {
  const n = ae - as;
  if (n === be - bs) {
    let i = 0;
    while (i < n && a[as + i] === b[bs + i]) i++;
    if (i === n) return true;
  }
  const escaped = a.subarray(as, ae).indexOf(BACKSLASH) >= 0 || b.subarray(bs, be).indexOf(BACKSLASH) >= 0;
  if (!escaped) return false;
  const name = stringAt(b, bs, be);
  return name !== undefined && keyEquals(a, as, ae, nameBytes(name), name);
}

/**
 * The union of two JSON objects' fields as one object: `base`'s fields as they are, then
 * those fields of `extra` that `base` does not have, raw (so keys stay unique). Exactly the
 * Rust SDK's `json::merge_objects`: `{` + base's body + `,"key":value` for each added field
 * + `}`. Returns `undefined` when either is not an object.
 * @param {string | Uint8Array} base
 * @param {string | Uint8Array} extra
 * @returns {Uint8Array | undefined} the merged object's UTF-8
 */
export function mergeObjects(base, extra) {
  const a = toBytes(base, "mergeObjects: base");
  const b = toBytes(extra, "mergeObjects: extra");
  const body = objectBody(a);
  if (body === undefined || objectBody(b) === undefined) return undefined;
  const [bs, be] = body;
  const theirs = membersOf(b);
  const parts = [a.subarray(bs, be)];
  let size = be - bs + 2;
  let first = be === bs;
  let text; // base as a byte string, and whether it has a backslash, once needed
  let escaped;
  let ours; // base's members, once needed
  for (let j = 0; j < theirs.keys.length; j++) {
    const ks = theirs.at[4 * j];
    const ke = theirs.at[4 * j + 1];
    // Does base have this key? With no backslash on either side keys are equal when their
    // bytes are, so a key that appears nowhere in base's text is not there: one native
    // search instead of scanning base, for the fields a row usually adds.
    if (text === undefined) {
      text = byteString(a);
      escaped = text.indexOf("\\") >= 0;
    }
    let taken = escaped || theirs.escaped[j] ? undefined : hasKey(a, text, theirs.keys[j]);
    if (taken === undefined) {
      if (ours === undefined) ours = members(a, 0, a.length);
      taken = false;
      for (let k = 0; k < ours.length && !taken; k += 4) {
        taken = rawKeysEqual(a, ours[k], ours[k + 1], b, ks, ke);
      }
    }
    if (taken) continue;
    const vs = theirs.at[4 * j + 2];
    const ve = theirs.at[4 * j + 3];
    parts.push(first ? null : COMMA, b.subarray(ks, ke), COLON, b.subarray(vs, ve));
    size += (first ? 0 : 1) + (ke - ks) + 1 + (ve - vs);
    first = false;
  }
  const out = new Uint8Array(size);
  out[0] = 0x7b;
  let p = 1;
  for (const part of parts) {
    if (part === null) continue;
    out.set(part, p);
    p += part.length;
  }
  out[p] = 0x7d;
  return out;
}

/**
 * Whether the object `a` (`text` its byte string), which has no backslash, has a top-level
 * member whose raw key is `key` (a byte string with its quotes, without backslashes), as
 * far as native searches tell; `undefined` when they do not. Without escapes every quote is
 * structural and a key is spelled as it is, so: no `key` in the text, no such member; a
 * `key` followed by `:` before any bracket but the object's `{`, such a member (unless the
 * key starts with a character that may follow a closing quote, when its first quote could
 * close a string); a `key` not followed by `:` is a string value, and the next decides.
 */
function hasKey(a, text, key) {
  const c1 = key.charCodeAt(1);
  const closesString = c1 === 0x2c || c1 === 0x3a || c1 === 0x7d || c1 === 0x5d || c1 === 0x20 ||
    c1 === 0x09 || c1 === 0x0a || c1 === 0x0d;
  let bracket = -1; // the first bracket after the object's `{`, once needed
  for (let c = text.indexOf(key); c >= 0; c = text.indexOf(key, c + 1)) {
    if (bracket < 0) {
      const open = skipWs(a, 0, a.length);
      if (a[open] !== 0x7b) return undefined; // the scanner would find no member at all
      STOP.lastIndex = open + 1;
      bracket = STOP.test(text) ? STOP.lastIndex - 1 : text.length;
    }
    if (c >= bracket || closesString) return undefined;
    const colon = skipWs(a, c + key.length, a.length);
    if (colon < a.length && a[colon] === 0x3a) return true;
  }
  return false;
}

/** The members of objects merged in, by their bytes: a side-input row comes back for many
 *  events, and scanning it again costs more than finding it here. */
const mergedIn = new Map();

/** The members of object `b`: `at` ([keyStart, keyEnd, valueStart, valueEnd] per member),
 *  `keys` (each raw key as a byte string) and `escaped` (whether the key has a backslash). */
function membersOf(b) {
  const text = byteString(b);
  let found = mergedIn.get(text);
  if (found === undefined) {
    const at = members(b, 0, b.length);
    const keys = [];
    const escaped = [];
    for (let j = 0; j < at.length; j += 4) {
      const key = text.slice(at[j], at[j + 1]);
      keys.push(key);
      escaped.push(key.indexOf("\\") >= 0);
    }
    found = { at, keys, escaped };
    if (mergedIn.size >= 1024) mergedIn.clear();
    mergedIn.set(text, found);
  }
  return found;
}
const COMMA = new Uint8Array([0x2c]);
const COLON = new Uint8Array([0x3a]);

// ---------------------------------------------------------------------------------------
// The host: logging, keyed state, side-input lookups
// ---------------------------------------------------------------------------------------

/** Joins log arguments as `console.log` would, roughly: strings as they are, errors with
 *  their stack, anything else as JSON. */
function message(parts) {
  return parts.map((p) => {
    if (typeof p === "string") return p;
    if (isError(p)) return p.stack || String(p);
    try {
      const json = JSON.stringify(p);
      return json === undefined ? String(p) : json;
    } catch {
      return String(p);
    }
  }).join(" ");
}

/**
 * The host's log, tagged with the stage's name. Each level takes any arguments, joined with
 * spaces (strings as they are, other values as JSON).
 */
export const log = {
  /** @param {...unknown} parts */ trace: (...parts) => host.log("trace", message(parts)),
  /** @param {...unknown} parts */ debug: (...parts) => host.log("debug", message(parts)),
  /** @param {...unknown} parts */ info: (...parts) => host.log("info", message(parts)),
  /** @param {...unknown} parts */ warn: (...parts) => host.log("warn", message(parts)),
  /** @param {...unknown} parts */ error: (...parts) => host.log("error", message(parts)),
};

/**
 * Keyed state, owned by the host: checkpointed with the job, kept with the key's partition
 * and carried across plugin swaps. `key` (a string or bytes, e.g. `event.key`) must be the
 * key of an event in the batch being processed; the host traps on any other.
 */
export const state = {
  /** State `name` of `key`, or `undefined`.
   *  @param {string | Uint8Array} key @param {string} name @returns {Uint8Array | undefined} */
  get(key, name) {
    return host.stateGet(toBytes(key, "state key"), name);
  },
  /** State `name` of `key` as text, or `undefined`.
   *  @param {string | Uint8Array} key @param {string} name @returns {string | undefined} */
  getText(key, name) {
    const bytes = host.stateGet(toBytes(key, "state key"), name);
    return bytes === undefined ? undefined : decoder.decode(bytes);
  },
  /** Sets state `name` of `key`.
   *  @param {string | Uint8Array} key @param {string} name @param {string | Uint8Array} value */
  set(key, name, value) {
    host.stateSet(toBytes(key, "state key"), name, toBytes(value, "state value"));
  },
  /** Deletes state `name` of `key`. @param {string | Uint8Array} key @param {string} name */
  delete(key, name) {
    host.stateDelete(toBytes(key, "state key"), name);
  },
};

/**
 * The row with key `key` of the side-input table `table` (a `[[side_input]]` of the
 * pipeline): a JSON object's UTF-8, or `undefined` when the table has no such row. The host
 * traps when there is no such table.
 * @param {string} table
 * @param {string | Uint8Array} key
 * @returns {Uint8Array | undefined}
 */
export function lookup(table, key) {
  return host.lookup(table, toBytes(key, "lookup key"));
}

// ---------------------------------------------------------------------------------------
// Plugins
// ---------------------------------------------------------------------------------------

/**
 * The stage's `config` table from the pipeline file, as text. The plugin's constructor gets
 * one; `require` and `number` throw messages worded as the Rust SDK's.
 */
export class Config {
  /** @param {Array<[string, string]> | Record<string, string>} entries */
  constructor(entries = []) {
    /** The (key, value) pairs in the order given. @type {Array<[string, string]>} */
    this.entries = Array.isArray(entries) ? entries.map(([k, v]) => [String(k), String(v)])
      : Object.entries(entries).map(([k, v]) => [k, String(v)]);
  }

  /** The value of `key`, or `undefined`. @param {string} key @returns {string | undefined} */
  get(key) {
    const found = this.entries.find(([k]) => k === key);
    return found && found[1];
  }

  /** The value of `key`; throws "missing config key `key`" when unset.
   *  @param {string} key @returns {string} */
  require(key) {
    const value = this.get(key);
    if (value === undefined) throw new Error(`missing config key \`${key}\``);
    return value;
  }

  /** The value of `key` as a number (parsed as Rust's f64 parser does), `undefined` when
   *  unset; throws "config key `key` = "…": invalid float literal" when not a number.
   *  @param {string} key @returns {number | undefined} */
  number(key) {
    const value = this.get(key);
    if (value === undefined) return undefined;
    const number = parseF64(value);
    if (number === undefined) {
      const why = value === "" ? "cannot parse float from empty string" : "invalid float literal";
      throw new Error(`config key \`${key}\` = ${debugQuote(value)}: ${why}`);
    }
    return number;
  }
}

/** Base class of filters: implement `select(batch, selection)`. */
export class Filter {
  /**
   * Decides, for each event of `batch`, whether to keep it, reject it or drop it (neither).
   * @param {Batch} batch
   * @param {Selection} out
   */
  select(batch, out) {
    throw new Error(`${this.constructor.name} does not implement select(batch, out)`);
  }
}

/** Base class of transforms: implement `process(batch, output)`. */
export class Transform {
  /**
   * Emits zero or more events for each event of `batch`, in input order.
   * @param {Batch} batch
   * @param {Output} out
   */
  process(batch, out) {
    throw new Error(`${this.constructor.name} does not implement process(batch, out)`);
  }
}

/** An exception's message, for `init`'s error. */
function messageOf(error) {
  return isError(error) ? error.message : String(error);
}

/** Logs an exception escaping the plugin at error level (the stack at debug) and rethrows
 *  it: the call traps, and the host fails the batch with the plugin's last error log. */
function fail(error) {
  try {
    const name = isError(error) ? `${error.name}: ${error.message}` : String(error);
    host.log("error", name);
    if (isError(error) && error.stack) host.log("debug", error.stack);
  } catch {
    // Logging must not hide the plugin's own error.
  }
  throw error;
}

/** The class `exportPlugin` made the exports of, for the mock host. */
export const PLUGIN_CLASS = Symbol.for("eddy-plugin.class");

/**
 * The component's exported interfaces for a plugin class: `{ lifecycle, filter }` for a
 * `Filter`, `{ lifecycle, transform }` for a `Transform`. Export them from the app:
 *
 *     export const { lifecycle, filter } = exportPlugin(MyFilter);
 *
 * `lifecycle.init` creates the one instance (`new Plugin(config)`); an exception thrown by
 * the constructor refuses the config with its message.
 * @param {Function} Plugin a class extending `Filter` or `Transform`
 * @returns {{lifecycle: object, filter?: object, transform?: object}}
 */
export function exportPlugin(Plugin) {
  const isFilter = Plugin.prototype instanceof Filter;
  if (!isFilter && !(Plugin.prototype instanceof Transform)) {
    throw new TypeError(`exportPlugin: ${Plugin.name || "the class"} extends neither Filter nor Transform`);
  }
  let plugin = null;
  const instance = () => {
    if (plugin === null) throw new Error("the host called the plugin before a successful init");
    return plugin;
  };
  const lifecycle = {
    init(entries) {
      plugin = null;
      try {
        plugin = new Plugin(new Config(entries));
      } catch (error) {
        return { tag: "err", val: messageOf(error) };
      }
      return { tag: "ok", val: undefined };
    },
  };
  lifecycle[PLUGIN_CLASS] = Plugin;
  if (isFilter) {
    return {
      lifecycle,
      filter: {
        select(record) {
          const batch = new Batch(record, true);
          const out = new Selection(batch.length);
          try {
            instance().select(batch, out);
          } catch (error) {
            fail(error);
          }
          return [out.kept, out.rejected];
        },
      },
    };
  }
  return {
    lifecycle,
    transform: {
      process(record) {
        const batch = new Batch(record, true);
        const out = new Output(batch);
        try {
          instance().process(batch, out);
        } catch (error) {
          fail(error);
        }
        return out.toWit();
      },
    },
  };
}
