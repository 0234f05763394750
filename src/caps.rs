//! Connection caps shared by both transports (held by the gateway, checked
//! by the admission path): at most `max` connections in
//! all and `per_ip` from one client address. A connection is counted from
//! its accept until its last byte (an upgraded WebSocket or a QUIC session
//! included), by a [`ConnPermit`] that it carries.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CapHit {
    /// The node holds `--max-conns` connections.
    #[error("the node is at its connection cap")]
    Global,
    /// The client's address holds `--max-conns-per-ip` connections.
    #[error("this address is at its connection cap")]
    PerIp,
}

impl CapHit {
    /// A label for metrics.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::PerIp => "per_ip",
        }
    }
}

/// Counts connections against the caps. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub(crate) struct ConnLimiter {
    max: usize,
    /// 0: no cap per address.
    per_ip: usize,
    /// The total and the count per address, under one lock: a check and its
    /// increment are one step (a std mutex: never held across an await).
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// One counted connection; dropping it frees its place.
#[derive(Debug)]
pub(crate) struct ConnPermit {
    limiter: Arc<ConnLimiter>,
    /// The address it counts against, if the per-address cap applies.
    ip: Option<IpAddr>,
    /// Whether it counts in all too (an address permit for a client behind
    /// a trusted proxy does not: its connection was counted at accept).
    total: bool,
}

impl ConnLimiter {
    /// Caps of `max` connections and `per_ip` per address (0: none).
    pub(crate) fn new(max: usize, per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            per_ip,
            counts: Mutex::default(),
        })
    }

    /// Counts a new connection from `ip`, or says which cap refuses it.
    /// `per_ip` false exempts it from the per-address cap (a trusted proxy
    /// carries many clients).
    pub(crate) fn acquire(
        self: &Arc<Self>,
        ip: IpAddr,
        per_ip: bool,
    ) -> Result<ConnPermit, CapHit> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= self.max {
            return Err(CapHit::Global);
        }
        let keyed = per_ip && self.per_ip > 0;
        if keyed {
            let n = c.by_ip.entry(ip).or_default();
            if *n >= self.per_ip {
                return Err(CapHit::PerIp);
            }
            *n += 1;
        }
        c.total += 1;
        Ok(ConnPermit {
            limiter: self.clone(),
            ip: keyed.then_some(ip),
            total: true,
        })
    }

    /// Counts a client that came through a trusted proxy against its own
    /// address (its connection, the proxy's, was counted in all at accept).
    /// `None` when there is no per-address cap.
    pub(crate) fn acquire_address(
        self: &Arc<Self>,
        ip: IpAddr,
    ) -> Result<Option<ConnPermit>, CapHit> {
        if self.per_ip == 0 {
            return Ok(None);
        }
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = c.by_ip.entry(ip).or_default();
        if *n >= self.per_ip {
            return Err(CapHit::PerIp);
        }
        *n += 1;
        Ok(Some(ConnPermit {
            limiter: self.clone(),
            ip: Some(ip),
            total: false,
        }))
    }

    /// Connections counted now.
    pub(crate) fn current(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut c = self
            .limiter
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if self.total {
            c.total -= 1;
        }
        if let Some(ip) = self.ip
            && let Some(n) = c.by_ip.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                c.by_ip.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_in_all_and_frees_on_drop() {
        let l = ConnLimiter::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let p1 = l.acquire(a, true).unwrap();
        let _p2 = l.acquire(a, true).unwrap();
        assert_eq!(l.acquire(a, true).unwrap_err(), CapHit::PerIp);
        let _p3 = l.acquire(b, true).unwrap();
        assert_eq!(l.acquire(b, true).unwrap_err(), CapHit::Global);
        drop(p1);
        assert_eq!(l.current(), 2);
        let _p4 = l.acquire(a, true).unwrap();
        assert_eq!(l.current(), 3);
    }

    #[test]
    fn a_forwarded_client_counts_against_its_own_address_only() {
        let l = ConnLimiter::new(10, 2);
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        let _conns: Vec<_> = (0..3).map(|_| l.acquire(proxy, false).unwrap()).collect();
        let a = l.acquire_address(client).unwrap();
        let _b = l.acquire_address(client).unwrap();
        assert_eq!(l.acquire_address(client).unwrap_err(), CapHit::PerIp);
        assert_eq!(l.current(), 3, "counted in all at accept only");
        drop(a);
        assert!(l.acquire_address(client).unwrap().is_some());
        assert!(
            ConnLimiter::new(10, 0)
                .acquire_address(client)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn an_exempt_peer_counts_in_all_only_and_zero_means_no_address_cap() {
        let l = ConnLimiter::new(10, 1);
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..5).map(|_| l.acquire(proxy, false).unwrap()).collect();
        assert_eq!(l.current(), 5);
        drop(held);
        let open = ConnLimiter::new(10, 0);
        let held: Vec<_> = (0..10)
            .map(|_| open.acquire(proxy, true).unwrap())
            .collect();
        assert_eq!(open.acquire(proxy, true).unwrap_err(), CapHit::Global);
        drop(held);
        assert_eq!(open.current(), 0);
    }
}
