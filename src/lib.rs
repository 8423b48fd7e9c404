//! Sediment: a Kafka-compatible broker on a durable local log.
pub mod log;
