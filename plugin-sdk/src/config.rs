//! A plugin stage's configuration, from the `config` table of its `[[plugin]]` entry.

use std::str::FromStr;

/// The `config` table of a plugin's `[[plugin]]` entry in the pipeline file, as text.
///
/// ```
/// use eddy_plugin_sdk::Config;
/// let config = Config::new([("field", "amount"), ("value", "100")]);
/// assert_eq!(config.require("field"), Ok("amount"));
/// assert_eq!(config.parse::<f64>("value"), Ok(Some(100.0)));
/// assert!(config.require("op").unwrap_err().contains("`op`"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// A configuration from `(key, value)` pairs.
    pub fn new<K: Into<String>, V: Into<String>>(
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            entries: entries
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or an error naming the missing key.
    pub fn require(&self, key: &str) -> Result<&str, String> {
        self.get(key)
            .ok_or_else(|| format!("missing config key `{key}`"))
    }

    /// The value of `key` parsed as `T`, `None` if unset, or an error naming the key and value.
    pub fn parse<T: FromStr>(&self, key: &str) -> Result<Option<T>, String>
    where
        T::Err: std::fmt::Display,
    {
        self.get(key)
            .map(|v| {
                v.parse()
                    .map_err(|e| format!("config key `{key}` = {v:?}: {e}"))
            })
            .transpose()
    }

    /// All `(key, value)` pairs, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}
