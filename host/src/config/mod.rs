//! The pipeline file (TOML): types that mirror it one to one.
//!
//! Unknown keys are errors, durations are strings (`"250ms"`), and relative paths are
//! relative to the pipeline file's own directory.

mod duration;
mod paths;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

pub use crate::sink::{
    FileSinkConfig, KafkaSinkConfig, NullSinkConfig, PostgresSinkConfig, StdioSinkConfig,
};
pub use crate::source::{FileSourceConfig, GeneratorConfig, KafkaSourceConfig, StdinSourceConfig};
pub use duration::ConfigDuration;

/// A whole pipeline file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Workers in this process, each owning a part of the source's partitions (see
    /// [`crate::workers`]) and each on one thread, reading its source there. Unset, the
    /// job is one pipeline that reads its source a batch ahead on a second thread.
    pub parallelism: Option<u32>,
    /// Where events come from.
    pub source: SourceConfig,
    /// Plugin stages, run in order.
    #[serde(default, rename = "plugin")]
    pub plugins: Vec<PluginConfig>,
    /// Tables plugins read with `lookup`.
    #[serde(default, rename = "side_input")]
    pub side_inputs: Vec<SideInputConfig>,
    /// Where results go.
    pub sink: SinkConfig,
    /// Where rejected and unparseable events go; stderr when absent.
    pub dead_letter: Option<SinkConfig>,
    /// Where late events go; the dead-letter sink when absent.
    pub late: Option<SinkConfig>,
    /// Event-time watermarks.
    #[serde(default)]
    pub watermark: WatermarkConfig,
    /// A keyed event-time window; without one the sink receives events.
    pub window: Option<WindowConfig>,
    /// How events are gathered into batches.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Periodic checkpoints; without them, file sinks write directly and a restarted job
    /// starts over.
    pub checkpoint: Option<CheckpointConfig>,
    /// The admin endpoint; on by default at its default address.
    pub admin: Option<AdminConfig>,
}

/// `[checkpoint]`: where and how often to checkpoint.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// The checkpoint directory.
    pub dir: PathBuf,
    /// Time between checkpoints.
    #[serde(default = "default_checkpoint_interval")]
    pub interval: ConfigDuration,
    /// How many checkpoints to keep (with the checkpoints their chains need).
    #[serde(default = "default_retain")]
    pub retain: usize,
    /// From this many entries of state (open windows plus plugin keyed state) on, a
    /// checkpoint writes only what changed since the one before; the checkpoint thread
    /// folds a chain into a full checkpoint every `MAX_CHAIN` checkpoints.
    #[serde(default = "default_incremental_above")]
    pub incremental_above: usize,
}

fn default_watch() -> bool {
    true
}

fn default_probation() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(30))
}

fn default_retries() -> u32 {
    3
}

/// `[[plugin]] failure`: what a stage does when its plugin fails on a batch.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// Find the events the plugin fails on (by bisecting the batch on fresh instances),
    /// send exactly those to the dead-letter sink, and the rest on, in order.
    #[default]
    DeadLetter,
    /// Stop the job with the plugin's error; its last checkpoint stays intact.
    Fail,
    /// Call the batch again, `retries` times with a growing pause (for plugins whose
    /// failures pass), then stop as with `fail`.
    Retry,
}

fn default_max_open_windows_per_key() -> u64 {
    100_000
}

fn default_max_windows_per_event() -> u64 {
    10_000
}

fn default_incremental_above() -> usize {
    100_000
}

fn default_checkpoint_interval() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(10))
}

fn default_retain() -> usize {
    3
}

/// `[admin]`: the HTTP admin endpoint.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on; loopback by default. An address other than loopback needs a
    /// `token_file`.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    /// A file holding a bearer token: requests that change the job (savepoint, stop) must
    /// carry it (`eddy savepoint|stop --token-file`).
    pub token_file: Option<PathBuf>,
}

impl AdminConfig {
    /// Refuses an endpoint others could reach without a token.
    fn check(&self) -> Result<()> {
        let loopback = match self.listen.parse::<std::net::SocketAddr>() {
            Ok(addr) => addr.ip().is_loopback(),
            Err(_) => self
                .listen
                .rsplit_once(':')
                .is_some_and(|(host, _)| host == "localhost"),
        };
        if !loopback && self.token_file.is_none() {
            bail!(
                "[admin] listen = {:?} is not a loopback address, so others could stop the job: \
                 set [admin] token_file to a file holding a secret token, or listen on 127.0.0.1",
                self.listen
            );
        }
        Ok(())
    }
}

/// The admin endpoint's default address.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9464";

fn default_admin_listen() -> String {
    DEFAULT_ADMIN.to_owned()
}

/// `[source]`: one of the source kinds.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    /// A file of JSON lines.
    File(FileSourceConfig),
    /// JSON lines on standard input.
    Stdin(StdinSourceConfig),
    /// The built-in synthetic payments stream.
    Generator(GeneratorConfig),
    /// Topics of a Kafka cluster.
    Kafka(KafkaSourceConfig),
}

/// Which fields of a JSON event carry its event time and its key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFields {
    /// Event time: integer milliseconds since the Unix epoch. Absent: the time the event
    /// was read (ingestion time).
    pub time_field: Option<String>,
    /// The key that keyed state and windows use. Absent: events have no key.
    pub key_field: Option<String>,
    /// Events whose time is more than this many ms ahead of the wall clock are dead
    /// letters (they would make every later event late); `None`: no bound.
    pub max_future_ms: Option<i64>,
}

/// `[[plugin]]`: one plugin stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The stage's name, used in logs, dead letters, status and `eddy reload`.
    pub name: String,
    /// The component (`.wasm`).
    pub path: PathBuf,
    /// Passed to the plugin's `init` as `(key, value)` text pairs.
    #[serde(default)]
    pub config: toml::Table,
    /// Longest a single batch call may run before the batch is dead-lettered.
    #[serde(default = "default_plugin_timeout")]
    pub timeout: ConfigDuration,
    /// Largest linear memory the plugin may grow to, in MiB.
    #[serde(default = "default_plugin_memory")]
    pub max_memory_mb: u64,
    /// What the plugin may reach through WASI beyond computing (nothing by default).
    #[serde(default)]
    pub grant: Grants,
    /// What a batch call that fails (trap, timeout, memory limit, malformed result) does.
    #[serde(default)]
    pub failure: FailurePolicy,
    /// How often `failure = "retry"` calls a failed batch again (with backoff).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Whether a change to the file at `path` hot-swaps the stage to it (once the file
    /// is complete and valid).
    #[serde(default = "default_watch")]
    pub watch: bool,
    /// After a hot swap, how long the new version is on probation: a batch it fails in
    /// that time rolls the stage back to the previous version, which re-runs the batch.
    #[serde(default = "default_probation")]
    pub probation: ConfigDuration,
}

fn default_plugin_timeout() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(1))
}

fn default_plugin_memory() -> u64 {
    256
}

/// WASI capabilities granted to a plugin; all denied by default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Environment variables passed through from the host.
    #[serde(default)]
    pub env: Vec<String>,
    /// Whether the plugin may read the real wall clock (otherwise it reads the Unix epoch).
    #[serde(default)]
    pub wall_clock: bool,
    /// Directories the plugin may read, mounted at the same path.
    #[serde(default)]
    pub read_dirs: Vec<PathBuf>,
}

impl PluginConfig {
    /// The `config` table as the text pairs `init` receives.
    pub fn config_pairs(&self) -> Result<Vec<(String, String)>> {
        self.config
            .iter()
            .map(|(key, value)| {
                let text = match value {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    other => bail!(
                        "plugin `{}`: config key `{key}` is a {}; plugin config values must be strings, numbers or booleans",
                        self.name,
                        other.type_str()
                    ),
                };
                Ok((key.clone(), text))
            })
            .collect()
    }
}

/// `[[side_input]]`: a table plugins read with `lookup(name, key)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SideInputConfig {
    /// The table's name.
    pub name: String,
    /// A JSON-lines (`.jsonl`, `.json`) or CSV (`.csv`) file; reloaded when it changes.
    pub path: PathBuf,
    /// The field (JSON) or column (CSV) that is the row's key.
    pub key_field: String,
}

/// `[sink]` or `[dead_letter]`: one of the sink kinds.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkConfig {
    /// A file of JSON lines.
    File(FileSinkConfig),
    /// JSON lines on standard output.
    Stdout(StdioSinkConfig),
    /// JSON lines on standard error.
    Stderr(StdioSinkConfig),
    /// Counts and drops everything (for benchmarks).
    Null(NullSinkConfig),
    /// A topic of a Kafka cluster.
    Kafka(KafkaSinkConfig),
    /// A table of a PostgreSQL database.
    Postgres(PostgresSinkConfig),
}

impl SinkConfig {
    /// The file a sink writes, if it writes one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            SinkConfig::File(f) => Some(&f.path),
            _ => None,
        }
    }
}

/// `[watermark]`: bounded out-of-orderness and idleness.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct WatermarkConfig {
    /// How far behind the highest event time seen an event may be and still be on time.
    pub max_delay: ConfigDuration,
    /// A partition with no data this long stops holding the watermark back; never when
    /// absent.
    pub idle_timeout: Option<ConfigDuration>,
    /// How far ahead of the wall clock an event's time may be; later events go to the
    /// dead-letter sink instead of advancing the watermark. `"0s"` turns the bound off.
    pub max_future: ConfigDuration,
}

impl Default for WatermarkConfig {
    fn default() -> Self {
        Self {
            max_delay: ConfigDuration::default(),
            idle_timeout: None,
            max_future: ConfigDuration(std::time::Duration::from_secs(24 * 3600)),
        }
    }
}

/// Which windows an event belongs to.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    /// Fixed-size, non-overlapping windows of `size`.
    Tumbling,
    /// Windows of `size` starting every `slide`.
    Sliding,
    /// Per-key sessions closed by `gap` without events.
    Session,
}

/// The built-in aggregates, or a Wasm aggregate plugin.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AggregateKind {
    /// Number of events.
    Count,
    /// Sum of `field`.
    Sum,
    /// Minimum of `field`.
    Min,
    /// Maximum of `field`.
    Max,
    /// Mean of `field`.
    Avg,
    /// A user-defined aggregate: the component in `plugin`.
    Plugin,
}

impl AggregateKind {
    /// The result's field name in output records.
    pub fn name(self) -> &'static str {
        match self {
            AggregateKind::Count => "count",
            AggregateKind::Sum => "sum",
            AggregateKind::Min => "min",
            AggregateKind::Max => "max",
            AggregateKind::Avg => "avg",
            AggregateKind::Plugin => "plugin",
        }
    }
}

/// `[window]`: a keyed event-time window and its aggregate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// tumbling, sliding or session.
    pub kind: WindowKind,
    /// Window length (tumbling, sliding).
    pub size: Option<ConfigDuration>,
    /// Distance between window starts (sliding).
    pub slide: Option<ConfigDuration>,
    /// Inactivity that closes a session (session).
    pub gap: Option<ConfigDuration>,
    /// Shifts window starts away from multiples of the size (tumbling, sliding).
    #[serde(default)]
    pub offset: ConfigDuration,
    /// The most windows one event may belong to (a sliding window's `size / slide`): a
    /// bound on the work and memory one event can cause, so a typo such as
    /// `slide = "1ms"` is refused instead of exhausting memory.
    #[serde(default = "default_max_windows_per_event")]
    pub max_windows_per_event: u64,
    /// The most windows one key may hold open at once; an event that would open more is
    /// a dead letter (a bound on memory per key, whatever the allowed lateness).
    #[serde(default = "default_max_open_windows_per_key")]
    pub max_open_windows_per_key: u64,
    /// How long after a window fires late events still update it (and fire it again).
    #[serde(default)]
    pub allowed_lateness: ConfigDuration,
    /// What to compute per key and window.
    pub aggregate: AggregateKind,
    /// The numeric field `sum`, `min`, `max` and `avg` read.
    pub field: Option<String>,
    /// The aggregate component, with `aggregate = "plugin"`; its `name` is the result's
    /// field name.
    pub plugin: Option<PluginConfig>,
}

impl WindowConfig {
    fn check(&self) -> Result<()> {
        let positive = |name: &str, d: Option<ConfigDuration>| -> Result<i64> {
            match d {
                Some(d) if d.as_millis() > 0 => Ok(d.as_millis()),
                Some(_) => bail!("[window] {name} must be more than 0"),
                None => bail!("[window] a {:?} window needs `{name}`", self.kind),
            }
        };
        let refuse = |name: &str, d: Option<ConfigDuration>| -> Result<()> {
            if d.is_some() {
                bail!(
                    "[window] `{name}` does not apply to a {:?} window",
                    self.kind
                );
            }
            Ok(())
        };
        match self.kind {
            WindowKind::Tumbling => {
                positive("size", self.size)?;
                refuse("slide", self.slide)?;
                refuse("gap", self.gap)?;
            }
            WindowKind::Sliding => {
                let size = positive("size", self.size)?;
                let slide = positive("slide", self.slide)?;
                refuse("gap", self.gap)?;
                let per_event = (size as u64).div_ceil(slide as u64);
                if per_event > self.max_windows_per_event {
                    bail!(
                        "[window] a sliding window of size {} and slide {} puts every event in {per_event} windows, \
                         more than max_windows_per_event = {}; check size and slide, or raise \
                         max_windows_per_event if you mean it",
                        self.size.expect("checked above"),
                        self.slide.expect("checked above"),
                        self.max_windows_per_event
                    );
                }
            }
            WindowKind::Session => {
                positive("gap", self.gap)?;
                refuse("size", self.size)?;
                refuse("slide", self.slide)?;
            }
        }
        match (self.aggregate, &self.field, &self.plugin) {
            (AggregateKind::Plugin, _, None) => {
                bail!("[window] aggregate = \"plugin\" needs a `plugin` table (name, path, config)")
            }
            (AggregateKind::Plugin, _, Some(_)) | (AggregateKind::Count, _, None) => Ok(()),
            (AggregateKind::Count, _, Some(_)) => {
                bail!("[window] `plugin` needs aggregate = \"plugin\"")
            }
            (kind, None, _) => bail!("[window] aggregate = \"{}\" needs `field`", kind.name()),
            (_, Some(_), Some(_)) => bail!("[window] `plugin` needs aggregate = \"plugin\""),
            (_, Some(_), None) => Ok(()),
        }
    }
}

/// `[batch]`: how many events, or how long, to gather per batch.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// A batch closes once it holds this many events.
    pub max_records: usize,
    /// ... or once this long has passed since its first event arrived.
    pub max_wait: ConfigDuration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_records: 1024,
            max_wait: ConfigDuration(std::time::Duration::from_millis(100)),
        }
    }
}

impl SourceConfig {
    /// The fields that carry event time and key, for sources that read JSON.
    pub fn event_fields(&self) -> EventFields {
        match self {
            SourceConfig::File(f) => f.event_fields(),
            SourceConfig::Stdin(s) => s.event_fields(),
            SourceConfig::Generator(g) => g.event_fields(),
            SourceConfig::Kafka(k) => k.event_fields(),
        }
    }
}

impl PipelineConfig {
    /// The workers this process runs (`parallelism`, 1 when unset).
    pub fn workers(&self) -> u32 {
        self.parallelism.unwrap_or(1)
    }

    /// The sinks the file configures, by role (`sink`, `dead_letter`, `late`).
    pub fn sinks(&self) -> impl Iterator<Item = (&'static str, &SinkConfig)> {
        [
            ("sink", Some(&self.sink)),
            ("dead_letter", self.dead_letter.as_ref()),
            ("late", self.late.as_ref()),
        ]
        .into_iter()
        .filter_map(|(role, sink)| Some((role, sink?)))
    }

    /// Reads and checks a pipeline file; relative paths in it become relative to its
    /// directory.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read pipeline file {}", path.display()))?;
        let mut config = Self::parse(&text)
            .with_context(|| format!("invalid pipeline file {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config
            .check_paths()
            .with_context(|| format!("invalid pipeline file {}", path.display()))?;
        Ok(config)
    }

    /// Parses and checks pipeline TOML text (paths stay as written).
    pub fn parse(text: &str) -> Result<Self> {
        let config: Self = toml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<()> {
        if self.batch.max_records == 0 {
            bail!("[batch] max_records must be at least 1");
        }
        if let SourceConfig::Generator(g) = &self.source {
            if g.partitions == 0 || g.keys == 0 {
                bail!("[source] a generator needs at least 1 partition and 1 key");
            }
            if g.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
                bail!("[source] generator rate must be a positive number of events per second");
            }
            if !matches!(g.key_field.as_str(), "user" | "card") {
                bail!("[source] generator key_field must be \"user\" or \"card\"");
            }
        }
        if self.parallelism == Some(0) {
            bail!("parallelism must be at least 1");
        }
        if let SourceConfig::Kafka(k) = &self.source {
            k.check()?;
            if k.bounded && self.workers() > 1 {
                bail!(
                    "[source] bounded = true reads every partition with one consumer; \
                     use parallelism = 1, or a streaming source (bounded = false) to split \
                     the partitions between workers"
                );
            }
        }
        for (_, sink) in self.sinks() {
            match sink {
                SinkConfig::Kafka(k) => {
                    k.check()?;
                    if k.delivery == crate::sink::Delivery::Transactional {
                        match &self.checkpoint {
                            None => bail!(
                                "[sink] delivery = \"transactional\" commits a transaction per \
                                 checkpoint; add a [checkpoint] section (dir, interval)"
                            ),
                            Some(c) if c.retain < 2 => bail!(
                                "[checkpoint] retain must be at least 2 with a transactional Kafka \
                                 sink: after a crash before a commit, the job resumes from the \
                                 checkpoint before"
                            ),
                            Some(_) => {}
                        }
                    }
                }
                SinkConfig::Postgres(p) => p.check()?,
                _ => {}
            }
        }
        crate::workers::check(self)?;
        if let Some(window) = &self.window {
            window.check()?;
        }
        if let Some(admin) = &self.admin {
            admin.check()?;
        }
        let mut names = std::collections::HashSet::new();
        for plugin in self
            .plugins
            .iter()
            .chain(self.window.iter().filter_map(|w| w.plugin.as_ref()))
        {
            if !names.insert(plugin.name.as_str()) {
                bail!(
                    "two [[plugin]] stages are named `{}`; names must be unique",
                    plugin.name
                );
            }
            plugin.config_pairs()?;
        }
        let mut tables = std::collections::HashSet::new();
        for table in &self.side_inputs {
            if !tables.insert(table.name.as_str()) {
                bail!(
                    "two [[side_input]] tables are named `{}`; names must be unique",
                    table.name
                );
            }
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let SourceConfig::File(f) = &mut self.source {
            resolve(&mut f.path);
        }
        if let Some(checkpoint) = &mut self.checkpoint {
            resolve(&mut checkpoint.dir);
        }
        if let Some(token) = self.admin.as_mut().and_then(|a| a.token_file.as_mut()) {
            resolve(token);
        }
        let window_plugin = self.window.as_mut().and_then(|w| w.plugin.as_mut());
        for plugin in self.plugins.iter_mut().chain(window_plugin) {
            resolve(&mut plugin.path);
            plugin.grant.read_dirs.iter_mut().for_each(resolve);
        }
        for table in &mut self.side_inputs {
            resolve(&mut table.path);
        }
        let sinks = [
            Some(&mut self.sink),
            self.dead_letter.as_mut(),
            self.late.as_mut(),
        ];
        for sink in sinks.into_iter().flatten() {
            if let SinkConfig::File(FileSinkConfig { path }) = sink {
                resolve(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[source]\nkind = \"generator\"\ncount = 10\n[sink]\nkind = \"null\"\n";

    #[test]
    fn an_admin_endpoint_others_can_reach_needs_a_token() {
        let with = |admin: &str| {
            PipelineConfig::parse(&format!(
                "[source]\nkind = \"generator\"\n[sink]\nkind = \"null\"\n[admin]\n{admin}\n"
            ))
        };
        let err = format!("{:#}", with("listen = \"0.0.0.0:9464\"").unwrap_err());
        assert!(
            err.contains("not a loopback address") && err.contains("token_file"),
            "{err}"
        );
        assert!(with("listen = \"0.0.0.0:9464\"\ntoken_file = \"token\"").is_ok());
        assert!(with("listen = \"[::1]:9464\"").is_ok());
        assert!(with("listen = \"localhost:9464\"").is_ok());
        assert!(with("listen = \"example.org:9464\"").is_err());
    }

    #[test]
    fn parses_a_full_pipeline() {
        let text = r#"
            [source]
            kind = "file"
            path = "in.jsonl"
            time_field = "ts"
            key_field = "user"

            [[plugin]]
            name = "big"
            path = "filter.wasm"
            config = { field = "amount", op = ">=", value = 100 }
            timeout = "250ms"

            [[side_input]]
            name = "users"
            path = "users.csv"
            key_field = "user"

            [sink]
            kind = "file"
            path = "out.jsonl"

            [dead_letter]
            kind = "stdout"

            [late]
            kind = "file"
            path = "late.jsonl"

            [batch]
            max_records = 64
            max_wait = "5s"
        "#;
        let mut config = PipelineConfig::parse(text).unwrap();
        config.resolve_paths(Path::new("/p"));
        let SourceConfig::File(file) = &config.source else {
            panic!()
        };
        assert_eq!(file.path, Path::new("/p/in.jsonl"));
        assert_eq!(file.key_field.as_deref(), Some("user"));
        assert_eq!(config.plugins[0].timeout.as_millis(), 250);
        assert_eq!(
            config.plugins[0].config_pairs().unwrap(),
            vec![
                ("field".into(), "amount".into()),
                ("op".into(), ">=".into()),
                ("value".into(), "100".into())
            ]
        );
        assert_eq!(
            config.sink,
            SinkConfig::File(FileSinkConfig {
                path: "/p/out.jsonl".into()
            })
        );
        assert_eq!(
            config.dead_letter,
            Some(SinkConfig::Stdout(StdioSinkConfig {}))
        );
        assert_eq!(
            config.late,
            Some(SinkConfig::File(FileSinkConfig {
                path: "/p/late.jsonl".into()
            }))
        );
        assert_eq!(config.batch.max_records, 64);
        assert_eq!(config.batch.max_wait.as_millis(), 5000);
    }

    #[test]
    fn defaults_apply() {
        let config = PipelineConfig::parse(MINIMAL).unwrap();
        assert_eq!(config.batch, BatchConfig::default());
        let SourceConfig::Generator(g) = &config.source else {
            panic!()
        };
        assert_eq!(g.count, Some(10));
        assert_eq!(g.keys, 1000);
        assert!(config.dead_letter.is_none());
    }

    fn error_of(text: &str) -> String {
        format!("{:#}", PipelineConfig::parse(text).unwrap_err())
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = error_of(&MINIMAL.replace("count = 10", "count = 10\nsped = 3"));
        assert!(err.contains("sped"), "{err}");
        let err = error_of(&format!("{MINIMAL}[batch]\nmax_recs = 3\n"));
        assert!(err.contains("max_recs") && err.contains("line"), "{err}");
        let err = error_of(&format!("{MINIMAL}[windw]\n"));
        assert!(err.contains("windw"), "{err}");
        let err = error_of(&MINIMAL.replace("\"null\"", "\"nul\""));
        assert!(err.contains("nul"), "{err}");
    }

    #[test]
    fn windows_are_checked_by_kind() {
        let with = |window: &str| format!("{MINIMAL}[window]\n{window}\n");
        let ok = PipelineConfig::parse(&with("kind = \"sliding\"\nsize = \"1m\"\nslide = \"10s\"\naggregate = \"sum\"\nfield = \"amount\"")).unwrap();
        let window = ok.window.unwrap();
        assert_eq!(
            (window.kind, window.aggregate),
            (WindowKind::Sliding, AggregateKind::Sum)
        );
        let cases = [
            ("kind = \"tumbling\"\naggregate = \"count\"", "needs `size`"),
            (
                "kind = \"tumbling\"\nsize = \"0s\"\naggregate = \"count\"",
                "more than 0",
            ),
            (
                "kind = \"session\"\ngap = \"1s\"\nsize = \"1s\"\naggregate = \"count\"",
                "`size` does not apply",
            ),
            (
                "kind = \"sliding\"\nsize = \"1s\"\naggregate = \"count\"",
                "needs `slide`",
            ),
            (
                "kind = \"tumbling\"\nsize = \"1s\"\naggregate = \"avg\"",
                "needs `field`",
            ),
            (
                "kind = \"tumbling\"\nsize = \"1s\"\naggregate = \"plugin\"",
                "needs a `plugin` table",
            ),
            (
                "kind = \"hopping\"\nsize = \"1s\"\naggregate = \"count\"",
                "hopping",
            ),
        ];
        for (window, want) in cases {
            let err = error_of(&with(window));
            assert!(err.contains(want), "{window}: {err}");
        }
    }

    #[test]
    fn bad_values_are_refused() {
        let err = error_of(&format!("{MINIMAL}[batch]\nmax_records = 0\n"));
        assert!(err.contains("max_records"), "{err}");
        let err = error_of(&format!("{MINIMAL}[batch]\nmax_wait = \"soon\"\n"));
        assert!(err.contains("invalid duration"), "{err}");
        let twice = "[[plugin]]\nname = \"a\"\npath = \"a.wasm\"\n";
        let err = error_of(&format!("{MINIMAL}{twice}{twice}"));
        assert!(err.contains("unique"), "{err}");
        let nested = "[[plugin]]\nname = \"a\"\npath = \"a.wasm\"\nconfig = { x = [1] }\n";
        let err = error_of(&format!("{MINIMAL}{nested}"));
        assert!(err.contains("`x`"), "{err}");
    }

    #[test]
    fn parallelism_needs_partitions_and_shareable_sinks() {
        let generator = "[source]\nkind = \"generator\"\npartitions = 4\n";
        let null = "[sink]\nkind = \"null\"\n";
        let config = PipelineConfig::parse(&format!("parallelism = 2\n{generator}{null}")).unwrap();
        assert_eq!(config.workers(), 2);
        assert!(crate::workers::runs_as_workers(&config));
        let err = error_of(&format!("parallelism = 0\n{generator}{null}"));
        assert!(err.contains("at least 1"), "{err}");
        let err = error_of(&format!(
            "parallelism = 2\n{generator}[sink]\nkind = \"file\"\npath = \"out.jsonl\"\n"
        ));
        assert!(err.contains("cannot be shared"), "{err}");
        let err = error_of(&format!(
            "parallelism = 2\n[source]\nkind = \"file\"\npath = \"in.jsonl\"\n{null}"
        ));
        assert!(err.contains("partitions to split"), "{err}");
        let kafka =
            "[source]\nkind = \"kafka\"\nbrokers = \"b:9092\"\ntopics = [\"t\"]\ngroup = \"g\"\n";
        let err = error_of(&format!("parallelism = 2\n{kafka}bounded = true\n{null}"));
        assert!(err.contains("bounded"), "{err}");
        // A streaming Kafka source runs partition tasks, even with one worker.
        let config = PipelineConfig::parse(&format!("{kafka}{null}")).unwrap();
        assert!(crate::workers::runs_as_workers(&config));
        // Its tasks are reached through the process's admin endpoint.
        PipelineConfig::parse(&format!("{kafka}{null}[admin]\nlisten = \"127.0.0.1:0\"\n"))
            .unwrap();
    }
}
