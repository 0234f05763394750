//! WebTransport's parsers of client input, for the fuzz targets
//! (`crate::fuzzing`): capsules, SETTINGS and the flow control they drive.

use super::capsule::{CAPSULE_MAX, CapsuleReader};
use super::flow::{Credit, Flow};
use super::negotiate;
use super::wire::take_varint;

/// Capsules split into reads where the input says (its first byte seeds
/// the cut points): the reader never panics, and every capsule it yields
/// came from at most the bytes it was given.
pub(crate) fn capsules(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let mut reader = CapsuleReader::default();
    let step = usize::from(seed % 16) + 1;
    let mut fed = 0;
    let mut taken = 0;
    for chunk in rest.chunks(step) {
        reader.push(chunk);
        fed += chunk.len();
        loop {
            match reader.next_capsule() {
                Ok(Some(_)) => taken += 1,
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    // Each capsule takes at least two bytes (type and length).
    assert!(taken * 2 <= fed, "{taken} capsules from {fed} bytes");
    let _ = CAPSULE_MAX;
}

/// SETTINGS as varint pairs, then the rest as flow-control capsules mixed
/// with the server's sends: the server never counts more sent than the
/// client allowed, nor opens more streams.
pub(crate) fn settings_and_flow(data: &[u8]) {
    let mut buf = data;
    let mut pairs = Vec::new();
    while pairs.len() < 16 {
        let (Some(id), Some(v)) = (take_varint(&mut buf), take_varint(&mut buf)) else {
            break;
        };
        pairs.push((id, v));
    }
    let get = |id: u64| pairs.iter().find(|(k, _)| *k == id).map(|(_, v)| *v);
    let Some(client) = negotiate::client(get) else {
        return;
    };
    let mut flow = Flow::new(&client);
    let _ = flow.opening_grants();
    let mut reader = CapsuleReader::default();
    reader.push(buf);
    let (mut max_data, mut max_uni) = client
        .limits
        .map_or((u64::MAX, u64::MAX), |l| (l.max_data, l.max_streams_uni));
    let (mut sent, mut opened) = (0u64, 0u64);
    let mut n = 0u64;
    while let Ok(Some(c)) = reader.next_capsule() {
        use super::capsule::Capsule;
        match c {
            Capsule::MaxData(v) => max_data = max_data.max(v),
            Capsule::MaxStreamsUni(v) => max_uni = max_uni.max(v),
            _ => {}
        }
        let _ = flow.on_capsule(&c);
        n += 1;
        if flow.take_data(n * 97 % 4096) == Credit::Granted {
            sent += n * 97 % 4096;
        }
        if flow.take_uni().is_ok() {
            opened += 1;
        }
        assert!(sent <= max_data, "{sent} sent past {max_data}");
        assert!(opened <= max_uni, "{opened} streams past {max_uni}");
        let _ = flow.on_read(n * 31);
    }
}
