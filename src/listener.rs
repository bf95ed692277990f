//! Accepting TCP connections the same way on every port: at most `max_connections` at once
//! (a semaphore permit travels with each connection's task), peers outside the allow list
//! closed at once, TCP keepalive on every socket, and an `accept()` error (file descriptors
//! exhausted, a connection aborted before it was accepted) logged and retried with a growing
//! pause instead of ending the daemon.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::shutdown::Shutdown;

/// First pause after a failed accept; doubled on each further failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Idle time before keepalive probes, and between them: a peer that vanished without a FIN
/// (a rebooted PBX) is noticed within about a minute.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// Who may connect and how many at once.
#[derive(Clone)]
pub struct Gate {
    /// Names the listener in logs.
    pub name: &'static str,
    limit: Arc<Semaphore>,
    /// Empty: everyone.
    allow: Arc<[IpNet]>,
}

impl Gate {
    pub fn new(name: &'static str, max_connections: usize, allow: &[IpNet]) -> Self {
        Self {
            name,
            limit: Arc::new(Semaphore::new(max_connections.max(1))),
            allow: allow.into(),
        }
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&ip))
    }

    /// Connections that may still be accepted now.
    pub fn available(&self) -> usize {
        self.limit.available_permits()
    }
}

/// An accepted connection and the permit it holds until its task ends.
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub permit: OwnedSemaphorePermit,
}

/// Accepts the next connection the gate lets through; None once the drain has begun.
pub async fn accept(listener: &TcpListener, gate: &Gate, shutdown: &Shutdown) -> Option<Accepted> {
    let mut backoff = FIRST_BACKOFF;
    loop {
        // Wait for room first, so a full listener leaves new peers in the kernel's backlog.
        let permit = tokio::select! {
            permit = gate.limit.clone().acquire_owned() => permit.ok()?,
            _ = shutdown.draining() => return None,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.draining() => return None,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = FIRST_BACKOFF;
                if !gate.allows(peer.ip()) {
                    crate::metrics::METRICS.refused_connections.inc();
                    tracing::warn!(listener = gate.name, %peer, "connection refused: not in daemon.allow_from");
                    continue;
                }
                set_keepalive(&stream);
                let _ = stream.set_nodelay(true);
                return Some(Accepted { stream, peer, permit });
            }
            Err(e) => {
                tracing::warn!(listener = gate.name, error = %e, pause_ms = backoff.as_millis() as u64, "accept failed; retrying");
                drop(permit);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.draining() => return None,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Serves every accepted connection with `handle` in its own tracked task until the drain
/// begins. Never fails: listener errors are retried.
pub async fn serve<F, Fut>(listener: TcpListener, gate: Gate, shutdown: Shutdown, mut handle: F)
where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    while let Some(Accepted { stream, peer, permit }) = accept(&listener, &gate, &shutdown).await {
        let task = handle(stream, peer);
        shutdown.spawn(async move {
            task.await;
            drop(permit);
        });
    }
    tracing::info!(listener = gate.name, "stopped accepting");
}

fn set_keepalive(stream: &TcpStream) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE)
        .with_interval(KEEPALIVE);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "cannot set TCP keepalive");
    }
}

/// Whether TCP keepalive is on for `stream` (for tests).
pub fn has_keepalive(stream: &TcpStream) -> bool {
    socket2::SockRef::from(stream).keepalive().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_matches_networks_and_mapped_v4() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        let gate = Gate::new("t", 1, &nets);
        assert!(gate.allows("10.1.2.3".parse().unwrap()));
        assert!(gate.allows("::ffff:10.1.2.3".parse().unwrap()));
        assert!(gate.allows("::1".parse().unwrap()));
        assert!(!gate.allows("192.168.1.1".parse().unwrap()));
        assert!(Gate::new("t", 1, &[]).allows("192.168.1.1".parse().unwrap()));
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_wait_and_refused_peers_are_closed() {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let gate = Gate::new("t", 1, &[]);
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let server = tokio::spawn(serve(listener, gate.clone(), shutdown.clone(), move |mut s, _| {
            let seen_tx = seen_tx.clone();
            async move {
                let _ = seen_tx.send(has_keepalive(&s));
                // Hold the connection until the peer closes it.
                let mut buf = [0u8; 1];
                let _ = s.read(&mut buf).await;
            }
        }));
        let first = TcpStream::connect(addr).await.unwrap();
        assert!(seen.recv().await.unwrap(), "keepalive is set on accepted sockets");
        let _second = TcpStream::connect(addr).await.unwrap();
        // The second waits in the backlog while the first holds the only permit.
        assert!(tokio::time::timeout(Duration::from_millis(200), seen.recv())
            .await
            .is_err());
        drop(first);
        assert!(tokio::time::timeout(Duration::from_secs(2), seen.recv()).await.is_ok());
        shutdown.begin(Duration::ZERO);
        tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .unwrap()
            .unwrap();
    }
}
