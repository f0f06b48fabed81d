//! One integration-test binary (linking scylla, rdkafka and kube once), one module per area.
//! Every test here talks to a real server started by `scripts/localenv.sh up`.

mod avro;
mod bad_input;
mod batching;
mod chart;
mod exactly_once;
mod fencing;
mod guarantee;
mod images;
mod lifecycle;
mod operator;
mod recovery;
mod routing;
mod secured;
mod smoke_cassandra;
mod smoke_clis;
mod smoke_kafka;
mod smoke_kube;
mod statements;
mod superseded;
mod topics;
