//! User and room identifiers: accepted as JSON strings or integers, validated,
//! and always written back as strings.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest id accepted, in characters (PROTOCOL.md §9).
pub const MAX_ID_CHARS: usize = 128;

/// A validated user or room id.
///
/// Cheap to clone (an `Arc<str>`), because the hub keeps ids as map keys and
/// copies them into every envelope. `123` and `"123"` decode to the same id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(Arc<str>);

/// Why a value is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is the empty string.
    #[error("id is empty")]
    Empty,
    /// The id is longer than [`MAX_ID_CHARS`].
    #[error("id is longer than {MAX_ID_CHARS} characters")]
    TooLong,
    /// The id holds whitespace or a control character.
    #[error("id holds a non-printable or whitespace character")]
    NotPrintable,
}

impl Id {
    /// Validates `s` as an id: 1 to 128 printable characters, no whitespace.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.chars().count() > MAX_ID_CHARS {
            return Err(IdError::TooLong);
        }
        if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(IdError::NotPrintable);
        }
        Ok(Self(Arc::from(s)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Id {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or integer id")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Id::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                Id::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                Id::parse(&v.to_string()).map_err(E::custom)
            }
        }
        d.deserialize_any(IdVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_strings_are_one_id() {
        let a: Id = serde_json::from_str("123").unwrap();
        let b: Id = serde_json::from_str("\"123\"").unwrap();
        assert_eq!(a, b);
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"123\"");
    }

    #[test]
    fn rejects_bad_ids() {
        assert_eq!(Id::parse(""), Err(IdError::Empty));
        assert_eq!(Id::parse(&"x".repeat(129)), Err(IdError::TooLong));
        assert!(Id::parse(&"é".repeat(128)).is_ok());
        assert_eq!(Id::parse("a b"), Err(IdError::NotPrintable));
        assert_eq!(Id::parse("a\u{0}"), Err(IdError::NotPrintable));
        assert!(serde_json::from_str::<Id>("1.5").is_err());
        assert!(serde_json::from_str::<Id>("true").is_err());
        assert!(serde_json::from_str::<Id>("null").is_err());
    }
}
