//! One HTTP/1.1 client for every hook call: a keep-alive pool, each body
//! signed (`X-Rtgate-Signature: sha256=<hex>` of HMAC-SHA256 with the hook
//! secret), a deadline that covers waiting for a slot, connecting, sending
//! and reading the answer, a bound on calls at once per hook, and metrics.

use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;
use tokio::time::{Instant, timeout_at};
use tracing::Instrument;

use super::batch::Batcher;
use super::slots::Slots;
use crate::config::{HookName, HooksConfig, Secret};
use crate::telemetry;
use crate::telemetry::otel;

/// The signature header.
pub(crate) const SIGNATURE: &str = "x-rtgate-signature";
/// Which hook a request is for.
pub(crate) const HOOK: &str = "x-rtgate-hook";
/// How many messages a batched call carries.
pub(crate) const BATCH: &str = "x-rtgate-batch";
/// The longest a call keeps its slot after its caller stopped waiting (or
/// four times the hook timeout, if longer): then its connection is closed.
const HELD_MAX: Duration = Duration::from_secs(30);

/// Why a hook call got no usable answer. The failure policy of the hook
/// decides what happens to the request that needed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HookError {
    /// Every slot stayed taken for half the deadline.
    #[error("{0} calls already in flight for half the timeout")]
    Busy(usize),
    /// A batched hook's queue was full.
    #[error("{0} calls already waiting for a batch")]
    Queued(usize),
    /// No answer within the deadline.
    #[error("no answer within {0} ms")]
    Timeout(u128),
    /// The backend could not be reached or broke the connection.
    #[error("backend unreachable: {0}")]
    Unreachable(String),
    /// An HTTP status the hook's contract does not have.
    #[error("backend answered HTTP {0}")]
    Status(u16),
    /// An answer that is not what the contract says.
    #[error("backend's answer is not usable: {0}")]
    Answer(String),
}

impl HookError {
    /// The metric label of this failure.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Busy(_) | Self::Queued(_) => "busy",
            Self::Timeout(_) => "timeout",
            Self::Unreachable(_) => "unreachable",
            Self::Status(_) => "status",
            Self::Answer(_) => "answer",
        }
    }
}

/// An HTTP answer from a hook.
#[derive(Debug)]
pub(crate) struct Answer {
    /// Its status.
    pub(crate) status: u16,
    /// Its body, read whole (bounded).
    pub(crate) body: Bytes,
}

/// One configured hook: where it is and how many calls it may have at once.
pub(crate) struct Endpoint {
    label: &'static str,
    url: Uri,
    slots: Slots,
    allow_on_failure: bool,
    /// Set for a publish hook that takes batches.
    batch: Option<Batcher>,
}

impl Endpoint {
    /// The hook `name` at `url`, with its share of `cfg`; a batched publish
    /// hook starts its sender on `client`.
    pub(crate) fn new(name: HookName, url: Uri, cfg: &HooksConfig, client: &HookClient) -> Self {
        let label = match name {
            HookName::Connect => "connect",
            HookName::Publish => "publish",
            HookName::Join => "join",
            HookName::Event => "event",
        };
        telemetry::hook_registered(label);
        let batch = (name == HookName::Publish && cfg.publish_batch > 1).then(|| {
            Batcher::spawn(
                client.clone(),
                url.clone(),
                label,
                cfg.publish_batch,
                cfg.max_in_flight,
            )
        });
        Self {
            label,
            url,
            slots: Slots::new(cfg.max_in_flight),
            allow_on_failure: cfg.allows_on_failure(name),
            batch,
        }
    }

    /// The metric label (`connect`, `publish`, `join`).
    pub(crate) fn label(&self) -> &'static str {
        self.label
    }

    /// Whether a failure of this hook lets the request through.
    pub(crate) fn allows_on_failure(&self) -> bool {
        self.allow_on_failure
    }
}

/// The pooled client every hook call goes through.
#[derive(Clone)]
pub(crate) struct HookClient {
    http: Client<HttpConnector, Full<Bytes>>,
    secret: Option<Secret>,
    timeout: Duration,
    max_answer: usize,
}

impl HookClient {
    /// A client for `cfg`; answers above `max_answer` bytes are refused.
    pub(crate) fn new(cfg: &HooksConfig, max_answer: usize) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(cfg.timeout));
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(cfg.max_in_flight);
        if cfg.http2 {
            // One connection carries every call (streams), so a burst of
            // calls shares its writes and reads.
            builder.http2_only(true);
        }
        let http = builder.build(connector);
        Self {
            http,
            secret: cfg.secret.clone(),
            timeout: cfg.timeout,
            max_answer,
        }
    }

    /// POSTs `body` (JSON) to `ep` and hands its answer to `decide`, all
    /// within the deadline; the call is counted by how it ended (an answer
    /// `decide` cannot use counts as a failure of its kind).
    /// `caller` is who the call is for (a user, or a client address before
    /// login): it holds at most its share of the hook's slots.
    pub(crate) async fn call<T>(
        &self,
        ep: &Endpoint,
        caller: &str,
        body: Vec<u8>,
        decide: impl FnOnce(Answer) -> Result<T, HookError>,
    ) -> Result<T, HookError> {
        let started = Instant::now();
        let span = tracing::trace_span!(
            target: otel::TARGET,
            "hook",
            otel.name = %format_args!("hook.{}", ep.label),
            url = %ep.url,
            outcome = tracing::field::Empty,
        );
        let result = self
            .exchange(ep, caller, body, started + self.timeout)
            .instrument(span.clone())
            .await
            .and_then(decide);
        let outcome = match &result {
            Ok(_) => "answered",
            Err(e) => e.kind(),
        };
        span.record("outcome", outcome);
        telemetry::hook_call(ep.label, started.elapsed(), outcome);
        result
    }

    async fn exchange(
        &self,
        ep: &Endpoint,
        caller: &str,
        body: Vec<u8>,
        deadline: Instant,
    ) -> Result<Answer, HookError> {
        if let Some(batch) = &ep.batch {
            return batch.submit(body, deadline, self.timeout.as_millis()).await;
        }
        // A slot must come within half the deadline: a call that gets one
        // later has too little time left for an answer, and as slots free in
        // the order their holders started, an unbounded wait would always
        // end with a slot (and a doomed call) instead of failing busy.
        let now = Instant::now();
        let wait_until = now + deadline.saturating_duration_since(now) / 2;
        let slot = ep.slots.acquire(caller, wait_until).await?;
        // The request runs on its own, holding the slot until the backend
        // answers or the connection ends (at most HELD_MAX): a caller that
        // stops waiting does not free a slot the backend is still busy with.
        let client = self.clone();
        let (url, label) = (ep.url.clone(), ep.label);
        let hard = Instant::now() + (self.timeout * 4).max(HELD_MAX);
        let request = tokio::spawn(async move {
            let answer = client.post(&url, label, body, hard, None).await;
            drop(slot);
            answer
        });
        match timeout_at(deadline, request).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => Err(HookError::Unreachable(format!("the call failed: {e}"))),
            Err(_) => Err(HookError::Timeout(self.timeout.as_millis())),
        }
    }

    /// One signed POST of `body` (a batch of `batch` messages when given)
    /// and its answer, within `deadline`.
    pub(crate) async fn post(
        &self,
        url: &Uri,
        label: &'static str,
        body: Vec<u8>,
        deadline: Instant,
        batch: Option<usize>,
    ) -> Result<Answer, HookError> {
        let mut request = Request::post(url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(HOOK, label);
        if let Some(n) = batch {
            request = request.header(BATCH, n);
        }
        if let Some(secret) = &self.secret {
            request = request.header(SIGNATURE, sign(secret.expose().as_bytes(), &body));
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .expect("a POST with a valid URI and ASCII headers builds");
        let ms = self.timeout.as_millis();
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| HookError::Unreachable(error_chain(&e)))?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), self.max_answer)
                .collect()
                .await
                .map_err(|e| HookError::Answer(format!("reading the body: {e}")))?
                .to_bytes();
            Ok(Answer { status, body })
        };
        timeout_at(deadline, exchange)
            .await
            .map_err(|_| HookError::Timeout(ms))?
    }
}

/// `sha256=<hex>` of HMAC-SHA256 of `body` with `key`.
pub(crate) fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in tag {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

/// An error and its sources on one line (hyper's own message is terse).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
