//! A plugin's stdout and stderr: every line it writes goes to Eddy's log, tagged with the
//! stage's name and the stream (a Python `print`, a JavaScript `console.log`, a Rust
//! panic message). The last lines a plugin wrote to stderr or logged as errors are kept
//! as its [`LastWords`], so a failed call can say why in the plugin's own words: its
//! error logs when it wrote any (the helper libraries log an uncaught exception's type
//! and message), else its last stderr lines (a Rust panic message).
//!
//! Invariants: nothing a plugin writes blocks it or is lost before its line ends (a line
//! longer than [`MAX_LINE`] is logged in pieces; a last line without a newline is logged
//! when the stream is dropped); at most [`LAST_WORDS`] lines are kept.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The longest line logged whole.
const MAX_LINE: usize = 16 * 1024;
/// How many of a plugin's last stderr lines and error logs are kept.
const LAST_WORDS: usize = 4;

/// Which stream a plugin wrote to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stream {
    Stdout,
    Stderr,
}

/// The last lines a plugin wrote to stderr and logged as errors, shared between its
/// stderr stream and its store.
#[derive(Debug, Clone, Default)]
pub(super) struct LastWords(Arc<Mutex<Words>>);

#[derive(Debug, Default)]
struct Words {
    errors: VecDeque<String>,
    stderr: VecDeque<String>,
}

impl LastWords {
    /// Remembers an error the plugin logged.
    pub(super) fn push_error(&self, message: &str) {
        if let Ok(mut words) = self.0.lock() {
            keep(&mut words.errors, message);
        }
    }

    /// Remembers a line the plugin wrote to stderr.
    pub(super) fn push_stderr(&self, line: &str) {
        if let Ok(mut words) = self.0.lock() {
            keep(&mut words.stderr, line);
        }
    }

    /// Forgets every line (before a call).
    pub(super) fn clear(&self) {
        if let Ok(mut words) = self.0.lock() {
            *words = Words::default();
        }
    }

    /// The error logs kept, else the stderr lines, joined; `None` when there are none.
    pub(super) fn take(&self) -> Option<String> {
        let mut words = self.0.lock().ok()?;
        let words = std::mem::take(&mut *words);
        let lines = if words.errors.is_empty() {
            words.stderr
        } else {
            words.errors
        };
        (!lines.is_empty()).then(|| Vec::from(lines).join(" | "))
    }
}

/// Appends `line` to `lines`, forgetting the oldest beyond [`LAST_WORDS`]; blank lines and
/// Rust's hint about `RUST_BACKTRACE` say nothing and are not kept.
fn keep(lines: &mut VecDeque<String>, line: &str) {
    let line = line.trim_end();
    if line.is_empty() || line.starts_with("note: run with `RUST_BACKTRACE") {
        return;
    }
    if lines.len() == LAST_WORDS {
        lines.pop_front();
    }
    lines.push_back(line.to_owned());
}

/// A plugin's stdout or stderr, as WASI sees it.
pub(super) struct PluginOutput {
    stage: Arc<str>,
    stream: Stream,
    last_words: LastWords,
}

impl PluginOutput {
    /// The `stream` of stage `stage`; stderr lines are also kept in `last_words`.
    pub(super) fn new(stage: Arc<str>, stream: Stream, last_words: LastWords) -> Self {
        Self {
            stage,
            stream,
            last_words,
        }
    }

    fn writer(&self) -> LineLogger {
        LineLogger {
            stage: self.stage.clone(),
            stream: self.stream,
            last_words: self.last_words.clone(),
            pending: Vec::new(),
        }
    }
}

impl IsTerminal for PluginOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for PluginOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.writer())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }
}

/// Cuts what a plugin writes into lines and logs each.
struct LineLogger {
    stage: Arc<str>,
    stream: Stream,
    last_words: LastWords,
    pending: Vec<u8>,
}

impl LineLogger {
    fn take(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(end) = memchr::memchr(b'\n', &self.pending[start..]) {
            let line = &self.pending[start..start + end];
            log_line(&self.stage, self.stream, &self.last_words, line);
            start += end + 1;
        }
        self.pending.drain(..start);
        if self.pending.len() > MAX_LINE {
            let line = std::mem::take(&mut self.pending);
            log_line(&self.stage, self.stream, &self.last_words, &line);
        }
    }
}

fn log_line(stage: &str, stream: Stream, last_words: &LastWords, line: &[u8]) {
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end_matches('\r');
    match stream {
        Stream::Stdout => tracing::info!(plugin = stage, "stdout: {line}"),
        Stream::Stderr => {
            tracing::warn!(plugin = stage, "stderr: {line}");
            last_words.push_stderr(line);
        }
    }
}

impl Drop for LineLogger {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            log_line(&self.stage, self.stream, &self.last_words, &line);
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineLogger {
    async fn ready(&mut self) {}
}

impl OutputStream for LineLogger {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.take(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE)
    }
}

impl AsyncWrite for LineLogger {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.take(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_stderr_lines_across_writes() {
        let words = LastWords::default();
        let output = PluginOutput::new("p".into(), Stream::Stderr, words.clone());
        let mut writer = output.writer();
        writer.take(b"thread panicked at src/lib.rs:1:\nbroken ");
        writer.take(b"on live data\n");
        assert_eq!(
            words.take().as_deref(),
            Some("thread panicked at src/lib.rs:1: | broken on live data")
        );
        for i in 0..10 {
            writer.take(format!("line {i}\n").as_bytes());
        }
        assert_eq!(
            words.take().as_deref(),
            Some("line 6 | line 7 | line 8 | line 9")
        );
        writer.take(b"no newline");
        drop(writer);
        assert_eq!(words.take().as_deref(), Some("no newline"));
    }

    #[test]
    fn prefers_the_errors_a_plugin_logged_to_its_stderr() {
        let words = LastWords::default();
        words.push_stderr("Traceback (most recent call last):");
        words.push_error("ZeroDivisionError: division by zero");
        words.push_stderr("thread '<unnamed>' panicked at runtime/src/lib.rs:1:");
        assert_eq!(
            words.take().as_deref(),
            Some("ZeroDivisionError: division by zero")
        );
        assert_eq!(words.take(), None, "taken once");
    }
}
