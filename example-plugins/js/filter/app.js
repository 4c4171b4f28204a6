// `filter`: keeps the events whose field compares true against a value.
//
// The JavaScript twin of example-plugins/filter (Rust): the same config, the same verdicts,
// the same rejection reasons and error messages, byte for byte.
//
// Config: `field` (a top-level field of the event), `op` (one of `== != < <= > >=`) and
// `value`. Numbers compare as numbers when both sides are numbers, otherwise as text (in
// Unicode code point order, as Rust compares strings). An event without the field is
// rejected to the dead-letter sink.
//
//     [[plugin]]
//     name = "big-spenders"
//     path = "filter.wasm"
//     config = { field = "amount", op = ">=", value = "100" }

import { Filter, compareCodePoints, debugQuote, exportPlugin, parseF64 } from "eddy-plugin";

/** Each comparison as a test of an ordering (negative, zero or positive). */
const OPS = {
  "==": (o) => o === 0,
  "!=": (o) => o !== 0,
  "<": (o) => o < 0,
  "<=": (o) => o <= 0,
  ">": (o) => o > 0,
  ">=": (o) => o >= 0,
};

/** What the filter decides for one event. */
export const Verdict = Object.freeze({ KEEP: "keep", DROP: "drop", MISSING: "missing" });

/** Orders two numbers as Rust's `partial_cmp`: `undefined` when either is NaN. */
function compareNumbers(a, b) {
  if (a < b) return -1;
  if (a > b) return 1;
  return a === b ? 0 : undefined;
}

/** Keeps events where `field op value` holds. */
export class FieldFilter extends Filter {
  constructor(config) {
    super();
    // The same order of checks as the Rust plugin, so the same error comes first.
    const text = config.require("value");
    this.field = config.require("field");
    const op = config.require("op");
    if (!Object.hasOwn(OPS, op)) {
      throw new Error(`config key \`op\` = ${debugQuote(op)}: expected one of == != < <= > >=`);
    }
    this.holds = OPS[op];
    this.text = text;
    // A number if Rust's f64 parser takes it ("+1", "1e3", "inf", "nan"; not "", " 1", "0x1").
    this.number = parseF64(text);
    this.missing = `no field \`${this.field}\``;
  }

  /** The verdict for one event, read from the event alone. `select` gives the same
   *  verdicts, reading a numeric field as one column for the batch. */
  verdict(event) {
    const field = event.field(this.field);
    if (field === undefined) return Verdict.MISSING;
    const have = this.number === undefined ? undefined : field.asNumber();
    if (have !== undefined) return this.judge(compareNumbers(have, this.number));
    const textValue = field.asString();
    return this.judge(textValue === undefined ? undefined : compareCodePoints(textValue, this.text));
  }

  /** Keep when the ordering satisfies `op`; drop when not, or when there is none. */
  judge(ordering) {
    return ordering !== undefined && this.holds(ordering) ? Verdict.KEEP : Verdict.DROP;
  }

  select(batch, out) {
    if (this.number === undefined) {
      for (const event of batch) this.apply(event, this.verdict(event), out);
      return;
    }
    // A numeric comparison reads the field as one column, which the host parses.
    const numbers = batch.numbers(this.field);
    for (let i = 0; i < numbers.length; i++) {
      const have = numbers[i];
      // NaN: no such field, or not a number; the text comparison decides.
      const verdict = Number.isNaN(have) ? this.verdict(batch.get(i)) : this.judge(compareNumbers(have, this.number));
      this.apply(i, verdict, out);
    }
  }

  /** Keeps, drops or rejects an event (an `Event` or its index). */
  apply(event, verdict, out) {
    if (verdict === Verdict.KEEP) out.keep(event);
    else if (verdict === Verdict.MISSING) out.reject(event, this.missing);
  }
}

export const { lifecycle, filter } = exportPlugin(FieldFilter);
