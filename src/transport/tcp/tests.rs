//! The shared socket over a real loopback pair: corked frames leave in one
//! write after the turn, order against the session's writes, partial
//! writes kept whole, aborts.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use tungstenite::protocol::frame::coding::Control;

/// A connected pair: the server's end wrapped, the client's plain.
async fn pair() -> (SharedTcp, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (server, _) = l.accept().await.unwrap();
    (SharedTcp::new(server, None), client)
}

fn text_header(len: usize) -> ([u8; 14], usize) {
    frame_header(OpCode::Data(Data::Text), len)
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let (h, n) = text_header(payload.len());
    [&h[..n], payload].concat()
}

#[test]
fn headers_are_rfc_6455_text_frames() {
    assert_eq!(&text_header(5).0[..2], &[0x81, 5]);
    assert_eq!(&text_header(126).0[..4], &[0x81, 126, 0, 126]);
    assert_eq!(text_header(70_000).1, 10);
    assert_eq!(&text_header(70_000).0[2..10], &70_000u64.to_be_bytes());
    let (ping, n) = frame_header(OpCode::Control(Control::Ping), 0);
    assert_eq!(&ping[..n], &[0x89, 0]);
    assert_eq!(
        &frame_header(OpCode::Data(Data::Binary), 3).0[..2],
        &[0x82, 3]
    );
}

#[tokio::test]
async fn frames_handed_over_in_one_turn_leave_in_one_write_after_it() {
    let (s, mut client) = pair().await;
    let d = s.sender();
    let a = Bytes::from_static(b"{\"n\":1}");
    let b = Bytes::from_static(b"{\"n\":2}");
    assert_eq!(d.send_volatile(&a), Sent::Yes);
    assert_eq!(d.send_volatile(&b), Sent::Yes);
    // Nothing is written before the task that handed them over yields.
    assert_eq!(s.0.out().buf.len(), frame(&a).len() + frame(&b).len());
    let mut got = vec![0u8; frame(&a).len() + frame(&b).len()];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(got, [frame(&a), frame(&b)].concat());
    assert!(s.0.out().buf.is_empty());
    assert!(!s.0.out().corked);
}

#[tokio::test]
async fn a_session_write_goes_out_behind_what_the_fan_out_handed_over() {
    let (mut s, mut client) = pair().await;
    let d = s.sender();
    let v = Bytes::from_static(b"{\"v\":1}");
    assert_eq!(d.send_volatile(&v), Sent::Yes);
    // The session writes before the cork's flush ran: its bytes follow.
    s.write_all(b"own").await.unwrap();
    s.flush().await.unwrap();
    let mut got = vec![0u8; frame(&v).len() + 3];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(got, [&frame(&v)[..], b"own"].concat());
}

#[tokio::test]
async fn a_write_the_socket_takes_in_part_is_finished_before_any_frame_of_the_fan_out() {
    let (mut s, mut client) = pair().await;
    let d = s.sender();
    // Larger than what the socket takes while the client does not read.
    let big = vec![b'x'; 16 << 20];
    let wrote = s.write(&big).await.unwrap();
    assert_eq!(wrote, big.len(), "taken whole");
    assert!(!s.0.out().buf.is_empty(), "the rest waits in the buffer");
    // Over the limit: the fan-out's frames go through the queue instead.
    let small = Bytes::from_static(b"{}");
    assert_eq!(d.send_volatile(&small), Sent::No);
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        client.read_to_end(&mut all).await.unwrap();
        all
    });
    s.write_all(b"after").await.unwrap();
    s.flush().await.unwrap();
    s.shutdown().await.unwrap();
    let all = reader.await.unwrap();
    assert_eq!(all.len(), big.len() + 5);
    assert!(all == [&big[..], b"after"].concat());
}

#[tokio::test]
async fn an_aborted_socket_takes_nothing_more() {
    let (s, mut client) = pair().await;
    let d = s.sender();
    s.abort();
    assert_eq!(d.send_volatile(&Bytes::from_static(b"{}")), Sent::No);
    drop(d);
    drop(s);
    let mut buf = [0u8; 8];
    // A reset (linger 0), or an end: never data.
    match client.read(&mut buf).await {
        Ok(n) => assert_eq!(n, 0),
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
    }
}

#[tokio::test]
async fn the_sessions_frames_keep_their_place_among_the_fan_outs_and_leave_no_buffer_behind() {
    let (mut s, mut client) = pair().await;
    let d = s.sender();
    assert_eq!(
        d.send_volatile(&Bytes::from_static(b"{\"n\":1}")),
        Sent::Yes
    );
    s.push(OpCode::Data(Data::Text), b"{\"n\":2}").unwrap();
    s.push(OpCode::Data(Data::Binary), b"\x81\xa1n\x03")
        .unwrap();
    s.flush().await.unwrap();
    // The session's flush wrote everything and gave the memory back.
    assert_eq!(s.0.out().buf.capacity(), 0);
    let want = [
        frame(b"{\"n\":1}"),
        frame(b"{\"n\":2}"),
        vec![0x82, 4, 0x81, 0xa1, b'n', 0x03],
    ]
    .concat();
    let mut got = vec![0u8; want.len()];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(got, want);
    s.abort();
    assert!(s.push(OpCode::Data(Data::Text), b"{}").is_err());
}
