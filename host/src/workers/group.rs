//! Partition tasks in a Kafka consumer group: each worker is a group member; for every
//! partition the group assigns it, it starts a task (a pipeline reading that partition
//! alone, restored from the partition's directory in the shared checkpoint store) and
//! moves the consumer to the task's offset; for every partition revoked, it stops the
//! task, which ends with a final checkpoint, before the group hands the partition on.
//!
//! Invariants: a task is started before its partition is fetched and stopped (its state
//! checkpointed) before the revocation returns; a task starts only once it holds its
//! directory's lock, waiting for a previous owner that still holds it (a member the
//! group gave up on that has not noticed yet), so a partition is never processed, nor
//! its output read back for deduplication, while another task still writes it; records
//! reach a task in offset order, in blocks of what the consumer had at hand, at most
//! [`HANDOVER_RECORDS`] (or `max_records` when larger), so small batches do not cost a
//! hand-over each; blocks
//! still being filled when the group rebalances are dropped, never handed to a task
//! started after it (that task reads from its own checkpoint's offset, and a block from
//! further on would make it skip what lies between); a task that fails stops the process
//! with its error, so it restarts from the checkpoints.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{task_config, TaskBoard};
use crate::batch::HANDOVER_RECORDS;
use crate::config::PipelineConfig;
use crate::kafka::{log_poll_error, ClientErrors, CLUSTER_TIMEOUT};
use crate::log_limit::Repeats;
use crate::pipeline::{Pipeline, RunOptions, RunSummary};
use crate::plugin::PluginRuntime;
use crate::source::kafka::{Commit, Fetched, PartitionFeed, StartAt};
use crate::source::KafkaSourceConfig;

/// How long a task waits for the partition's previous owner to let go of its directory
/// in the checkpoint store: longer than librdkafka's default `session.timeout.ms` (45 s),
/// after which a member cut off from the group has revoked its partitions itself.
const PREVIOUS_OWNER_WAIT: Duration = Duration::from_secs(60);

/// Blocks a task may have waiting before the worker waits for it (back-pressure).
const QUEUED_BLOCKS: usize = 2;

/// What every worker of the process shares.
struct Job {
    config: PipelineConfig,
    kafka: KafkaSourceConfig,
    start: StartAt,
    runtime: Arc<PluginRuntime>,
    options: RunOptions,
    /// The live tasks, as the admin endpoint reaches them.
    board: Arc<TaskBoard>,
    /// Summaries of tasks that ended, summed.
    finished: Mutex<Option<RunSummary>>,
    /// The first error of a task or a worker: it stops the process.
    failure: Mutex<Option<anyhow::Error>>,
}

impl Job {
    fn fail(&self, error: anyhow::Error) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.get_or_insert(error);
    }

    fn failed(&self) -> bool {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    fn add(&self, summary: RunSummary) {
        let mut finished = self.finished.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *finished {
            Some(total) => total.absorb(summary),
            None => *finished = Some(summary),
        }
    }
}

/// A running partition task.
struct Task {
    blocks: SyncSender<Fetched>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<RunSummary>>,
}

/// The consumer's context: it starts and stops tasks as the group assigns and revokes.
struct Member {
    job: Arc<Job>,
    worker: u32,
    tasks: Mutex<HashMap<(String, i32), Task>>,
    commits: Sender<Commit>,
    /// Rebalances so far: the worker drops its blocks being filled when this moves.
    rebalances: AtomicU64,
    /// The client errors logged, so that an outage is not logged every few milliseconds.
    errors: ClientErrors,
}

impl ClientContext for Member {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.log(&error, reason);
    }
}

impl ConsumerContext for Member {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        self.rebalances.fetch_add(1, Ordering::AcqRel);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Err(e) = self.assign(consumer, tpl) {
                    self.job.fail(e);
                }
                if let Err(e) = consumer.assign(tpl) {
                    self.job.fail(anyhow!(
                        "cannot take the partitions the group assigned: {e}"
                    ));
                }
            }
            _ => {
                self.release_all();
                if let Err(e) = consumer.unassign() {
                    tracing::warn!("cannot release the revoked partitions: {e}");
                }
            }
        }
    }
}

impl Member {
    /// Starts a task for each assigned partition and sets the offset it resumes from.
    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) -> Result<()> {
        let assigned: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        tracing::info!(
            "worker {}: the group assigned {}",
            self.worker,
            assigned
                .iter()
                .map(|(t, p)| format!("{t}/{p}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (topic, partition) in assigned {
            let offset = self.start_task(consumer, &topic, partition)?;
            tpl.set_partition_offset(&topic, partition, Offset::Offset(offset))
                .context("cannot set the partition's offset")?;
        }
        Ok(())
    }

    /// Starts the task of `partition` of `topic` (restoring its state) and returns the
    /// offset it reads from.
    fn start_task(
        &self,
        consumer: &BaseConsumer<Self>,
        topic: &str,
        partition: i32,
    ) -> Result<i64> {
        let name = format!("{topic}-{partition}");
        let (blocks, fed) = mpsc::sync_channel(QUEUED_BLOCKS);
        let (ready, built) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        // Where `[source] start` says, unless the task restores a checkpoint: known before
        // the task starts, so the checkpoint it takes first records a concrete offset.
        let start = self.start_offset(consumer, topic, partition)?;
        let resume = Arc::new(AtomicI64::new(start));
        let thread = {
            let job = self.job.clone();
            let stop = stop.clone();
            let resume = resume.clone();
            let commits = self.commits.clone();
            let topic = topic.to_owned();
            std::thread::Builder::new()
                .name(format!("eddy-task-{name}"))
                .spawn(move || {
                    let feed = PartitionFeed::new(&topic, partition, -1, fed, resume, commits);
                    let mut config = task_config(&job.config, &name);
                    job.board.apply_swaps(&mut config);
                    let built_pipeline = Pipeline::build_with_source(
                        &config,
                        &job.runtime,
                        &job.options,
                        Box::new(feed),
                    )
                    .with_context(|| {
                        format!("cannot start the task of partition {topic}/{partition}")
                    });
                    let mut pipeline = match built_pipeline {
                        Ok(p) => {
                            let _ = ready.send(Ok(()));
                            p
                        }
                        Err(e) => {
                            let _ = ready.send(Err(anyhow!("{e:#}")));
                            return Err(e);
                        }
                    };
                    let requests = job.board.join(&name, &config, &pipeline);
                    let summary = pipeline.run(&stop, Some(&requests), |_| {});
                    job.board.leave(&name);
                    summary
                })
                .context("cannot start a task thread")?
        };
        built.recv().unwrap_or_else(|_| {
            Err(anyhow!(
                "the task of {topic}/{partition} ended while starting"
            ))
        })?;
        let offset = resume.load(Ordering::Acquire);
        tracing::info!(
            "worker {}: {topic}/{partition} starts at offset {offset}",
            self.worker
        );
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).insert(
            (topic.to_owned(), partition),
            Task {
                blocks,
                stop,
                thread,
            },
        );
        Ok(offset)
    }

    /// Where a partition with no checkpoint starts, per `[source] start`: a concrete offset.
    fn start_offset(
        &self,
        consumer: &BaseConsumer<Self>,
        topic: &str,
        partition: i32,
    ) -> Result<i64> {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, CLUSTER_TIMEOUT)
            .with_context(|| format!("cannot read the offsets of {topic}/{partition}"))?;
        let mut one = TopicPartitionList::new();
        let found = |list: TopicPartitionList| {
            list.elements().first().and_then(|e| match e.offset() {
                Offset::Offset(o) if o >= 0 => Some(o),
                _ => None,
            })
        };
        Ok(match self.job.start {
            StartAt::Earliest => low,
            StartAt::Latest => high,
            StartAt::Committed => {
                one.add_partition(topic, partition);
                found(consumer.committed_offsets(one, CLUSTER_TIMEOUT)?).unwrap_or(low)
            }
            StartAt::Timestamp(ms) => {
                one.add_partition_offset(topic, partition, Offset::Offset(ms))?;
                found(consumer.offsets_for_times(one, CLUSTER_TIMEOUT)?).unwrap_or(high)
            }
        }
        .max(low))
    }

    /// Stops every task (each ends with a final checkpoint) and waits for them.
    fn release_all(&self) {
        let tasks: Vec<_> = self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        for (_, task) in &tasks {
            task.stop.store(true, Ordering::Relaxed);
        }
        for ((topic, partition), task) in tasks {
            drop(task.blocks);
            self.finish(&topic, partition, task.thread);
        }
    }

    /// Collects an ended task's summary or error.
    fn finish(&self, topic: &str, partition: i32, thread: JoinHandle<Result<RunSummary>>) {
        match thread.join() {
            Ok(Ok(summary)) => self.job.add(summary),
            Ok(Err(e)) => self
                .job
                .fail(e.context(format!("the task of {topic}/{partition} failed"))),
            Err(_) => self
                .job
                .fail(anyhow!("the task of {topic}/{partition} panicked")),
        }
    }

    /// Hands a block to its task, unless the task is gone.
    fn deliver(&self, topic: &str, partition: i32, block: Fetched) {
        let blocks = {
            let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
            match tasks.get(&(topic.to_owned(), partition)) {
                Some(task) => task.blocks.clone(),
                None => return,
            }
        };
        // Waits while the task is behind; a task that ended is noticed by `reap`.
        let _ = blocks.send(block);
    }

    /// Notices tasks that ended on their own (a failure).
    fn reap(&self) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let ended: Vec<_> = tasks
            .iter()
            .filter(|(_, t)| t.thread.is_finished())
            .map(|(k, _)| k.clone())
            .collect();
        let ended: Vec<_> = ended
            .into_iter()
            .filter_map(|k| tasks.remove_entry(&k))
            .collect();
        drop(tasks);
        for ((topic, partition), task) in ended {
            self.finish(&topic, partition, task.thread);
        }
    }
}

/// Runs `config.parallelism` group members in this process until `stop` is set or one
/// fails.
pub fn run(
    config: &PipelineConfig,
    kafka: &KafkaSourceConfig,
    runtime: &Arc<PluginRuntime>,
    options: &RunOptions,
    stop: &AtomicBool,
    board: &Arc<TaskBoard>,
) -> Result<RunSummary> {
    let started = std::time::Instant::now();
    let job = Arc::new(Job {
        config: config.clone(),
        kafka: kafka.clone(),
        start: kafka.start_at()?,
        runtime: runtime.clone(),
        options: RunOptions {
            lock_wait: PREVIOUS_OWNER_WAIT,
            ..options.clone()
        },
        board: board.clone(),
        finished: Mutex::new(None),
        failure: Mutex::new(None),
    });
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..config.workers())
            .map(|i| {
                let job = job.clone();
                std::thread::Builder::new()
                    .name(format!("eddy-worker-{i}"))
                    .spawn_scoped(scope, move || {
                        if let Err(e) = work(&job, i, stop) {
                            job.fail(e);
                        }
                    })
                    .context("cannot start a worker thread")
            })
            .collect::<Result<_>>()?;
        for worker in workers {
            worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        }
        anyhow::Ok(())
    })?;
    if let Some(error) = job.failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(error);
    }
    let mut summary = job
        .finished
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or_else(|| RunSummary::empty(started.elapsed()));
    summary.elapsed = started.elapsed();
    summary.stopped = true;
    Ok(summary)
}

/// One group member: polls, hands records to the partitions' tasks in blocks, commits
/// completed checkpoints' offsets, until `stop` or a failure.
fn work(job: &Arc<Job>, worker: u32, stop: &AtomicBool) -> Result<()> {
    let (commits, to_commit) = mpsc::channel();
    let member = Member {
        job: job.clone(),
        worker,
        tasks: Mutex::new(HashMap::new()),
        commits,
        rebalances: AtomicU64::new(0),
        errors: ClientErrors::default(),
    };
    let consumer: BaseConsumer<Member> = job
        .kafka
        .client_config("earliest")
        .create_with_context(member)
        .context("cannot create the Kafka consumer; check [source] and [source.properties]")?;
    let topics: Vec<&str> = job.kafka.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .context("cannot subscribe to the topics")?;
    let block_records = job.config.batch.max_records.max(HANDOVER_RECORDS);
    // Blocks being filled, per partition (a worker holds few: a linear search).
    let mut pending: Vec<(String, i32, Fetched)> = Vec::new();
    let poll_errors = Repeats::default();
    while !stop.load(Ordering::Relaxed) && !job.failed() {
        let wait = if pending.iter().all(|(_, _, b)| b.is_empty()) {
            Duration::from_millis(100)
        } else {
            Duration::ZERO
        };
        let rebalances = consumer.context().rebalances.load(Ordering::Acquire);
        let polled = consumer.poll(wait);
        if consumer.context().rebalances.load(Ordering::Acquire) != rebalances {
            pending.clear();
        }
        match polled {
            Some(Ok(m)) => {
                let (topic, partition) = (m.topic(), m.partition());
                let at = match pending
                    .iter()
                    .position(|(t, p, _)| *p == partition && t == topic)
                {
                    Some(at) => at,
                    None => {
                        pending.push((topic.to_owned(), partition, Fetched::default()));
                        pending.len() - 1
                    }
                };
                let (_, _, block) = &mut pending[at];
                let headers = m.headers().into_iter().flat_map(|h| {
                    h.iter()
                        .map(|h| (h.key.as_bytes(), h.value.unwrap_or_default()))
                });
                block.push(
                    m.offset(),
                    m.timestamp().to_millis(),
                    m.key(),
                    m.payload().unwrap_or_default(),
                    headers,
                );
                if block.len() >= block_records {
                    let block = std::mem::take(block);
                    consumer.context().deliver(topic, partition, block);
                }
                continue;
            }
            Some(Err(e)) => log_poll_error(&poll_errors, "Kafka consumer", &e),
            None => {}
        }
        for (topic, partition, block) in &mut pending {
            if !block.is_empty() {
                consumer
                    .context()
                    .deliver(topic, *partition, std::mem::take(block));
            }
        }
        commit(&consumer, &to_commit);
        consumer.context().reap();
    }
    consumer.context().release_all();
    commit(&consumer, &to_commit);
    Ok(())
}

/// Commits the offsets of completed checkpoints to the group (for lag monitoring).
fn commit(consumer: &BaseConsumer<Member>, to_commit: &Receiver<Commit>) {
    let mut list = TopicPartitionList::new();
    for c in to_commit.try_iter() {
        let _ = list.add_partition_offset(&c.topic, c.partition, Offset::Offset(c.next));
    }
    if list.count() > 0 {
        if let Err(e) = consumer.commit(&list, CommitMode::Async) {
            tracing::warn!("cannot commit offsets to the group: {e}; the next checkpoint retries");
        }
    }
}
