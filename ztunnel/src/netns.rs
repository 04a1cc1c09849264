//! Sockets in other network namespaces.
//!
//! A [`Netns`] owns one OS thread that has `setns(2)`-ed into a pod's network
//! namespace and runs small jobs there (create a socket, run iptables). A
//! socket stays in the namespace it was created in, so listeners and
//! outbound sockets made on that thread serve the pod while being driven by
//! the normal tokio runtime. This is how ztunnel's in-pod mode works.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use nix::sched::CloneFlags;
use socket2::{Domain, Protocol, Socket, Type};

/// Packets from ztunnel's own sockets in a pod carry this mark so the
/// capture rules let them through (Istio uses the same value, 0x539).
pub const ZTUNNEL_MARK: u32 = 0x539;

/// Errors entering a network namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The namespace file could not be opened.
    #[error("cannot open network namespace {path}: {source} (does the pod still exist?)")]
    Open {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// `setns` failed.
    #[error("cannot enter network namespace {path}: {source} (ztunnel needs CAP_SYS_ADMIN)")]
    Enter {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: nix::Error,
    },
    /// The namespace thread is gone.
    #[error("network namespace thread for {0} exited")]
    ThreadGone(PathBuf),
}

type Job = Box<dyn FnOnce() + Send>;

/// A thread living in a network namespace.
pub struct Netns {
    path: PathBuf,
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Netns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netns").field("path", &self.path).finish()
    }
}

impl Netns {
    /// Opens `path` (e.g. `/var/run/netns/pod-a` or `/proc/<pid>/ns/net`)
    /// and starts the thread.
    pub fn open(path: &Path) -> Result<Self, NetnsError> {
        let file = File::open(path).map_err(|source| NetnsError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().chars().take(10).collect::<String>())
            .unwrap_or_default();
        let thread = std::thread::Builder::new()
            .name(format!("ns-{name}"))
            .spawn(move || {
                let entered = nix::sched::setns(&file, CloneFlags::CLONE_NEWNET);
                let ok = entered.is_ok();
                let _ = ready_tx.send(entered);
                if ok {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                }
            })
            .map_err(|source| NetnsError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                path: path.to_path_buf(),
                jobs: Some(tx),
                thread: Some(thread),
            }),
            Ok(Err(source)) => Err(NetnsError::Enter {
                path: path.to_path_buf(),
                source,
            }),
            Err(_) => Err(NetnsError::ThreadGone(path.to_path_buf())),
        }
    }

    /// The namespace path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` inside the namespace and returns its result (blocks the
    /// caller for the duration of `f`; keep `f` short).
    pub fn run<T, F>(&self, f: F) -> Result<T, NetnsError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs
            .as_ref()
            .ok_or_else(|| NetnsError::ThreadGone(self.path.clone()))?
            .send(job)
            .map_err(|_| NetnsError::ThreadGone(self.path.clone()))?;
        rx.recv()
            .map_err(|_| NetnsError::ThreadGone(self.path.clone()))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A non-blocking listening socket bound to `addr`.
pub fn listen_socket(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// A non-blocking, unconnected TCP socket for `dst`'s address family,
/// optionally marked with [`ZTUNNEL_MARK`].
pub fn connect_socket(dst: SocketAddr, mark: bool) -> io::Result<std::net::TcpStream> {
    let s = Socket::new(Domain::for_address(dst), Type::STREAM, Some(Protocol::TCP))?;
    if mark {
        s.set_mark(ZTUNNEL_MARK)?;
    }
    s.set_tcp_nodelay(true)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}
