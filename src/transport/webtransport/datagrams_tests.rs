//! The side door over a real QUIC connection on loopback: datagrams handed
//! over in successive turns of the scheduler leave in one packet; one too
//! large for a datagram goes through the session's queue.

use std::sync::Arc;

use super::*;

/// A connected pair on loopback: the server's connection and the client's.
async fn pair() -> (
    quinn::Connection,
    quinn::Connection,
    quinn::Endpoint,
    quinn::Endpoint,
) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let server_config = quinn::ServerConfig::with_single_cert(vec![der.clone()], key).unwrap();
    let server = quinn::Endpoint::server(server_config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    client.set_default_client_config(
        quinn::ClientConfig::with_root_certificates(Arc::new(roots)).unwrap(),
    );
    let connecting = client
        .connect(server.local_addr().unwrap(), "localhost")
        .unwrap();
    let (accepted, connected) = tokio::join!(
        async { server.accept().await.unwrap().await.unwrap() },
        connecting
    );
    (accepted, connected.unwrap(), server, client)
}

#[tokio::test]
async fn datagrams_handed_over_in_successive_turns_leave_in_one_packet() {
    let (server, client, _se, _ce) = pair().await;
    let door = Datagrams::new(server.clone(), 4);
    // The handshake's last packets (tickets, connection IDs, their
    // acknowledgements) come and go first.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let before = client.stats();
    // Three publishers in step: each frame handed over in a turn of its
    // own, as the fan-outs of three sessions' messages are.
    for n in 0..3u8 {
        assert_eq!(
            door.send_volatile(&Bytes::from(vec![b'a' + n; 100])),
            Sent::Yes
        );
        tokio::task::yield_now().await;
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        let d = tokio::time::timeout(std::time::Duration::from_secs(5), client.read_datagram())
            .await
            .expect("every datagram arrives")
            .unwrap();
        got.push(d);
    }
    for (n, d) in got.iter().enumerate() {
        assert_eq!(
            wire::datagram_payload(4, d.clone()).unwrap(),
            vec![b'a' + n as u8; 100]
        );
    }
    let after = client.stats();
    assert_eq!(after.frame_rx.datagram - before.frame_rx.datagram, 3);
    assert_eq!(
        after.udp_rx.datagrams - before.udp_rx.datagrams,
        1,
        "three datagrams in one UDP packet"
    );
    assert!(door.waiting.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_frame_too_large_for_a_datagram_goes_through_the_queue() {
    let (server, _client, _se, _ce) = pair().await;
    let door = Datagrams::new(server.clone(), 0);
    let max = server.max_datagram_size().unwrap();
    assert_eq!(
        door.send_volatile(&Bytes::from(vec![0u8; max + 1])),
        Sent::No
    );
    assert_eq!(door.send_volatile(&Bytes::from(vec![0u8; 10])), Sent::Yes);
    // What fits is read again for a larger frame: the path may have grown.
    door.fits.store(20, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(door.send_volatile(&Bytes::from(vec![0u8; 100])), Sent::Yes);
    assert_eq!(door.fits.load(std::sync::atomic::Ordering::Relaxed), max);
}

#[tokio::test]
async fn once_the_connection_is_lost_frames_go_through_the_queue() {
    let (server, client, _se, _ce) = pair().await;
    let door = Datagrams::new(server.clone(), 0);
    client.close(0u32.into(), b"bye");
    server.closed().await;
    // Taken, then dropped by the flush, which learns the connection is gone.
    assert_eq!(door.send_volatile(&Bytes::from_static(b"{}")), Sent::Yes);
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
    assert!(door.waiting.lock().unwrap().is_empty());
    assert_eq!(door.send_volatile(&Bytes::from_static(b"{}")), Sent::No);
}

#[test]
fn recipients_of_one_payload_share_its_datagram() {
    let payload = Bytes::from(vec![7u8; 300]);
    let a = shared_datagram(0, &payload);
    let b = shared_datagram(0, &payload.clone());
    assert_eq!(
        a.as_ptr(),
        b.as_ptr(),
        "the second recipient's is the first's bytes"
    );
    assert_eq!(wire::datagram_payload(0, b.clone()).unwrap(), payload);
    // Another session's prefix, or other bytes at another address, are
    // built anew.
    let c = shared_datagram(8, &payload);
    assert_ne!(c.as_ptr(), a.as_ptr());
    assert_eq!(wire::datagram_payload(8, c).unwrap(), payload);
    let same_bytes_elsewhere = Bytes::from(vec![7u8; 300]);
    let d = shared_datagram(8, &same_bytes_elsewhere);
    assert_eq!(wire::datagram_payload(8, d.clone()).unwrap(), payload);
    let shorter = payload.slice(..100);
    let e = shared_datagram(8, &shorter);
    assert_eq!(wire::datagram_payload(8, e).unwrap(), shorter);
}
