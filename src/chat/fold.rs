//! History with `"view":"latest"` (PROTOCOL.md section 6): amendments
//! folded into the messages they amend (`msgBody` of the last edit,
//! `"edited":ts`, `"deleted":true` without a body, `"reactions"` with who
//! reacted), and receipts and amendments left out.

use std::collections::{BTreeMap, HashMap};

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::protocol::is_business;
use crate::protocol::message::AMEND;

/// Folds the amendments among `page` and `later` (entries after the page,
/// read to find amendments of its messages) into the page's messages.
pub(crate) fn fold(page: &[Box<RawValue>], later: &[Box<RawValue>]) -> Vec<Box<RawValue>> {
    let mut messages: Vec<Map<String, Value>> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut reactions: HashMap<usize, BTreeMap<String, Vec<String>>> = HashMap::new();
    let entries = page
        .iter()
        .map(|r| (r, true))
        .chain(later.iter().map(|r| (r, false)));
    for (raw, in_page) in entries {
        let Ok(Value::Object(m)) = serde_json::from_str::<Value>(raw.get()) else {
            continue;
        };
        let msg_type = m.get("msgType").and_then(Value::as_i64).unwrap_or(0);
        if is_business(msg_type) {
            if in_page {
                if let Some(id) = m.get("msgId").and_then(Value::as_str) {
                    by_id.insert(id.to_owned(), messages.len());
                }
                messages.push(m);
            }
            continue;
        }
        if msg_type != AMEND {
            continue;
        }
        let target = m.get("amends").and_then(Value::as_str);
        let Some(&i) = target.and_then(|t| by_id.get(t)) else {
            continue;
        };
        let who = m
            .get("sendUserId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let reaction = m.get("reaction").and_then(Value::as_str).map(str::to_owned);
        let target = &mut messages[i];
        match m.get("op").and_then(Value::as_str) {
            Some("edit") if !target.contains_key("deleted") => {
                if let Some(body) = m.get("msgBody") {
                    target.insert("msgBody".into(), body.clone());
                }
                target.insert("edited".into(), m.get("ts").cloned().unwrap_or(Value::Null));
            }
            Some("delete") => {
                target.remove("msgBody");
                target.insert("deleted".into(), Value::Bool(true));
            }
            Some("react") => {
                if let Some(r) = reaction {
                    let users = reactions.entry(i).or_default().entry(r).or_default();
                    if !users.contains(&who) {
                        users.push(who);
                    }
                }
            }
            Some("unreact") => {
                if let Some(r) = reaction
                    && let Some(users) = reactions.entry(i).or_default().get_mut(&r)
                {
                    users.retain(|u| *u != who);
                }
            }
            _ => {}
        }
    }
    for (i, mut r) in reactions {
        r.retain(|_, users| !users.is_empty());
        if !r.is_empty() {
            messages[i].insert(
                "reactions".into(),
                serde_json::to_value(r).unwrap_or_default(),
            );
        }
    }
    messages
        .into_iter()
        .filter_map(|m| serde_json::value::to_raw_value(&Value::Object(m)).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(v: Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(&v).unwrap()
    }

    #[test]
    fn amendments_fold_into_their_messages() {
        let page = vec![
            raw(
                serde_json::json!({"msgType":3,"msgId":"a","seq":1,"msgBody":"hi","sendUserId":"al"}),
            ),
            raw(
                serde_json::json!({"msgType":3,"msgId":"b","seq":2,"msgBody":"yo","sendUserId":"al"}),
            ),
            raw(
                serde_json::json!({"msgType":14,"msgId":"x","seq":3,"amends":"a","op":"edit","msgBody":"hello","ts":7,"sendUserId":"al"}),
            ),
            raw(
                serde_json::json!({"msgType":12,"msgId":"r","seq":4,"kind":"read","sendUserId":"bo"}),
            ),
        ];
        let later = vec![
            raw(
                serde_json::json!({"msgType":14,"msgId":"y","seq":5,"amends":"a","op":"react","reaction":"👍","sendUserId":"bo"}),
            ),
            raw(
                serde_json::json!({"msgType":14,"msgId":"y2","seq":6,"amends":"a","op":"react","reaction":"👍","sendUserId":"cy"}),
            ),
            raw(
                serde_json::json!({"msgType":14,"msgId":"y3","seq":7,"amends":"a","op":"unreact","reaction":"👍","sendUserId":"bo"}),
            ),
            raw(
                serde_json::json!({"msgType":14,"msgId":"z","seq":8,"amends":"b","op":"delete","sendUserId":"al"}),
            ),
            raw(
                serde_json::json!({"msgType":3,"msgId":"c","seq":9,"msgBody":"later","sendUserId":"al"}),
            ),
        ];
        let out: Vec<Value> = fold(&page, &later)
            .iter()
            .map(|r| serde_json::from_str(r.get()).unwrap())
            .collect();
        assert_eq!(out.len(), 2, "only the page's messages: {out:?}");
        assert_eq!(out[0]["msgBody"], "hello");
        assert_eq!(out[0]["edited"], 7);
        assert_eq!(out[0]["reactions"], serde_json::json!({"👍":["cy"]}));
        assert_eq!(out[1]["deleted"], true);
        assert!(out[1].get("msgBody").is_none());
    }
}

impl super::Chat {
    /// History in the latest view: up to `limit` messages after `since`
    /// with their amendments folded in (those stored within ten pages
    /// after the last of them). Answers the channel's latest seq too.
    pub(crate) async fn latest_view(
        &self,
        channel: &crate::model::Channel,
        since: u64,
        limit: usize,
    ) -> Result<(u64, Vec<Box<RawValue>>), crate::protocol::ProtoError> {
        let (mut page_entries, mut later) = (Vec::new(), Vec::new());
        let (mut at, mut messages, mut latest) = (since, 0, 0);
        // The page: entries until `limit` messages (amendments between
        // them are part of it).
        for _ in 0..super::amend::SCAN_PAGES {
            let page = self.store.read(channel, at, limit).await?;
            latest = page.latest;
            for raw in page.messages {
                let business =
                    serde_json::from_str::<Head>(raw.get()).is_ok_and(|h| is_business(h.msg_type));
                if messages == limit {
                    later.push(raw);
                    continue;
                }
                messages += usize::from(business);
                page_entries.push(raw);
            }
            if page.last == at || page.last >= page.latest || messages == limit {
                at = page.last;
                break;
            }
            at = page.last;
        }
        // Amendments stored after the page.
        for _ in 0..super::amend::SCAN_PAGES {
            if at >= latest {
                break;
            }
            let page = self.store.read(channel, at, 100).await?;
            if page.last == at {
                break;
            }
            at = page.last;
            later.extend(page.messages);
        }
        Ok((latest, fold(&page_entries, &later)))
    }
}

/// The msgType of an entry.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    msg_type: i64,
}
