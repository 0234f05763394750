//! What the publish path tells push about each stored direct message: the
//! seam between routing and [`crate`]'s push module, which sits beside it.

use futures_util::future::BoxFuture;

use crate::protocol::Id;

/// How many characters of a message a push's preview shows.
pub const PREVIEW_CHARS: usize = 80;

/// A direct message that was just stored in its recipient's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDirect {
    /// The recipient.
    pub to: Id,
    /// The sender.
    pub from: Id,
    /// The room it was sent in the context of, if any.
    pub room: Option<Id>,
    /// Its msgId.
    pub msg_id: String,
    /// Its seq in the recipient's inbox.
    pub seq: u64,
    /// The start of its text, when the watcher asked for previews.
    pub preview: Option<String>,
}

/// Watches stored direct messages.
pub trait InboxWatch: Send + Sync + 'static {
    /// A direct message was stored (not a resend). What it answers is
    /// awaited before the message is acknowledged: what the watcher must
    /// have written for the message to survive the node (push: the job of
    /// the window the message opens).
    fn stored(&self, message: StoredDirect) -> Option<BoxFuture<'static, ()>>;

    /// Whether [`StoredDirect::preview`] is wanted.
    fn wants_preview(&self) -> bool;

    /// Whether it watches at all (when not, the publish path skips it).
    fn watching(&self) -> bool;
}

/// The first `max` characters of a message body that is a string, or an
/// object whose `text` is one.
pub fn preview(body: Option<&serde_json::value::RawValue>, max: usize) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body?.get()).ok()?;
    let text = match &v {
        serde_json::Value::String(s) => s.as_str(),
        serde_json::Value::Object(o) => o.get("text")?.as_str()?,
        _ => return None,
    };
    Some(text.chars().take(max).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    #[test]
    fn previews_are_the_start_of_a_string_body_or_its_text() {
        let raw = |s: &str| RawValue::from_string(s.into()).unwrap();
        assert_eq!(preview(Some(&raw(r#""héllo""#)), 3), Some("hél".into()));
        assert_eq!(
            preview(Some(&raw(r#"{"text":"hi","x":1}"#)), 80),
            Some("hi".into())
        );
        assert_eq!(preview(Some(&raw(r#"{"x":1}"#)), 80), None);
        assert_eq!(preview(Some(&raw("42")), 80), None);
        assert_eq!(preview(None, 80), None);
    }
}
