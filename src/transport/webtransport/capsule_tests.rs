use super::*;

fn read_all(bytes: &[u8]) -> Result<Vec<Capsule>, CapsuleError> {
    let mut r = CapsuleReader::default();
    r.push(bytes);
    let mut out = Vec::new();
    while let Some(c) = r.next_capsule()? {
        out.push(c);
    }
    Ok(out)
}

#[test]
fn close_capsule_round_trips_and_caps_the_reason() {
    let c = close(4401, "unauthorized");
    assert_eq!(&c[..2], &[0x68, 0x43], "0x2843 as a two-byte varint");
    assert_eq!(
        read_all(&c),
        Ok(vec![Capsule::Close(4401, "unauthorized".into())])
    );
    let long = "é".repeat(700);
    let Ok(v) = read_all(&close(1001, &long)) else {
        panic!("a long close capsule is refused")
    };
    let [Capsule::Close(1001, reason)] = &v[..] else {
        panic!("{v:?}")
    };
    assert_eq!(reason.len(), 1024);
}

#[test]
fn capsules_split_across_reads_are_reassembled() {
    let mut all = max_data(1 << 20).to_vec();
    all.extend_from_slice(&close(7, "bye"));
    let mut r = CapsuleReader::default();
    let mut got = Vec::new();
    for byte in &all {
        r.push(&[*byte]);
        while let Some(c) = r.next_capsule().unwrap() {
            got.push(c);
        }
    }
    assert_eq!(
        got,
        vec![Capsule::MaxData(1 << 20), Capsule::Close(7, "bye".into())]
    );
}

#[test]
fn flow_control_capsules_carry_their_values() {
    let mut all = Vec::new();
    for c in [
        max_data(8 << 20),
        max_streams_bidi(1),
        data_blocked(99),
        streams_blocked_uni(100),
    ] {
        all.extend_from_slice(&c);
    }
    // WT_MAX_STREAMS (uni) and WT_STREAMS_BLOCKED (bidi) as a client sends them.
    for (kind, v) in [(0x190B_4D40u64, 150u64), (0x190B_4D43, 1)] {
        let mut b = BytesMut::new();
        put(&mut b, kind);
        put(&mut b, 2);
        put(&mut b, v);
        if v < 64 {
            // A one-byte varint: the length says one byte.
            b.truncate(b.len() - 2);
            put(&mut b, 1);
            put(&mut b, v);
        }
        all.extend_from_slice(&b);
    }
    assert_eq!(
        read_all(&all),
        Ok(vec![
            Capsule::MaxData(8 << 20),
            Capsule::MaxStreamsBidi(1),
            Capsule::DataBlocked(99),
            Capsule::StreamsBlocked(100),
            Capsule::MaxStreamsUni(150),
            Capsule::StreamsBlocked(1),
        ])
    );
}

#[test]
fn unknown_capsules_are_skipped_and_bad_ones_refused() {
    // A DRAIN (0x78ae, empty), a GREASE-like unknown type with a body, then
    // a close.
    let mut b = vec![0x80, 0x00, 0x78, 0xae, 0x00, 0x40, 0x29, 0x03, 1, 2, 3];
    b.extend_from_slice(&close(7, "x"));
    assert_eq!(
        read_all(&b),
        Ok(vec![
            Capsule::Drain,
            Capsule::Unknown(0x29),
            Capsule::Close(7, "x".into())
        ])
    );
    // Incomplete: nothing yet, and nothing lost.
    assert_eq!(read_all(&b[..b.len() - 1]).map(|v| v.len()), Ok(2));
    // A close without its code, a value with trailing bytes, a huge length.
    assert_eq!(
        read_all(&[0x68, 0x43, 0x02, 0, 0]),
        Err(CapsuleError::Malformed(0x2843))
    );
    let mut two = max_data(5).to_vec();
    let n = two.len();
    two[n - 2] = 2;
    two.push(0);
    assert_eq!(read_all(&two), Err(CapsuleError::Malformed(0x190B_4D3D)));
    assert_eq!(
        read_all(&[0x29, 0x80, 0x10, 0x00, 0x00]),
        Err(CapsuleError::TooLong(0x10_0000))
    );
}
