// `enrich`: adds the fields of a side-input row to each event.
//
// The JavaScript twin of example-plugins/enrich (Rust): the same config, the same output
// bytes, the same rejection reasons and error messages.
//
// Config: `table` (a `[[side_input]]` name), `field` (the event field whose value is the
// row's key) and `on_missing` (`keep`, the default, passes the event on unchanged;
// `reject` sends it to the dead-letter sink; `drop` drops it).
//
//     [[plugin]]
//     name = "with-user"
//     path = "enrich.wasm"
//     config = { table = "users", field = "user" }

import { Transform, debugQuote, exportPlugin, lookup, mergeObjects } from "eddy-plugin";

const ON_MISSING = ["keep", "reject", "drop"];

/** Merges a side-input row into each event. */
export class Enrich extends Transform {
  constructor(config) {
    super();
    const onMissing = config.get("on_missing") ?? "keep";
    if (!ON_MISSING.includes(onMissing)) {
      throw new Error(`config key \`on_missing\` = ${debugQuote(onMissing)}: expected keep, reject or drop`);
    }
    this.table = config.require("table");
    // Looks the table up once, so a table the pipeline does not declare stops the pipeline
    // at start (the host names it) rather than failing every batch.
    lookup(this.table, "");
    this.field = config.require("field");
    this.onMissing = onMissing;
    this.reason = `no row in \`${this.table}\` for field \`${this.field}\``;
  }

  process(batch, out) {
    for (const event of batch) {
      // The row's key: a string field's text, or any other value's raw JSON.
      const field = event.field(this.field);
      let row;
      if (field !== undefined) {
        const text = field.asString();
        row = lookup(this.table, text !== undefined ? text : field.rawBytes);
      }
      if (row !== undefined) {
        // Keeps the event's key and time; an event or row that is not an object stays as it is.
        out.emit(event, mergeObjects(event.value, row) ?? event.value);
      } else if (this.onMissing === "keep") {
        out.forward(event);
      } else if (this.onMissing === "reject") {
        out.reject(event, this.reason);
      }
    }
  }
}

export const { lifecycle, transform } = exportPlugin(Enrich);
