//! Who a client is and what it may do: dev-mode identities, HS256 JWTs with
//! a `rooms` claim, browser `Origin` checks and the server API key.

use std::collections::HashSet;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::protocol::{CloseCode, Id, Login, ProtoError};

/// The rooms a user may join and publish to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomGrant {
    /// Any room (dev mode, a token without a `rooms` claim, or `"*"`).
    All,
    /// Only these. Boxed: every session holds its identity for its life,
    /// and the box keeps the set's 48 bytes out of its task.
    #[expect(
        clippy::box_collection,
        reason = "the box keeps the set's header out of every session's task"
    )]
    Only(Box<HashSet<Id>>),
}

impl RoomGrant {
    /// Whether `room` is allowed.
    pub fn allows(&self, room: &Id) -> bool {
        match self {
            Self::All => true,
            Self::Only(set) => set.contains(room),
        }
    }
}

/// An authenticated user.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The user id.
    pub user: Id,
    /// What rooms it may use.
    pub rooms: RoomGrant,
    /// When the credentials expire (Unix seconds); `None` for identities
    /// that do not (dev mode).
    pub expires: Option<u64>,
    /// Opaque data about the user from the connect hook, carried by
    /// presence answers and events.
    pub info: Option<Box<serde_json::value::RawValue>>,
}

/// How long past its `exp` a token is still accepted, at login and in a
/// live session (clock skew between the issuer and this node).
pub(crate) const EXP_LEEWAY_SECS: u64 = 3;

/// A failed login, with the error and close code it gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No usable credentials: error 401, close 4401.
    #[error("{0}")]
    Unauthorized(String),
    /// Credentials for someone else: error 403, close 4403.
    #[error("{0}")]
    Forbidden(String),
}

impl AuthError {
    /// The error frame and close code for this failure.
    pub fn to_protocol(&self) -> (ProtoError, CloseCode) {
        match self {
            Self::Unauthorized(r) => (ProtoError::Unauthorized(r.clone()), CloseCode::Unauthorized),
            Self::Forbidden(r) => (ProtoError::Forbidden(r.clone()), CloseCode::Forbidden),
        }
    }
}

/// Where a login's credentials may come from besides the login frame, and
/// who is asking.
#[derive(Debug, Clone)]
pub struct UrlCredentials {
    /// The transport the client came on.
    pub transport: crate::model::TransportKind,
    /// The client's address (through trusted proxies): dev-mode identities
    /// are only for loopback clients.
    pub client: std::net::IpAddr,
    /// `{userId}` of `/websocket/{userId}`.
    pub path_user: Option<String>,
    /// The `userId` query parameter.
    pub query_user: Option<String>,
    /// The `token` query parameter.
    pub query_token: Option<String>,
    /// The request's `Cookie` header, kept only for a connect hook.
    pub cookie: Option<String>,
    /// The browser's `Origin`, kept only for a connect hook.
    pub origin: Option<String>,
    /// The request's `Authorization` header, kept only for a connect hook.
    pub authorization: Option<String>,
    /// The WebTransport draft the client speaks, for the login reply.
    pub wt_draft: Option<&'static str>,
}

/// Checks logins. Cheap to share behind an `Arc`.
pub struct Authenticator {
    /// `None` in dev mode.
    jwt: Option<(DecodingKey, Validation)>,
}

#[derive(Deserialize)]
struct Claims {
    sub: Id,
    exp: u64,
    /// Absent: every room. Present (`null` included): checked by [`grant`].
    #[serde(default, deserialize_with = "present")]
    rooms: Option<serde_json::Value>,
}

/// A claim that is present, even as `null`.
pub(crate) fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// The rooms a `rooms` claim grants: an array of room ids, or `"*"`;
/// anything else (`null`, a number, one id as a string) is refused.
pub(crate) fn grant(claim: Option<serde_json::Value>) -> Result<RoomGrant, AuthError> {
    use serde_json::Value;
    let bad =
        || AuthError::Unauthorized("rooms claim must be an array of room ids or \"*\"".into());
    match claim {
        None => Ok(RoomGrant::All),
        Some(Value::String(s)) if s == "*" => Ok(RoomGrant::All),
        Some(v @ Value::Array(_)) => serde_json::from_value::<Vec<Id>>(v)
            .map(|l| RoomGrant::Only(Box::new(l.into_iter().collect())))
            .map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

impl Authenticator {
    /// Dev mode when `secret` is `None`; HS256 tokens otherwise.
    pub fn new(secret: Option<&str>) -> Self {
        let jwt = secret.map(|s| {
            let mut v = Validation::new(Algorithm::HS256);
            v.set_required_spec_claims(&["exp"]);
            v.leeway = EXP_LEEWAY_SECS;
            (DecodingKey::from_secret(s.as_bytes()), v)
        });
        Self { jwt }
    }

    /// True without a JWT secret.
    pub fn dev_mode(&self) -> bool {
        self.jwt.is_none()
    }

    /// Establishes the identity of a login.
    pub fn login(&self, login: &Login, url: &UrlCredentials) -> Result<Identity, AuthError> {
        let Some((key, validation)) = &self.jwt else {
            return self.dev_login(login, url);
        };
        let token = login
            .token
            .as_deref()
            .or(url.query_token.as_deref())
            .ok_or_else(|| AuthError::Unauthorized("a token is required".into()))?;
        let identity = Self::verify(token, key, validation)?;
        if let Some(claimed) = &login.user
            && *claimed != identity.user
        {
            return Err(AuthError::Forbidden(
                "sendUserId does not match the token".into(),
            ));
        }
        Ok(identity)
    }

    /// New credentials for a live session of `user` (msgType 10): a bad
    /// token is 401, a token for another user 403.
    pub fn refresh(&self, token: &str, user: &Id) -> Result<Identity, AuthError> {
        let Some((key, validation)) = &self.jwt else {
            return Err(AuthError::Unauthorized(
                "this server takes no tokens (dev mode)".into(),
            ));
        };
        let identity = Self::verify(token, key, validation)?;
        if identity.user != *user {
            return Err(AuthError::Forbidden(
                "the new token is for another user".into(),
            ));
        }
        Ok(identity)
    }

    fn verify(token: &str, key: &DecodingKey, v: &Validation) -> Result<Identity, AuthError> {
        let claims = jsonwebtoken::decode::<Claims>(token, key, v)
            .map_err(|e| AuthError::Unauthorized(format!("invalid token: {e}")))?
            .claims;
        Ok(Identity {
            rooms: grant(claims.rooms)?,
            user: claims.sub,
            expires: Some(claims.exp),
            info: None,
        })
    }

    fn dev_login(&self, login: &Login, url: &UrlCredentials) -> Result<Identity, AuthError> {
        if !url.client.is_loopback() {
            return Err(AuthError::Unauthorized(
                "dev-mode identities are for loopback clients only; set --jwt-secret".into(),
            ));
        }
        let from_url = |s: &Option<String>, what: &str| -> Result<Option<Id>, AuthError> {
            s.as_deref()
                .map(|v| Id::parse(v).map_err(|e| AuthError::Unauthorized(format!("{what}: {e}"))))
                .transpose()
        };
        let user = match &login.user {
            Some(u) => u.clone(),
            None => from_url(&url.path_user, "path userId")?
                .or(from_url(&url.query_user, "query userId")?)
                .ok_or_else(|| AuthError::Unauthorized("no identity: send sendUserId".into()))?,
        };
        Ok(Identity {
            user,
            rooms: RoomGrant::All,
            expires: None,
            info: None,
        })
    }
}

/// Whether a browser `Origin` may connect: any when the list is empty.
pub(crate) fn origin_allowed(allowed: &[String], origin: Option<&str>) -> bool {
    if allowed.is_empty() {
        return true;
    }
    match origin {
        // Not a browser: origin checks protect browsers' users only.
        None => true,
        Some(o) => allowed
            .iter()
            .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(o)),
    }
}

/// Compares two secrets in time that does not depend on where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn token(secret: &str, claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    const LOCAL: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn none() -> UrlCredentials {
        UrlCredentials {
            transport: crate::model::TransportKind::WebSocket,
            client: LOCAL,
            path_user: None,
            query_user: None,
            query_token: None,
            cookie: None,
            origin: None,
            authorization: None,
            wt_draft: None,
        }
    }

    fn login(user: Option<&str>, token: Option<String>) -> Login {
        Login {
            user: user.map(|u| Id::parse(u).unwrap()),
            token,
            ..Login::default()
        }
    }

    #[test]
    fn dev_identity_order() {
        let a = Authenticator::new(None);
        let url = UrlCredentials {
            transport: crate::model::TransportKind::WebSocket,
            client: LOCAL,
            path_user: Some("p".into()),
            query_user: Some("q".into()),
            query_token: None,
            cookie: None,
            origin: None,
            authorization: None,
            wt_draft: None,
        };
        assert_eq!(
            a.login(&login(Some("s"), None), &url)
                .unwrap()
                .user
                .as_str(),
            "s"
        );
        assert_eq!(
            a.login(&login(None, None), &url).unwrap().user.as_str(),
            "p"
        );
        let url = UrlCredentials {
            path_user: None,
            ..url
        };
        assert_eq!(
            a.login(&login(None, None), &url).unwrap().user.as_str(),
            "q"
        );
        assert!(matches!(
            a.login(&login(None, None), &none()),
            Err(AuthError::Unauthorized(_))
        ));
        // A client that is not on loopback gets no dev identity.
        let far = UrlCredentials {
            client: "203.0.113.9".parse().unwrap(),
            ..none()
        };
        assert!(matches!(
            a.login(&login(Some("s"), None), &far),
            Err(AuthError::Unauthorized(_))
        ));
    }

    #[test]
    fn jwt_checks() {
        let a = Authenticator::new(Some("k"));
        let exp = (crate::model::now_ms() / 1000) + 60;
        let good = token(
            "k",
            serde_json::json!({"sub": 42, "exp": exp, "rooms": ["r1"]}),
        );
        let id = a.login(&login(None, Some(good.clone())), &none()).unwrap();
        assert_eq!(id.expires, Some(exp));
        assert_eq!(id.user.as_str(), "42");
        assert!(
            id.rooms.allows(&Id::parse("r1").unwrap())
                && !id.rooms.allows(&Id::parse("r2").unwrap())
        );
        let url = UrlCredentials {
            query_token: Some(good.clone()),
            ..none()
        };
        assert!(a.login(&login(Some("42"), None), &url).is_ok());
        assert!(matches!(
            a.login(&login(Some("43"), Some(good)), &url),
            Err(AuthError::Forbidden(_))
        ));
        let expired = token("k", serde_json::json!({"sub": "u", "exp": 1000}));
        assert!(matches!(
            a.login(&login(None, Some(expired)), &url),
            Err(AuthError::Unauthorized(_))
        ));
        let wrong_key = token("other", serde_json::json!({"sub": "u", "exp": exp}));
        assert!(matches!(
            a.login(&login(None, Some(wrong_key)), &url),
            Err(AuthError::Unauthorized(_))
        ));
        let no_exp = token("k", serde_json::json!({"sub": "u"}));
        assert!(a.login(&login(None, Some(no_exp)), &url).is_err());
        let star = token(
            "k",
            serde_json::json!({"sub": "u", "exp": exp, "rooms": "*"}),
        );
        assert_eq!(
            a.login(&login(None, Some(star)), &url).unwrap().rooms,
            RoomGrant::All
        );
        assert!(a.login(&login(None, None), &none()).is_err());
    }

    #[test]
    fn rooms_claim_is_an_array_of_ids_or_a_star() {
        let a = Authenticator::new(Some("k"));
        let exp = (crate::model::now_ms() / 1000) + 60;
        let with = |rooms: serde_json::Value| {
            let t = token(
                "k",
                serde_json::json!({"sub": "u", "exp": exp, "rooms": rooms}),
            );
            a.login(&login(None, Some(t)), &none())
        };
        for bad in [
            serde_json::json!(null),
            serde_json::json!(5),
            serde_json::json!("r1"),
            serde_json::json!({"r1": true}),
            serde_json::json!([true]),
            serde_json::json!(["a b"]),
        ] {
            assert!(
                matches!(with(bad.clone()), Err(AuthError::Unauthorized(_))),
                "rooms {bad} was accepted"
            );
        }
        assert_eq!(with(serde_json::json!("*")).unwrap().rooms, RoomGrant::All);
        assert_eq!(
            with(serde_json::json!([])).unwrap().rooms,
            RoomGrant::Only(Default::default())
        );
    }

    #[test]
    fn refresh_keeps_the_user() {
        let a = Authenticator::new(Some("k"));
        let exp = (crate::model::now_ms() / 1000) + 600;
        let u = Id::parse("u").unwrap();
        let t = token(
            "k",
            serde_json::json!({"sub": "u", "exp": exp, "rooms": ["r"]}),
        );
        let id = a.refresh(&t, &u).unwrap();
        assert_eq!(
            (id.expires, id.rooms.allows(&Id::parse("r").unwrap())),
            (Some(exp), true)
        );
        let other = token("k", serde_json::json!({"sub": "v", "exp": exp}));
        assert!(matches!(
            a.refresh(&other, &u),
            Err(AuthError::Forbidden(_))
        ));
        assert!(matches!(
            a.refresh("junk", &u),
            Err(AuthError::Unauthorized(_))
        ));
        assert!(Authenticator::new(None).refresh(&t, &u).is_err());
    }

    #[test]
    fn origins() {
        assert!(origin_allowed(&[], Some("http://evil")));
        let list = vec!["https://app.example".to_string()];
        assert!(origin_allowed(&list, Some("https://app.example")));
        assert!(!origin_allowed(&list, Some("https://evil.example")));
    }
}
