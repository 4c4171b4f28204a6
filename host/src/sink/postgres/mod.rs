//! The PostgreSQL sink: each record (a JSON object) becomes a row of a table, its fields
//! filling the columns of the same names (`json_populate_recordset`), inserted, or upserted
//! on a unique key.
//!
//! With checkpoints it is exactly once, by two-phase commit: the rows since the last
//! checkpoint, and the checkpoint's id in `eddy_sink_epochs`, are one transaction; at the
//! checkpoint it is prepared (`PREPARE TRANSACTION 'eddy:<sink>:<id>'`: durable in the
//! server, invisible), and once the checkpoint is durable it is committed. A job recovering
//! to checkpoint N commits its prepared transactions up to N and rolls back those after:
//! what a crash left half-done is finished or undone, never written twice. The server needs
//! `max_prepared_transactions` above 0. Without checkpoints each batch commits at once.
//!
//! Invariant: a prepared transaction holds exactly the rows between two checkpoint cuts.

mod config;

pub use config::PostgresSinkConfig;

use anyhow::{bail, Context, Result};
use postgres::{Client, NoTls};

use super::{Records, Sink};
use crate::batch::Origin;
use crate::checkpoint::{Checkpointed, Section};

/// The format version of the sink's checkpoint section.
const SECTION_VERSION: u32 = 1;

/// Writes records as rows of a PostgreSQL table.
pub struct PostgresSink {
    /// The connection that writes, always inside the epoch's open transaction.
    client: Client,
    /// A second connection that commits and rolls back prepared transactions (which
    /// cannot be done inside a transaction block).
    control: Option<Client>,
    /// The statement that writes one batch, given as a JSON array.
    write: String,
    /// The sink's name in its transactions' ids and in `eddy_sink_epochs`.
    name: String,
    /// `sink`, `dead_letter` or `late`: its checkpoint section is `sink/<role>`.
    role: String,
    /// Whether the job checkpoints (two-phase commit) or commits each batch.
    checkpointed: bool,
    /// Rows written since the last checkpoint, in the open transaction.
    open_rows: u64,
    /// Checkpoints whose transaction is prepared, not yet committed.
    prepared: Vec<u64>,
    /// A batch's records as one JSON array.
    array: String,
}

impl PostgresSink {
    /// Connects, checks the table, and (with `recover`, a checkpoint's section of this
    /// sink) finishes or undoes the transactions a crash left prepared.
    pub fn open(
        config: &PostgresSinkConfig,
        role: &str,
        checkpointed: bool,
        recover: Option<&Section>,
    ) -> Result<Self> {
        config.check()?;
        let connect = || {
            Client::connect(&config.url, NoTls).with_context(|| {
                format!(
                    "cannot connect to PostgreSQL for the [sink]; check its url ({})",
                    redact(&config.url)
                )
            })
        };
        let mut client = connect()?;
        let control = if checkpointed { Some(connect()?) } else { None };
        let columns: Vec<String> = client
            .query(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_name = $1 AND table_schema = ANY (current_schemas(false)) \
                 ORDER BY ordinal_position",
                &[&config.table],
            )
            .context("cannot read the table's columns")?
            .iter()
            .map(|row| row.get(0))
            .collect();
        if columns.is_empty() {
            bail!(
                "PostgreSQL has no table {:?}; create it with a column per record field, or check [sink] table",
                config.table
            );
        }
        if let Some(missing) = config.upsert.iter().find(|c| !columns.contains(c)) {
            bail!(
                "[sink] upsert names column {missing:?}, which table {} does not have",
                config.table
            );
        }
        let name = format!(
            "{}:{}{}",
            config.table,
            role,
            config
                .identity_scope
                .as_deref()
                .map(|s| format!(":{s}"))
                .unwrap_or_default()
        );
        if checkpointed {
            client
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS eddy_sink_epochs \
                     (sink text PRIMARY KEY, epoch bigint NOT NULL)",
                )
                .context("cannot create table eddy_sink_epochs")?;
        }
        let mut sink = Self {
            write: write_statement(&config.table, &columns, &config.upsert),
            client,
            control,
            name,
            role: role.to_owned(),
            checkpointed,
            open_rows: 0,
            prepared: Vec::new(),
            array: String::new(),
        };
        if checkpointed {
            let covered = match recover {
                Some(section) => Some(section.meta::<u64>(SECTION_VERSION)?),
                None => None,
            };
            sink.settle_prepared(covered)?;
            sink.client
                .batch_execute("BEGIN")
                .context("cannot begin a transaction")?;
        }
        Ok(sink)
    }

    /// The id of the prepared transaction of checkpoint `id`.
    fn gid(&self, id: u64) -> String {
        format!("eddy:{}:{id}", self.name)
    }

    /// Commits this sink's prepared transactions up to `covered` (the checkpoint resumed
    /// from) and rolls back the rest, which that checkpoint does not cover.
    fn settle_prepared(&mut self, covered: Option<u64>) -> Result<()> {
        let prefix = format!("eddy:{}:", self.name);
        let left: Vec<String> = self
            .client
            .query(
                "SELECT gid FROM pg_prepared_xacts WHERE starts_with(gid, $1) AND database = current_database()",
                &[&prefix],
            )
            .context("cannot list prepared transactions")?
            .iter()
            .map(|row| row.get(0))
            .collect();
        for gid in left {
            let id: Option<u64> = gid[prefix.len()..].parse().ok();
            let verb = if id.is_some_and(|id| covered.is_some_and(|c| id <= c)) {
                "COMMIT"
            } else {
                "ROLLBACK"
            };
            self.finish_prepared(verb, &gid)?;
            tracing::info!(
                "PostgreSQL sink {}: {verb} PREPARED {gid} left by a crash",
                self.name
            );
        }
        Ok(())
    }
}

impl PostgresSink {
    /// `COMMIT` or `ROLLBACK` the prepared transaction `gid`, on the control connection.
    fn finish_prepared(&mut self, verb: &str, gid: &str) -> Result<()> {
        let control = self
            .control
            .as_mut()
            .context("a sink without checkpoints has no prepared transactions")?;
        control
            .batch_execute(&format!("{verb} PREPARED '{}'", gid.replace('\'', "''")))
            .with_context(|| format!("cannot {verb} PREPARED transaction {gid} in PostgreSQL"))
    }
}

/// The statement writing a batch given as a JSON array of records.
fn write_statement(table: &str, columns: &[String], upsert: &[String]) -> String {
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    let list = columns
        .iter()
        .map(|c| quote(c))
        .collect::<Vec<_>>()
        .join(", ");
    let table = quote(table);
    if upsert.is_empty() {
        return format!(
            "INSERT INTO {table} ({list}) SELECT {list} FROM json_populate_recordset(NULL::{table}, $1::text::json)"
        );
    }
    let keys = upsert
        .iter()
        .map(|c| quote(c))
        .collect::<Vec<_>>()
        .join(", ");
    let updates = columns
        .iter()
        .filter(|c| !upsert.contains(c))
        .map(|c| format!("{0} = EXCLUDED.{0}", quote(c)))
        .collect::<Vec<_>>();
    let action = if updates.is_empty() {
        "NOTHING".to_owned()
    } else {
        format!("UPDATE SET {}", updates.join(", "))
    };
    // The last of several records with one key in a batch wins, as it would row by row.
    format!(
        "INSERT INTO {table} ({list}) SELECT DISTINCT ON ({keys}) {list} \
         FROM json_populate_recordset(NULL::{table}, $1::text::json) WITH ORDINALITY AS r \
         ORDER BY {keys}, r.ordinality DESC \
         ON CONFLICT ({keys}) DO {action}"
    )
}

/// A connection string without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = &url[scheme + 3..at];
            let user = user.split(':').next().unwrap_or_default();
            format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url
            .split_whitespace()
            .filter(|kv| !kv.starts_with("password="))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

impl Checkpointed for PostgresSink {
    fn snapshot(&mut self, id: u64, _incremental: bool) -> Result<Option<Section>> {
        if !self.checkpointed {
            return Ok(None);
        }
        if self.open_rows > 0 {
            let gid = self.gid(id);
            let name = self.name.clone();
            let prepare = (|| -> Result<(), postgres::Error> {
                self.client.execute(
                    "INSERT INTO eddy_sink_epochs (sink, epoch) VALUES ($1, $2) \
                     ON CONFLICT (sink) DO UPDATE SET epoch = EXCLUDED.epoch",
                    &[&name, &(id as i64)],
                )?;
                self.client.batch_execute(&format!(
                    "PREPARE TRANSACTION '{}'",
                    gid.replace('\'', "''")
                ))?;
                self.client.batch_execute("BEGIN")
            })();
            prepare.with_context(|| {
                format!(
                    "cannot prepare transaction {gid} in PostgreSQL; the server needs \
                     max_prepared_transactions above 0 (postgresql.conf)"
                )
            })?;
            self.prepared.push(id);
            self.open_rows = 0;
        }
        Ok(Some(
            Section::new(format!("sink/{}", self.role), SECTION_VERSION).with_meta(&id)?,
        ))
    }

    fn checkpoint_completed(&mut self, id: u64) -> Result<()> {
        let (done, later): (Vec<u64>, Vec<u64>) = self.prepared.iter().partition(|&&p| p <= id);
        for p in done {
            let gid = self.gid(p);
            self.finish_prepared("COMMIT", &gid)?;
        }
        self.prepared = later;
        Ok(())
    }
}

impl Sink for PostgresSink {
    fn write(&mut self, records: Records<'_>, _origins: Option<&[Origin]>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.array.clear();
        self.array.push('[');
        for (i, record) in records.iter().enumerate() {
            if i > 0 {
                self.array.push(',');
            }
            self.array
                .push_str(std::str::from_utf8(record).context("a record is not UTF-8")?);
        }
        self.array.push(']');
        // Inside the open transaction with checkpoints; committed at once without.
        self.client
            .execute(&self.write, &[&self.array])
            .with_context(|| {
                format!(
                    "cannot write {} rows to PostgreSQL table of sink {}",
                    records.len(),
                    self.name
                )
            })?;
        self.open_rows += records.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}
