//! msgType 16, push registrations: a browser's `PushSubscription` (Web
//! Push), an APNs device token or an FCM registration token, checked here
//! so a bad one is a clear 400 at registration, not a failed push later.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::command::Command;
use super::error::ProtoError;
use super::message::Wire;

/// Longest Web Push endpoint taken.
pub const MAX_ENDPOINT: usize = 2048;
/// Longest APNs or FCM token taken.
pub const MAX_TOKEN: usize = 4096;

/// Where a device takes pushes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Address {
    /// A browser's push subscription (RFC 8030, keys of RFC 8291).
    Webpush(WebPushSubscription),
    /// An APNs device token (hex).
    Apns(String),
    /// An FCM registration token.
    Fcm(String),
}

/// The parts of a `PushSubscription` a push needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebPushSubscription {
    /// The push service's URL for this subscription (https).
    pub endpoint: String,
    /// The browser's P-256 public key, uncompressed, base64url (65 bytes).
    /// Empty in a removal, which needs only the endpoint.
    pub p256dh: String,
    /// The browser's auth secret, base64url (16 bytes).
    pub auth: String,
}

impl Address {
    /// Its id among a user's registrations: the service and a hash of the
    /// endpoint or token (the same device registering again has the same).
    pub fn id(&self) -> String {
        let (prefix, key) = match self {
            Self::Webpush(s) => ("w", s.endpoint.as_str()),
            Self::Apns(t) => ("a", t.as_str()),
            Self::Fcm(t) => ("f", t.as_str()),
        };
        let hash = Sha256::digest(key.as_bytes());
        let hex: String = hash[..12].iter().map(|b| format!("{b:02x}")).collect();
        format!("{prefix}:{hex}")
    }

    /// `webpush`, `apns` or `fcm`: the metric label.
    pub fn service(&self) -> &'static str {
        match self {
            Self::Webpush(_) => "webpush",
            Self::Apns(_) => "apns",
            Self::Fcm(_) => "fcm",
        }
    }

    /// As the store keeps it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// From the store's JSON.
    pub fn from_json(s: &str) -> Option<Self> {
        serde_json::from_str(s).ok()
    }
}

/// Decodes msgType 16.
pub(super) fn decode(w: Wire) -> Result<Command, ProtoError> {
    let remove = match w.remove {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(ProtoError::bad("remove: expected true or false")),
    };
    let address = match (w.push, w.apns, w.fcm) {
        (Some(sub), None, None) => Address::Webpush(subscription(sub, remove)?),
        (None, Some(t), None) => Address::Apns(apns_token(t)?),
        (None, None, Some(t)) => Address::Fcm(fcm_token(t)?),
        _ => {
            return Err(ProtoError::bad(
                "a push registration carries one of push, apns or fcm",
            ));
        }
    };
    Ok(Command::Push { address, remove })
}

fn subscription(v: Value, remove: bool) -> Result<WebPushSubscription, ProtoError> {
    let Value::Object(mut o) = v else {
        return Err(ProtoError::bad("push: expected a PushSubscription object"));
    };
    let endpoint = match o.remove("endpoint") {
        Some(Value::String(e)) => e,
        _ => return Err(ProtoError::bad("push: endpoint must be a string")),
    };
    if endpoint.len() > MAX_ENDPOINT || !endpoint.starts_with("https://") {
        return Err(ProtoError::bad(format!(
            "push: endpoint must be an https URL of at most {MAX_ENDPOINT} bytes"
        )));
    }
    if endpoint.parse::<http::Uri>().is_err() {
        return Err(ProtoError::bad("push: endpoint is not a URL"));
    }
    if remove {
        return Ok(WebPushSubscription {
            endpoint,
            p256dh: String::new(),
            auth: String::new(),
        });
    }
    let keys = match o.remove("keys") {
        Some(Value::Object(k)) => k,
        _ => return Err(ProtoError::bad("push: keys must hold p256dh and auth")),
    };
    let key = |name: &str, len: usize| -> Result<String, ProtoError> {
        let Some(Value::String(s)) = keys.get(name) else {
            return Err(ProtoError::bad(format!(
                "push: keys.{name} must be a string"
            )));
        };
        let s = s.trim_end_matches('=');
        match URL_SAFE_NO_PAD.decode(s) {
            Ok(b) if b.len() == len => Ok(s.to_owned()),
            _ => Err(ProtoError::bad(format!(
                "push: keys.{name} must be {len} bytes in base64url"
            ))),
        }
    };
    let p256dh = key("p256dh", 65)?;
    let auth = key("auth", 16)?;
    let point = URL_SAFE_NO_PAD.decode(&p256dh).unwrap_or_default();
    if p256::PublicKey::from_sec1_bytes(&point).is_err() {
        return Err(ProtoError::bad(
            "push: keys.p256dh is not a P-256 public key",
        ));
    }
    Ok(WebPushSubscription {
        endpoint,
        p256dh,
        auth,
    })
}

fn apns_token(v: Value) -> Result<String, ProtoError> {
    match v {
        Value::String(t)
            if !t.is_empty() && t.len() <= 200 && t.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok(t.to_ascii_lowercase())
        }
        _ => Err(ProtoError::bad("apns: a device token in hex")),
    }
}

fn fcm_token(v: Value) -> Result<String, ProtoError> {
    match v {
        Value::String(t)
            if !t.is_empty()
                && t.len() <= MAX_TOKEN
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b)) =>
        {
            Ok(t)
        }
        _ => Err(ProtoError::bad("fcm: a registration token")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::command::{Inbound, decode as decode_frame};

    fn cmd(json: &str) -> Result<Command, ProtoError> {
        match decode_frame(json.as_bytes()) {
            Ok(Inbound::Command(c)) => Ok(c),
            Ok(other) => panic!("not a command: {other:?}"),
            Err(e) => Err(e.error),
        }
    }

    /// A real browser key (RFC 8291's example receiver key).
    const P256DH: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

    #[test]
    fn the_three_kinds_decode_and_name_their_registration() {
        let sub = format!(
            r#"{{"msgType":16,"push":{{"endpoint":"https://push.example/abc","expirationTime":null,"keys":{{"p256dh":"{P256DH}","auth":"{AUTH}"}}}}}}"#
        );
        let Command::Push { address, remove } = cmd(&sub).unwrap() else {
            panic!()
        };
        assert!(!remove);
        assert_eq!(address.service(), "webpush");
        assert!(address.id().starts_with("w:"));
        assert_eq!(
            Address::from_json(&address.to_json()),
            Some(address.clone())
        );
        let Command::Push { address: a, .. } =
            cmd(r#"{"msgType":16,"apns":"ABCDEF0123"}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(a, Address::Apns("abcdef0123".into()));
        let Command::Push { address: f, remove } =
            cmd(r#"{"msgType":16,"fcm":"dX1:APA91b-x_y","remove":true}"#).unwrap()
        else {
            panic!()
        };
        assert!(remove);
        assert_eq!(f.service(), "fcm");
        assert_ne!(f.id(), a.id());
        // A removal names the subscription by its endpoint alone.
        assert!(
            cmd(r#"{"msgType":16,"push":{"endpoint":"https://push.example/abc"},"remove":true}"#)
                .is_ok()
        );
    }

    #[test]
    fn bad_registrations_are_refused_with_the_reason() {
        for (frame, reason) in [
            (r#"{"msgType":16}"#, "one of push, apns or fcm"),
            (r#"{"msgType":16,"apns":"a","fcm":"b"}"#, "one of push"),
            (r#"{"msgType":16,"apns":"xyz"}"#, "hex"),
            (r#"{"msgType":16,"apns":7}"#, "hex"),
            (r#"{"msgType":16,"fcm":"a b"}"#, "registration token"),
            (r#"{"msgType":16,"push":"x"}"#, "PushSubscription"),
            (
                r#"{"msgType":16,"push":{"endpoint":"http://push.example/a","keys":{}}}"#,
                "https",
            ),
            (
                r#"{"msgType":16,"push":{"endpoint":"https://push.example/a"}}"#,
                "keys must",
            ),
            (
                r#"{"msgType":16,"push":{"endpoint":"https://p.example/a","keys":{"p256dh":"AAAA","auth":"BTBZMqHH6r4Tts7J_aSIgg"}}}"#,
                "65 bytes",
            ),
            (r#"{"msgType":16,"apns":"ab","remove":1}"#, "remove"),
        ] {
            let e = cmd(frame).unwrap_err();
            assert_eq!(e.code(), 400, "{frame}");
            assert!(e.to_string().contains(reason), "{frame}: {e}");
        }
        // A point of the right length that is not on the curve.
        let off = format!("B{}", "A".repeat(86));
        let frame = format!(
            r#"{{"msgType":16,"push":{{"endpoint":"https://p.example/a","keys":{{"p256dh":"{off}","auth":"{AUTH}"}}}}}}"#
        );
        assert!(cmd(&frame).unwrap_err().to_string().contains("P-256"));
    }
}
