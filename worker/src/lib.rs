//! The cassandra-sink worker: reads a Kafka topic and writes each record into Apache Cassandra exactly
//! once, keeping its checkpoints in a Cassandra committer table.
//!
//! Without the default `runtime` feature this crate is only [`config`], the configuration types the
//! operator shares.

pub mod config;
