//! Events on the sink: one per condition transition, so `kubectl describe` and event collectors show
//! its history, and one per applied position reset.

use kube::Resource;
use kube::runtime::events::{Event, EventType};

use crate::crd::{CassandraSink, CassandraSinkStatus};
use crate::status::Kind;

use super::Context;

/// Publishes one Event about the sink; a failure to publish is only logged.
pub async fn publish(
    context: &Context,
    sink: &CassandraSink,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(error) = context
        .recorder
        .publish(&event, &sink.object_ref(&()))
        .await
    {
        tracing::debug!(%error, "publishing an event failed");
    }
}

/// Publishes an Event for each change of Ready, Stalled or Degraded (a warning when Stalled or
/// Degraded become True), so `kubectl describe` and event collectors show the sink's history.
pub async fn transitions(context: &Context, sink: &CassandraSink, status: &CassandraSinkStatus) {
    let before = sink
        .status
        .as_ref()
        .map(|status| status.conditions.as_slice())
        .unwrap_or_default();
    // Reconciling and Progressing move with Ready and Stalled; an event each would say it twice.
    let told = [Kind::Ready, Kind::Stalled, Kind::Degraded].map(Kind::as_str);
    for condition in &status.conditions {
        let changed = !before
            .iter()
            .any(|old| old.type_ == condition.type_ && old.status == condition.status);
        if !changed || !told.contains(&condition.type_.as_str()) {
            continue;
        }
        let warning = condition.type_ != Kind::Ready.as_str() && condition.status == "True";
        let type_ = if warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let note = format!(
            "{}={}: {}",
            condition.type_, condition.status, condition.message
        );
        publish(context, sink, type_, &condition.reason, note).await;
    }
}
