//! A disk cache of compiled components, keyed by the component's content hash and the
//! engine's compatibility hash, so each plugin is compiled by Cranelift once per machine.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Where compiled components are kept between runs.
#[derive(Debug, Clone)]
pub struct CompiledCache {
    dir: Option<PathBuf>,
}

impl CompiledCache {
    /// The cache in `dir`; `None` disables caching.
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    /// The default cache: `$EDDY_CACHE_DIR`, else `$XDG_CACHE_HOME/eddy`, else
    /// `~/.cache/eddy` (none when no such directory can be named).
    pub fn from_env() -> Self {
        let env_dir = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let dir = env_dir("EDDY_CACHE_DIR")
            .or_else(|| env_dir("XDG_CACHE_HOME").map(|d| d.join("eddy")))
            .or_else(|| env_dir("HOME").map(|d| d.join(".cache/eddy")));
        Self::new(dir.map(|d| d.join("compiled")))
    }

    /// Where the compiled code of the component with content hash `hash` is kept for
    /// `engine`, if there is a cache.
    pub fn entry(&self, engine: &Engine, hash: &str) -> Option<PathBuf> {
        let mut compat = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut compat);
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{hash}-{:016x}.cwasm", compat.finish())))
    }

    /// Compiles `bytes` (a component), or loads its compiled code from the cache.
    pub fn load(&self, engine: &Engine, bytes: &[u8], hash: &str) -> Result<Component> {
        let Some(path) = self.entry(engine, hash) else {
            return Ok(Component::new(engine, bytes)?);
        };
        if path.exists() {
            // SAFETY: the file was written by `store` below from code this engine compiled;
            // the cache directory belongs to the user running Eddy.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => tracing::warn!(
                    "ignoring unusable compiled-code cache entry {}: {e}",
                    path.display()
                ),
            }
        }
        let component = Component::new(engine, bytes).map_err(anyhow::Error::from)?;
        if let Err(e) = store(&path, &component) {
            tracing::warn!(
                "cannot write compiled-code cache entry {}: {e:#}",
                path.display()
            );
        }
        Ok(component)
    }
}

/// Writes a compiled component atomically, so a reader never sees half a file.
fn store(path: &Path, component: &Component) -> Result<()> {
    let dir = path.parent().context("cache path has no directory")?;
    std::fs::create_dir_all(dir)?;
    crate::durable::write_atomic_shared(path, &component.serialize()?)
}

/// The hex SHA-256 of a plugin's bytes: its identity in status, logs and checkpoints.
pub fn content_hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
