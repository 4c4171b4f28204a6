//! Watching files for changes (side-input tables, plugin components), the one way Eddy
//! does it: the files' directories are watched (editors and deploy tools replace files by
//! renaming, so the file itself is not enough), and a change is reported once the file
//! has been quiet for a while, so a file written in several steps is read once, whole.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};

/// Calls `changed(i)` when file `paths[i]` has changed and then been quiet for `quiet`.
/// Watching stops when the returned watcher is dropped.
pub fn watch(
    paths: &[PathBuf],
    what: &str,
    quiet: Duration,
    changed: impl Fn(usize) + Send + 'static,
) -> Result<notify::RecommendedWatcher> {
    let watched: Vec<PathBuf> = paths.iter().map(|p| absolute(p)).collect();
    let (events, changes) = std::sync::mpsc::channel::<usize>();
    let matched = watched.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        for (i, path) in matched.iter().enumerate() {
            if event.paths.iter().any(|p| absolute(p) == *path) {
                let _ = events.send(i);
            }
        }
    })
    .with_context(|| format!("cannot start watching {what}"))?;
    for path in &watched {
        let dir = path.parent().unwrap_or(Path::new("/"));
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch {} for {what}", dir.display()))?;
    }
    std::thread::Builder::new()
        .name("eddy-file-watch".into())
        .spawn(move || {
            // Ends when the watcher (and with it the sender) is dropped.
            while let Ok(first) = changes.recv() {
                let mut pending = std::collections::BTreeSet::from([first]);
                while let Ok(next) = changes.recv_timeout(quiet) {
                    pending.insert(next);
                }
                pending.into_iter().for_each(&changed);
            }
        })
        .with_context(|| format!("cannot start the thread watching {what}"))?;
    Ok(watcher)
}

/// `path` made absolute (as it is, when that fails).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}
