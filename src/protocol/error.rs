//! Every error a client can see, mapped to its protocol code, reason and
//! (where the error ends the connection) close code, in one place.

use std::fmt;

/// A connection close code (PROTOCOL.md §8). WebSocket close codes and
/// WebTransport session close codes use the same numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: normal closure.
    Normal,
    /// 1001: the node is shutting down; reconnect and resume with `since`.
    GoingAway,
    /// 4008: the session's outbound queue overflowed.
    SlowConsumer,
    /// 4401: authentication failed.
    Unauthorized,
    /// 4403: the identity claimed does not match the credentials.
    Forbidden,
    /// 4408: no login in time, or no inbound traffic for three heartbeats.
    Timeout,
    /// 4413: a frame exceeded the size limit.
    TooLarge,
    /// 4429: the session kept exceeding its rate limit.
    RateLimited,
    /// A code the backend chose (`POST /api/disconnect`): 1000, 1001 or
    /// 3000 to 4999.
    Other(u16),
}

impl CloseCode {
    /// The close code `n` as the server API takes it: a code of the
    /// protocol, or one of the ranges applications may use.
    pub fn from_api(n: u16) -> Option<Self> {
        let known = [
            Self::Normal,
            Self::GoingAway,
            Self::SlowConsumer,
            Self::Unauthorized,
            Self::Forbidden,
            Self::Timeout,
            Self::TooLarge,
            Self::RateLimited,
        ];
        match known.into_iter().find(|c| c.code() == n) {
            Some(c) => Some(c),
            None if (3000..=4999).contains(&n) => Some(Self::Other(n)),
            None => None,
        }
    }

    /// The numeric close code.
    pub fn code(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::GoingAway => 1001,
            Self::SlowConsumer => 4008,
            Self::Unauthorized => 4401,
            Self::Forbidden => 4403,
            Self::Timeout => 4408,
            Self::TooLarge => 4413,
            Self::RateLimited => 4429,
            Self::Other(n) => n,
        }
    }

    /// A short close reason, sent with the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Normal => "bye",
            Self::GoingAway => "server going away",
            Self::SlowConsumer => "slow consumer",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Timeout => "timeout",
            Self::TooLarge => "frame too large",
            Self::RateLimited => "rate limited",
            Self::Other(_) => "disconnected by the server",
        }
    }

    /// A stable label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::GoingAway => "going_away",
            Self::SlowConsumer => "slow_consumer",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Timeout => "timeout",
            Self::TooLarge => "too_large",
            Self::RateLimited => "rate_limited",
            Self::Other(_) => "server_api",
        }
    }
}

/// An error answered to a client with a msgType 9 frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// 400: malformed JSON, a field of the wrong type, an invalid id, an
    /// unknown msgType below 100, or a message with no destination.
    #[error("{0}")]
    BadRequest(String),
    /// 401: a frame other than login before login, or failed authentication.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: not allowed (a room outside the token's claim, not a member).
    #[error("{0}")]
    Forbidden(String),
    /// 404: the message a receipt or an amendment names is not there
    /// (unknown, or gone with retention).
    #[error("{0}")]
    NotFound(String),
    /// 409: a limit on the session's state (too many rooms).
    #[error("{0}")]
    Conflict(String),
    /// 413: the frame exceeded the size limit.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the offending frame.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// 429: the session sends faster than its rate limit.
    #[error("rate limit exceeded: {0} frames per second")]
    RateLimited(u32),
    /// 429: a per-user budget is spent (sessions, messages, recipients).
    #[error("{0}")]
    Limit(String),
    /// 503: the store or broker cannot take the request now; retry later.
    #[error("{0}")]
    Unavailable(String),
}

impl ProtoError {
    /// The numeric error code carried in the msgType 9 frame.
    pub fn code(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Unauthorized(_) => 401,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::Conflict(_) => 409,
            Self::TooLarge { .. } => 413,
            Self::RateLimited(_) | Self::Limit(_) => 429,
            Self::Unavailable(_) => 503,
        }
    }

    /// Shorthand for a 400 with a reason.
    pub fn bad(reason: impl fmt::Display) -> Self {
        Self::BadRequest(reason.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_protocol() {
        assert_eq!(ProtoError::bad("x").code(), 400);
        assert_eq!(ProtoError::TooLarge { size: 2, limit: 1 }.code(), 413);
        assert_eq!(ProtoError::RateLimited(50).code(), 429);
        assert_eq!(CloseCode::SlowConsumer.code(), 4008);
        assert_eq!(CloseCode::Timeout.code(), 4408);
        assert_eq!(CloseCode::GoingAway.code(), 1001);
    }
}
