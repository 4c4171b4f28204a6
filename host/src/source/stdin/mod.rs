//! The stdin source: JSON lines on standard input, until it closes.
//!
//! A reader thread does the blocking reads and hands over chunks of lines, so the pipeline
//! can wait for input with a deadline (and close a batch after `max_wait`).

mod config;

pub use config::StdinSourceConfig;

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::time::Instant;

use anyhow::{Context, Result};

use super::{Ingest, Source, SourcePosition, SourceState};

/// Lines read together: bytes back to back, with each line's end.
struct Chunk {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    first_line: u64,
}

/// Reads JSON lines from standard input; one partition, positions are line numbers.
pub struct StdinSource {
    chunks: Receiver<std::io::Result<Chunk>>,
    pending: Option<(Chunk, usize)>,
}

/// Most lines per chunk handed from the reader thread.
const CHUNK_LINES: usize = 1024;

impl StdinSource {
    /// Starts reading standard input on a background thread.
    pub fn spawn() -> Self {
        Self::from_reader(std::io::stdin())
    }

    /// Reads lines from any reader on a background thread (tests use this).
    pub fn from_reader(reader: impl Read + Send + 'static) -> Self {
        let (tx, rx) = sync_channel(4);
        std::thread::Builder::new()
            .name("eddy-stdin".into())
            .spawn(move || {
                let mut reader = BufReader::with_capacity(1 << 16, reader);
                let mut line_number = 1;
                loop {
                    let chunk = read_chunk(&mut reader, line_number);
                    let done = !matches!(&chunk, Ok(c) if !c.ends.is_empty());
                    if let Ok(c) = &chunk {
                        line_number += c.ends.len() as u64;
                    }
                    if tx.send(chunk).is_err() || done {
                        return;
                    }
                }
            })
            .expect("cannot start the stdin reader thread");
        Self {
            chunks: rx,
            pending: None,
        }
    }
}

/// Reads lines until the chunk is full or no more input is buffered (the next read would
/// block), so lines that arrive together travel together.
fn read_chunk<R: Read>(reader: &mut BufReader<R>, first_line: u64) -> std::io::Result<Chunk> {
    let mut chunk = Chunk {
        bytes: Vec::new(),
        ends: Vec::new(),
        first_line,
    };
    while chunk.ends.len() < CHUNK_LINES {
        if reader.read_until(b'\n', &mut chunk.bytes)? == 0 {
            break;
        }
        chunk.ends.push(chunk.bytes.len());
        if reader.buffer().is_empty() {
            break;
        }
    }
    Ok(chunk)
}

impl Source for StdinSource {
    fn describe(&self) -> String {
        "stdin".into()
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::Unreplayable
    }

    fn seek(&mut self, _position: &SourcePosition) -> Result<()> {
        anyhow::bail!("stdin cannot be replayed, so a job reading it cannot resume from a checkpoint; use --fresh")
    }

    fn poll(
        &mut self,
        ingest: &mut Ingest<'_>,
        max: usize,
        deadline: Instant,
    ) -> Result<SourceState> {
        let mut added = 0;
        while added < max {
            let (chunk, next) = match self.pending.take() {
                Some(p) => p,
                None => {
                    let timeout = deadline.saturating_duration_since(Instant::now());
                    match self.chunks.recv_timeout(timeout) {
                        Ok(chunk) => (chunk.context("cannot read standard input")?, 0),
                        Err(RecvTimeoutError::Timeout) => return Ok(SourceState::Open),
                        Err(RecvTimeoutError::Disconnected) => return Ok(SourceState::Exhausted),
                    }
                }
            };
            if chunk.ends.is_empty() {
                return Ok(SourceState::Exhausted);
            }
            let mut i = next;
            while i < chunk.ends.len() && added < max {
                let start = if i == 0 { 0 } else { chunk.ends[i - 1] };
                let position = chunk.first_line + i as u64;
                if ingest.push_json(0, position, &chunk.bytes[start..chunk.ends[i]]) {
                    added += 1;
                }
                i += 1;
            }
            if i < chunk.ends.len() {
                self.pending = Some((chunk, i));
            }
        }
        Ok(SourceState::Open)
    }
}
