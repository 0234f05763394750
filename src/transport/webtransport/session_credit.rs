//! The CONNECT stream's side of a session: the client's capsules, and the
//! WebTransport flow control that waits on them.

use std::future::poll_fn;

use bytes::{Buf, Bytes};

use super::{WebTransportTransport, io, write_frame};
use crate::transport::TransportError;
use crate::transport::webtransport::capsule::Capsule;
use crate::transport::webtransport::flow::Credit;

/// What the client's capsules asked for.
#[derive(Default)]
pub(super) struct Capsules {
    /// It closed the session.
    pub(super) closed: Option<(u32, String)>,
    /// Capsules to send it (fresh credit).
    pub(super) replies: Vec<Bytes>,
}

impl WebTransportTransport {
    /// Reads the whole capsules received so far.
    pub(super) fn take_capsules(&mut self) -> Result<Capsules, TransportError> {
        let mut out = Capsules::default();
        while let Some(c) = self
            .capsules
            .next_capsule()
            .map_err(|e| TransportError::Closed(e.to_string()))?
        {
            if let Capsule::Close(code, reason) = c {
                out.closed = Some((code, reason));
                break;
            }
            out.replies.extend(self.flow.on_capsule(&c));
        }
        Ok(out)
    }

    /// Sends capsules on the CONNECT stream.
    pub(super) async fn send_capsules(
        &mut self,
        capsules: Vec<Bytes>,
    ) -> Result<(), TransportError> {
        for c in capsules {
            self.connect.send_data(c).await.map_err(io)?;
        }
        Ok(())
    }

    /// Waits until the client's flow control lets `frame_len` bytes (and
    /// their length prefix) go out, reading its capsules meanwhile: the
    /// session's task is blocked here, so nothing else would. A client that
    /// never grants is a reader that stopped (the write deadline closes it).
    pub(super) async fn data_credit(&mut self, frame_len: usize) -> Result<(), TransportError> {
        loop {
            match self.flow.take_data(frame_len as u64 + 4) {
                Credit::Granted => return Ok(()),
                Credit::Blocked(tell) => self.send_capsules(tell.into_iter().collect()).await?,
            }
            let data = poll_fn(|cx| self.connect.poll_recv_data(cx)).await;
            let Ok(Some(mut data)) = data else {
                return Err(TransportError::Closed(
                    "the client ended the session".into(),
                ));
            };
            self.capsules.push(&data.copy_to_bytes(data.remaining()));
            let got = self.take_capsules()?;
            if let Some((code, reason)) = got.closed {
                return Err(TransportError::Closed(format!(
                    "the client closed the session: {code} {reason}"
                )));
            }
            self.send_capsules(got.replies).await?;
        }
    }

    /// One frame on the session's own stream.
    pub(super) async fn write_main(&mut self, frame: Bytes) -> Result<(), TransportError> {
        self.data_credit(frame.len()).await?;
        write_frame(&mut self.writer, frame).await
    }
}
