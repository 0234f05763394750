//! One push to one registration: the request for its service, the
//! answer's meaning, and what follows (removal of a registration that is
//! gone, renewed credentials, a job in the store to try again later for a
//! service that cannot take it now), each counted in `rtgate_pushes_total`.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, warn};

use super::jobs::Job;
use super::{Inner, Notice, Outcome, PushError, apns, fcm, webpush};
use crate::model::now_ms;
use crate::protocol::Id;
use crate::protocol::push::Address;
use crate::store::Registration;
use crate::telemetry;

/// Tries one push takes at most.
const MAX_ATTEMPTS: u32 = 5;
/// The first backoff; it doubles (with jitter) up to [`MAX_WAIT`].
const FIRST_WAIT: Duration = Duration::from_secs(1);
/// The longest wait between tries, `Retry-After` included.
const MAX_WAIT: Duration = Duration::from_secs(120);

/// Pushes `notice` to `reg` of `user`; `attempt` tries were made before.
pub(super) async fn deliver(
    inner: Arc<Inner>,
    user: Id,
    reg: Registration,
    notice: Notice,
    attempt: u32,
) {
    let Some(address) = Address::from_json(&reg.data) else {
        warn!(%user, id = %reg.id, "an unreadable push registration was removed");
        let _ = inner.store.remove_registration(&user, reg.id).await;
        return;
    };
    let service = address.service();
    let mut renewed = false;
    loop {
        let (outcome, after) = match once(&inner, &address, &notice).await {
            Ok(answer) => answer,
            Err(e) => {
                debug!(%user, service, error = %e, "push not sent");
                match e {
                    PushError::Token(_) => (Outcome::Retry, None),
                    _ => (Outcome::Failed, None),
                }
            }
        };
        match outcome {
            Outcome::Sent => {
                telemetry::push(service, "sent");
                return;
            }
            Outcome::Gone => {
                telemetry::push(service, "gone");
                debug!(%user, service, id = %reg.id, "push registration gone; removed");
                if let Err(e) = inner.store.remove_registration(&user, reg.id).await {
                    warn!(%user, error = %e, "a gone push registration could not be removed");
                }
                return;
            }
            Outcome::Renew if !renewed => {
                renewed = true;
                renew(&inner, &address).await;
            }
            Outcome::Retry | Outcome::Renew if attempt + 1 < MAX_ATTEMPTS => {
                telemetry::push(service, "retried");
                let backoff = FIRST_WAIT * 2u32.pow(attempt);
                let wait = after
                    .unwrap_or_else(|| backoff.mul_f64(0.5 + fastrand::f64() / 2.0))
                    .min(MAX_WAIT);
                // Kept in the store: any node tries it when it is due.
                let job = Job::Retry {
                    user: user.clone(),
                    reg: reg.id.clone(),
                    notice: notice.payload(),
                    attempt: attempt + 1,
                };
                let due = now_ms() + wait.as_millis() as u64;
                if let Err(e) = inner.store.schedule_push(due, job.to_json()).await {
                    telemetry::push(service, "failed");
                    warn!(%user, service, error = %e, "a push to try again could not be stored");
                }
                return;
            }
            _ => {
                telemetry::push(service, "failed");
                warn!(%user, service, ?outcome, attempts = attempt + 1, "push given up");
                return;
            }
        }
    }
}

/// One request and what its answer means (with `Retry-After`).
async fn once(
    inner: &Inner,
    address: &Address,
    notice: &Notice,
) -> Result<(Outcome, Option<Duration>), PushError> {
    let s = &inner.services;
    let unconfigured = |what: &str| PushError::Address(format!("{what} is not configured"));
    let req = match address {
        Address::Webpush(sub) => {
            let vapid = s.webpush.as_ref().ok_or_else(|| unconfigured("Web Push"))?;
            if !webpush::allowed(&sub.endpoint, &inner.webpush_hosts) {
                return Err(PushError::Address("endpoint host not allowed".into()));
            }
            vapid.request(sub, notice.payload().to_string().as_bytes())?
        }
        Address::Apns(token) => s
            .apns
            .as_ref()
            .ok_or_else(|| unconfigured("APNs"))?
            .request(token, notice)?,
        Address::Fcm(token) => {
            let fcm = s.fcm.as_ref().ok_or_else(|| unconfigured("FCM"))?;
            let access = fcm.access_token(&s.client).await?;
            fcm.request(&access, token, notice)?
        }
    };
    let answer = match s.client.send(req).await {
        Ok(a) => a,
        Err(e) => {
            debug!(error = %e, "push service unreachable");
            return Ok((Outcome::Retry, None));
        }
    };
    let outcome = match address {
        Address::Webpush(_) => webpush::outcome(answer.status),
        Address::Apns(_) => apns::outcome(answer.status, &answer.body),
        Address::Fcm(_) => fcm::outcome(answer.status, &answer.body),
    };
    Ok((outcome, super::client::retry_after(&answer.headers)))
}

async fn renew(inner: &Inner, address: &Address) {
    match address {
        Address::Apns(_) => {
            if let Some(a) = &inner.services.apns {
                a.renew();
            }
        }
        Address::Fcm(_) => {
            if let Some(f) = &inner.services.fcm {
                f.renew().await;
            }
        }
        Address::Webpush(_) => {}
    }
}
