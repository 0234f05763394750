//! The control API's body parsers, for the fuzz targets (`crate::fuzzing`):
//! each body type read as its extractor reads it, then what the handler
//! checks of it.

use super::control::{Disconnect, Membership};
use super::messages::Broadcast;

/// A body for `/api/disconnect`, `/api/join` (and leave), `/api/broadcast`.
pub(crate) fn body(data: &[u8]) {
    fn read<T: serde::de::DeserializeOwned>(data: &[u8]) -> Option<T> {
        let mut de = serde_json::Deserializer::from_slice(data);
        serde_path_to_error::deserialize(&mut de).ok()
    }
    if let Some(d) = read::<Disconnect>(data) {
        let _ = d.checked();
    }
    if let Some(m) = read::<Membership>(data) {
        let _ = m.checked();
    }
    if let Some(b) = read::<Broadcast>(data)
        && let Ok(each) = b.messages()
    {
        // What `send_traced` makes of each.
        for m in each.iter().take(4) {
            let _ = crate::protocol::decode_publish(m);
        }
    }
}
