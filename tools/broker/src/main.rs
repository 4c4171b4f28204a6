//! `eddy-dev-broker [--partitions N] [--topic NAME[:PARTITIONS]]...`: runs a Kafka-protocol
//! broker on loopback for development and tests (see the library's docs) until stopped.
//!
//! Its first line on stdout is the bootstrap address, `127.0.0.1:PORT`. Commands on stdin,
//! one per line, each answered with `ok` or `error: ...`: `topic NAME [PARTITIONS]` creates a
//! topic, `down` and `up` take the broker offline and back. At the end of stdin it keeps
//! running until it is killed (Ctrl-C).

use std::io::{BufRead, Write};

use anyhow::{bail, Context, Result};
use eddy_dev_broker::Broker;

const USAGE: &str = "usage: eddy-dev-broker [--partitions N] [--topic NAME[:PARTITIONS]]...";

fn main() -> Result<()> {
    let mut partitions = 1;
    let mut topics = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .with_context(|| format!("{name} needs a value; {USAGE}"))
        };
        match arg.as_str() {
            "--partitions" => {
                let n = value("--partitions")?;
                partitions = n
                    .parse()
                    .with_context(|| format!("--partitions must be a number, not {n:?}"))?;
            }
            "--topic" => topics.push(value("--topic")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}; {USAGE}"),
        }
    }
    let broker = Broker::start(partitions)?;
    for topic in &topics {
        create(&broker, topic.split(':'))?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", broker.bootstrap())?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        let outcome = match words.next() {
            None => continue,
            Some("topic") => create(&broker, words),
            Some("down") => broker.set_up(false),
            Some("up") => broker.set_up(true),
            Some(other) => Err(anyhow::anyhow!(
                "unknown command {other:?}: use `topic NAME [PARTITIONS]`, `down` or `up`"
            )),
        };
        match outcome {
            Ok(()) => writeln!(out, "ok")?,
            Err(e) => writeln!(out, "error: {e:#}")?,
        }
        out.flush()?;
    }
    loop {
        std::thread::park();
    }
}

/// Creates the topic `NAME [PARTITIONS]` (or `NAME:PARTITIONS`) given as words.
fn create<'a>(broker: &Broker, mut words: impl Iterator<Item = &'a str>) -> Result<()> {
    let name = words
        .next()
        .context("name the topic: `topic NAME [PARTITIONS]`")?;
    let partitions = words
        .next()
        .map(|n| {
            n.parse()
                .with_context(|| format!("partitions must be a number, not {n:?}"))
        })
        .transpose()?;
    broker.create_topic(name, partitions)
}
