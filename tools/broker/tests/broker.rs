//! The `eddy-dev-broker` binary: its first line is a bootstrap address a Kafka client can
//! use, topics are created on the command line and on stdin, and bad commands say what
//! is wrong.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

#[test]
fn prints_its_address_first_and_creates_topics() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy-dev-broker"))
        .args(["--partitions", "2", "--topic", "six:6"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let address = lines.next().unwrap().unwrap();
    assert!(address.starts_with("127.0.0.1:"), "{address}");

    writeln!(stdin, "topic three 3").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "ok");
    writeln!(stdin, "topic none 0").unwrap();
    assert!(lines.next().unwrap().unwrap().starts_with("error: "));
    writeln!(stdin, "frobnicate").unwrap();
    assert!(lines.next().unwrap().unwrap().contains("unknown command"));

    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &address)
        .create()
        .unwrap();
    let timeout = Duration::from_secs(5);
    for (topic, partitions) in [("six", 6), ("three", 3)] {
        let metadata = client.fetch_metadata(Some(topic), timeout).unwrap();
        assert_eq!(
            metadata.topics()[0].partitions().len(),
            partitions,
            "{topic}"
        );
    }
    drop(stdin);
    // It keeps running after its stdin ends, until it is stopped.
    std::thread::sleep(Duration::from_millis(200));
    assert!(child.try_wait().unwrap().is_none());
    child.kill().unwrap();
    child.wait().unwrap();
}
