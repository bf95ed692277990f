//! Every listener survives `accept()` errors: when the process runs out of file descriptors
//! the daemon keeps its listeners and serves again once descriptors are free. Also the allow
//! list, checked at accept.
//!
//! This file holds one test per concern and changes the process's descriptor limit, so it is
//! its own test binary.

use std::io::Read;
use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use xttsd::config::Config;
use xttsd::engine::{Engine, SpeechBackend, SpeechRequest};
use xttsd::serve::{Services, SharedServices};

/// The descriptor test lowers the process's descriptor limit: the other tests of this binary
/// run apart from it.
static DESCRIPTOR_LIMIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `test` apart from the other tests of this binary. The lock is taken before the test's
/// runtime is built: building one opens descriptors too, and fails while the limit is lowered.
fn apart(test: impl std::future::Future<Output = ()>) {
    let _alone = DESCRIPTOR_LIMIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(test);
}

struct Silent;

impl SpeechBackend for Silent {
    fn sample_rate(&self) -> u32 {
        24000
    }
    fn speak(&mut self, _req: &SpeechRequest, _emit: &mut dyn FnMut(Vec<f32>) -> bool) -> Result<()> {
        Ok(())
    }
}

fn services(adjust: impl FnOnce(&mut Config)) -> (SharedServices, tempfile::TempDir) {
    let spool = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.agi.spool_dir = spool.path().to_path_buf();
    adjust(&mut config);
    (Services::new(config, Engine::start(Silent, |_| Ok(()), 4)), spool)
}

/// A junk preamble gets the connection closed: proof that the server accepted it.
async fn served(addr: std::net::SocketAddr) -> bool {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"not agi\n\n").await.ok()?;
        let mut buf = [0u8; 64];
        s.read(&mut buf).await.ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), exchange).await,
        Ok(Some(0))
    )
}

fn open_descriptors() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

#[test]
fn agi_listener_survives_running_out_of_file_descriptors() {
    apart(agi_listener_survives_running_out_of_file_descriptors_apart());
}

async fn agi_listener_survives_running_out_of_file_descriptors_apart() {
    let (services, _spool) = services(|_| {});
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(xttsd::agi::serve(listener, services.agi()));
    assert!(served(addr).await, "served before the descriptors ran out");

    // A client socket made while descriptors are free; connecting it needs none.
    let client = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    // Few descriptors left, then none: the server's accept() fails with EMFILE.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let saved = limit;
    limit.rlim_cur = open_descriptors() + 32;
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    let mut fillers = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        fillers.push(f);
    }
    client.connect(&addr.into()).unwrap();
    let mut client: std::net::TcpStream = client.into();
    client.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    std::io::Write::write_all(&mut client, b"not agi\n\n").unwrap();
    // Let the server try (and fail) to accept for a while.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!server.is_finished(), "the AGI server ended on an accept error");

    drop(fillers);
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &saved) };
    // The waiting connection is served, and new ones too.
    let read = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 64];
        client.read(&mut buf)
    })
    .await
    .unwrap();
    assert!(matches!(read, Ok(0)), "the waiting connection was not served: {read:?}");
    assert!(served(addr).await, "served after the descriptors were free again");
    assert!(!server.is_finished());
}

#[test]
fn peers_outside_the_allow_list_are_closed_at_accept() {
    apart(peers_outside_the_allow_list_are_closed_at_accept_apart());
}

async fn peers_outside_the_allow_list_are_closed_at_accept_apart() {
    let (services, _spool) = services(|c| c.daemon.allow_from = vec!["10.0.0.0/8".parse().unwrap()]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(xttsd::audiosocket::serve(listener, services.audiosocket()));
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .expect("closed at once, not after the UUID timeout");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
}
