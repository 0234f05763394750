//! Events the backend refused on their own, repeatedly: taken out of the
//! outbox so the ones behind them flow, kept aside here (the newest
//! hundred, per node) for an operator to see at `/api/events` and on
//! `/admin`, logged and counted.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;
use utoipa::ToSchema;

use crate::model::now_ms;

/// Quarantined events kept for inspection, per node.
const KEPT: usize = 100;
/// Bytes of an event's body kept with it.
const EXCERPT: usize = 512;

/// One quarantined event.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Quarantined {
    /// The event's `id`, if its body had one.
    pub(crate) id: Option<String>,
    /// The event's `type`, if its body had one.
    #[serde(rename = "type")]
    pub(crate) kind: Option<String>,
    /// Why: the backend's last answer.
    pub(crate) reason: String,
    /// When it was set aside, ms since the epoch.
    pub(crate) at: u64,
    /// The start of its body.
    pub(crate) excerpt: String,
}

/// The node's quarantined events, newest last.
#[derive(Debug, Default)]
pub(crate) struct Quarantine {
    kept: Mutex<VecDeque<Quarantined>>,
}

impl Quarantine {
    /// Sets `body` aside, refused for `reason`.
    pub(crate) fn add(&self, body: &str, reason: String) -> Quarantined {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        let mut end = body.len().min(EXCERPT);
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        let q = Quarantined {
            id: text("id"),
            kind: text("type"),
            reason,
            at: now_ms(),
            excerpt: body[..end].to_owned(),
        };
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back(q.clone());
        q
    }

    /// The events set aside, oldest first.
    pub(crate) fn list(&self) -> Vec<Quarantined> {
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}
