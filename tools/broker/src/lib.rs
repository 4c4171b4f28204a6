//! A Kafka-protocol broker for development and tests: librdkafka's mock cluster, which
//! speaks the Kafka protocol over TCP on loopback (produce, fetch, consumer groups, offset
//! commits, idempotent producers; transactions are accepted but not isolated).
//!
//! Invariants: the broker listens on `127.0.0.1` only; it lives as long as the [`Broker`]
//! value; topics are created with a fixed partition count, and a topic a client names
//! before it exists is created with the broker's default count.

use std::ffi::{CStr, CString};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::bindings as ffi;
use rdkafka::producer::BaseProducer;
use rdkafka::ClientConfig;

/// How long a new consumer group waits for more members before its first assignment. The
/// mock cluster's default is 3 s, which makes every test and pipeline start slowly.
const GROUP_INITIAL_REBALANCE_DELAY: Duration = Duration::from_millis(100);

/// A running broker.
pub struct Broker {
    /// The client that owns the mock cluster: the cluster lives as long as it does.
    owner: BaseProducer,
    partitions: i32,
}

impl Broker {
    /// Starts a one-node broker on a free loopback port; topics created implicitly get
    /// `partitions` partitions.
    pub fn start(partitions: i32) -> Result<Self> {
        if partitions < 1 {
            bail!("a topic needs at least one partition, not {partitions}");
        }
        let owner: BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", "1")
            .create()
            .context("cannot start the mock Kafka cluster")?;
        let broker = Self { owner, partitions };
        // SAFETY: the cluster is valid while `owner` lives.
        unsafe {
            ffi::rd_kafka_mock_group_initial_rebalance_delay_ms(
                broker.cluster(),
                GROUP_INITIAL_REBALANCE_DELAY.as_millis() as i32,
            )
        };
        Ok(broker)
    }

    /// The mock cluster the owning client created.
    fn cluster(&self) -> *mut ffi::rd_kafka_mock_cluster_t {
        use rdkafka::producer::Producer;
        // SAFETY: the client handle is valid while `owner` lives.
        unsafe { ffi::rd_kafka_handle_mock_cluster(self.owner.client().native_ptr()) }
    }

    /// The address clients connect to, `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> String {
        // SAFETY: the returned string is owned by the cluster, which outlives this call.
        unsafe { CStr::from_ptr(ffi::rd_kafka_mock_cluster_bootstraps(self.cluster())) }
            .to_string_lossy()
            .into_owned()
    }

    /// Creates `topic` with `partitions` partitions (the broker's default when `None`).
    pub fn create_topic(&self, topic: &str, partitions: Option<i32>) -> Result<()> {
        let partitions = partitions.unwrap_or(self.partitions);
        if partitions < 1 {
            bail!("topic {topic} needs at least one partition, not {partitions}");
        }
        let name = CString::new(topic).context("a topic name cannot contain a NUL byte")?;
        // SAFETY: the cluster is valid and `name` outlives the call.
        let err = unsafe {
            ffi::rd_kafka_mock_topic_create(self.cluster(), name.as_ptr(), partitions, 1)
        };
        if err != ffi::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            bail!("cannot create topic {topic} with {partitions} partitions: {err:?}");
        }
        Ok(())
    }

    /// Makes the next request of API `api_key` (a Kafka protocol API key, e.g. 26 for
    /// `EndTxn`) fail with `error`, to test clients against a broker's refusals (a
    /// producer fenced by a newer instance, a coordinator moving).
    pub fn fail_next(&self, api_key: i16, error: ffi::rd_kafka_resp_err_t) {
        // SAFETY: the cluster is valid and `error` outlives the call.
        unsafe { ffi::rd_kafka_mock_push_request_errors_array(self.cluster(), api_key, 1, &error) }
    }

    /// Makes the broker refuse connections (`false`) or accept them again (`true`), to
    /// test clients against an outage.
    pub fn set_up(&self, up: bool) -> Result<()> {
        // SAFETY: the cluster is valid.
        let err = unsafe {
            if up {
                ffi::rd_kafka_mock_broker_set_up(self.cluster(), 1)
            } else {
                ffi::rd_kafka_mock_broker_set_down(self.cluster(), 1)
            }
        };
        if err != ffi::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            bail!("cannot change the mock broker's state: {err:?}");
        }
        Ok(())
    }
}
