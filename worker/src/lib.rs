//! The cassandra-sink worker: reads Kafka topics and writes each record into Apache Cassandra exactly
//! once, keeping its checkpoints in a Cassandra committer table.
//!
//! Without the default `runtime` feature this crate is only [`config`], [`statement`], [`topics`] and
//! [`checkpoint`]: the configuration types, statement checks and protocol decisions the operator shares.

#[cfg(feature = "committer")]
pub mod action;
#[cfg(feature = "runtime")]
pub mod avro;
#[cfg(feature = "runtime")]
pub mod batching;
#[cfg(feature = "committer")]
pub mod cassandra;
pub mod checkpoint;
#[cfg(feature = "committer")]
pub mod committer;
pub mod config;
#[cfg(feature = "runtime")]
pub mod dead_letter;
#[cfg(feature = "committer")]
pub mod durability;
pub mod encoding;
#[cfg(feature = "runtime")]
pub mod fault;
#[cfg(feature = "runtime")]
pub mod http;
#[cfg(feature = "committer")]
pub mod mapping;
#[cfg(feature = "runtime")]
pub mod metrics;
#[cfg(feature = "committer")]
pub mod prepared;
#[cfg(feature = "runtime")]
pub mod registry;
#[cfg(feature = "runtime")]
pub mod routing;
#[cfg(feature = "committer")]
pub mod schema;
#[cfg(feature = "runtime")]
pub mod sink;
#[cfg(feature = "runtime")]
pub mod source;
#[cfg(feature = "runtime")]
pub mod startup;
pub mod statement;
#[cfg(feature = "runtime")]
pub mod supersede;
pub mod topics;
