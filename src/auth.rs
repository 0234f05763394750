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
    /// Only these.
    Only(HashSet<Id>),
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
}

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

/// Where a login's credentials may come from besides the login frame.
#[derive(Debug, Default, Clone)]
pub struct UrlCredentials {
    /// `{userId}` of `/websocket/{userId}`.
    pub path_user: Option<String>,
    /// The `userId` query parameter.
    pub query_user: Option<String>,
    /// The `token` query parameter.
    pub query_token: Option<String>,
}

/// Checks logins. Cheap to share behind an `Arc`.
pub struct Authenticator {
    /// `None` in dev mode.
    jwt: Option<(DecodingKey, Validation)>,
}

#[derive(Deserialize)]
struct Claims {
    sub: Id,
    #[serde(default)]
    rooms: Option<RoomsClaim>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RoomsClaim {
    Star(String),
    List(Vec<Id>),
}

impl Authenticator {
    /// Dev mode when `secret` is `None`; HS256 tokens otherwise.
    pub fn new(secret: Option<&str>) -> Self {
        let jwt = secret.map(|s| {
            let mut v = Validation::new(Algorithm::HS256);
            v.set_required_spec_claims(&["exp"]);
            v.leeway = 5;
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
        let claims = jsonwebtoken::decode::<Claims>(token, key, validation)
            .map_err(|e| AuthError::Unauthorized(format!("invalid token: {e}")))?
            .claims;
        if let Some(claimed) = &login.user
            && *claimed != claims.sub
        {
            return Err(AuthError::Forbidden(
                "sendUserId does not match the token".into(),
            ));
        }
        let rooms = match claims.rooms {
            None => RoomGrant::All,
            Some(RoomsClaim::Star(s)) if s == "*" => RoomGrant::All,
            Some(RoomsClaim::Star(s)) => RoomGrant::Only(Id::parse(&s).into_iter().collect()),
            Some(RoomsClaim::List(l)) => RoomGrant::Only(l.into_iter().collect()),
        };
        Ok(Identity {
            user: claims.sub,
            rooms,
        })
    }

    fn dev_login(&self, login: &Login, url: &UrlCredentials) -> Result<Identity, AuthError> {
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
            path_user: Some("p".into()),
            query_user: Some("q".into()),
            query_token: None,
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
            a.login(&login(None, None), &UrlCredentials::default()),
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
        let id = a
            .login(&login(None, Some(good.clone())), &UrlCredentials::default())
            .unwrap();
        assert_eq!(id.user.as_str(), "42");
        assert!(
            id.rooms.allows(&Id::parse("r1").unwrap())
                && !id.rooms.allows(&Id::parse("r2").unwrap())
        );
        let url = UrlCredentials {
            query_token: Some(good.clone()),
            ..UrlCredentials::default()
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
        assert!(
            a.login(&login(None, None), &UrlCredentials::default())
                .is_err()
        );
    }

    #[test]
    fn origins() {
        assert!(origin_allowed(&[], Some("http://evil")));
        let list = vec!["https://app.example".to_string()];
        assert!(origin_allowed(&list, Some("https://app.example")));
        assert!(!origin_allowed(&list, Some("https://evil.example")));
    }
}
