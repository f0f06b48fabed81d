//! A requested position reset of a stopped sink, and the progress read from its committer table and
//! the topic's watermarks.

use kube::ResourceExt;
use kube::runtime::events::EventType;

use crate::access::Secrets;
use crate::committer;
use crate::crd::{CassandraSink, PositionsReset, SinkState};
use crate::kafka::Watermarks;
use crate::reset::Phase;
use crate::{progress as summary, reset as request};

use super::{Context, events};

/// Progress from the committer's positions table and the topic's watermarks, or `None` when the
/// positions cannot be read now (logged at debug level; the workers' readiness already tells whether
/// Cassandra is reachable).
pub async fn progress(
    sink: &CassandraSink,
    context: &Context,
    secrets: &Secrets,
    watermarks: Option<&Watermarks>,
) -> Option<crate::crd::Progress> {
    let rows = match context.sessions.committer_session(secrets, sink).await {
        Ok(session) => committer::positions(&session, sink).await,
        Err(error) => Err(error),
    };
    match rows {
        Ok(rows) => Some(summary::summarize(&rows, watermarks)),
        Err(error) => {
            tracing::debug!(sink = %sink.name_any(), %error, "progress not read");
            None
        }
    }
}

/// Applies a `cassandra-sink.io/reset-positions` request once the sink is stopped and its workers
/// are gone; returns its outcome for the status (`None` when no reset is asked for).
pub async fn reset(
    sink: &CassandraSink,
    context: &Context,
    secrets: &Secrets,
    watermarks: Option<&Watermarks>,
    workers_gone: bool,
) -> Option<PositionsReset> {
    let request = sink.annotations().get(request::ANNOTATION)?.clone();
    let previous = sink
        .status
        .as_ref()
        .and_then(|status| status.positions_reset.clone())
        .filter(|previous| previous.request == request);
    if let Some(previous) = &previous
        && previous.phase != Phase::Waiting.as_str()
    {
        return Some(previous.clone());
    }
    let outcome = |phase: Phase, message: String| {
        // An unchanged wait keeps its time, so that waiting does not rewrite the status.
        if let Some(previous) = &previous
            && previous.phase == phase.as_str()
            && previous.message == message
        {
            return previous.clone();
        }
        PositionsReset {
            request: request.clone(),
            phase: phase.as_str().to_owned(),
            message,
            time: Some(k8s_openapi::jiff::Timestamp::now().to_string()),
        }
    };
    let parsed = match request::parse(&request) {
        Ok(parsed) => parsed,
        Err(error) => return Some(outcome(Phase::Refused, error.to_string())),
    };
    if sink.spec.state != SinkState::Stopped || !workers_gone {
        return Some(outcome(
            Phase::Waiting,
            "positions are reset only while the sink is stopped: set spec.state to stopped; the \
             reset is applied once its workers are gone"
                .to_owned(),
        ));
    }
    let Some(watermarks) = watermarks else {
        return Some(outcome(
            Phase::Waiting,
            "the topic's offsets cannot be read from Kafka now; the operator retries".to_owned(),
        ));
    };
    let plan = match request::plan(&parsed, watermarks) {
        Ok(plan) => plan,
        Err(error) => return Some(outcome(Phase::Refused, error.to_string())),
    };
    let applied = match context.sessions.committer_session(secrets, sink).await {
        Ok(session) => committer::reset(session, sink, &plan).await,
        Err(error) => Err(error),
    };
    if let Err(error) = applied {
        return Some(outcome(
            Phase::Waiting,
            format!("the committer table cannot be written now ({error}); the operator retries"),
        ));
    }
    let moved = plan
        .iter()
        .map(|(partition, offset)| format!("{partition}→{offset}"))
        .collect::<Vec<_>>()
        .join(", ");
    let message = format!("committed positions set (partition→next offset): {moved}");
    tracing::info!(sink = %sink.name_any(), %message, "positions reset");
    events::publish(
        context,
        sink,
        EventType::Normal,
        "PositionsReset",
        message.clone(),
    )
    .await;
    Some(outcome(Phase::Applied, message))
}
