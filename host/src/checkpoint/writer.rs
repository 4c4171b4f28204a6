//! Writes checkpoints on a background thread, so serializing and fsyncing a large state
//! does not stall the stream: the pipeline only copies its state at a batch boundary.

use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};

use anyhow::{anyhow, Result};

use super::{CheckpointDir, Snapshot};

/// A checkpoint being written, and the thread writing it.
pub struct CheckpointWriter {
    requests: Sender<Snapshot>,
    results: Receiver<(u64, Result<PathBuf>)>,
    in_flight: Option<u64>,
}

impl CheckpointWriter {
    /// Starts the writer thread for `dir`.
    pub fn start(dir: CheckpointDir) -> Self {
        let (requests, inbox) = channel::<Snapshot>();
        let (outbox, results) = channel();
        std::thread::Builder::new()
            .name("eddy-checkpoint".into())
            .spawn(move || {
                for snapshot in inbox {
                    let id = snapshot.id;
                    if outbox.send((id, dir.write(&snapshot))).is_err() {
                        return;
                    }
                }
            })
            .expect("cannot start the checkpoint writer thread");
        Self {
            requests,
            results,
            in_flight: None,
        }
    }

    /// Whether a checkpoint is being written.
    pub fn busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Starts writing `snapshot`. Only one checkpoint is written at a time.
    pub fn submit(&mut self, snapshot: Snapshot) -> Result<()> {
        debug_assert!(self.in_flight.is_none());
        self.in_flight = Some(snapshot.id);
        self.requests
            .send(snapshot)
            .map_err(|_| anyhow!("the checkpoint writer thread has stopped"))
    }

    /// The outcome of the checkpoint in flight, if it is done (`wait`: block until it is).
    pub fn poll(&mut self, wait: bool) -> Option<(u64, Result<PathBuf>)> {
        self.in_flight?;
        let outcome = if wait {
            self.results.recv().ok()
        } else {
            match self.results.try_recv() {
                Ok(outcome) => Some(outcome),
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => None,
            }
        };
        let id = self.in_flight.take().unwrap_or_default();
        Some(outcome.unwrap_or((id, Err(anyhow!("the checkpoint writer thread has stopped")))))
    }
}
