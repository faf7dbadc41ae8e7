//! A real `nats-server` with JetStream for the tests of distributed runs:
//! on 127.0.0.1 only, on a free port, with its store in a temporary folder;
//! killed and waited for when dropped. `.ci/run` installs Debian's
//! `nats-server` when it is missing.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `nats-server -js`, stopped when dropped.
pub struct NatsServer {
    child: Child,
    port: u16,
    _store: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a server and waits (at most 10 s) until it takes connections.
    pub fn start() -> NatsServer {
        let store = tempfile::tempdir().unwrap();
        // A port the system just handed out and took back: free.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = serve(port, store.path());
        NatsServer {
            child,
            port,
            _store: store,
        }
    }

    /// Stops the server (SIGKILL), waits `down`, and starts it again on the
    /// same port with the same store (its streams are on disk).
    pub fn restart(&mut self, down: Duration) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down);
        self.child = serve(self.port, self._store.path());
    }

    /// Stops the server for good (SIGKILL); it is not started again.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The streams the server keeps in its store (read from the store's
    /// folder: a removed stream's folder is gone).
    pub fn streams(&self) -> Vec<String> {
        let folder = self
            ._store
            .path()
            .join("jetstream")
            .join("$G")
            .join("streams");
        std::fs::read_dir(folder)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

/// Starts `nats-server` on 127.0.0.1:`port` with its store in `store`, and
/// waits (at most 10 s) until it takes connections.
fn serve(port: u16, store: &std::path::Path) -> Child {
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server is installed (apt-get install nats-server; .ci/run does it)");
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nats-server did not listen on 127.0.0.1:{port} within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `drainpipe worker` process, killed and waited for when dropped
/// (unless the test waited for it itself).
pub struct Worker {
    pub child: Option<Child>,
}

impl Worker {
    /// Starts `drainpipe worker --nats URL --workers N`. With
    /// `failpoints`, it also says which batch it takes (`-v`), on a stderr
    /// the test must read.
    pub fn start(url: &str, workers: u32, failpoints: Option<&str>) -> Worker {
        let mut cmd = crate::binary::drainpipe();
        cmd.args(["worker", "--nats", url, "--workers", &workers.to_string()]);
        if let Some(f) = failpoints {
            cmd.env("FAILPOINTS", f).arg("-v");
        }
        Worker {
            child: Some(crate::binary::spawn(cmd)),
        }
    }
}

impl Worker {
    /// Fires each time the worker's stderr says it took a batch (started
    /// with failpoints, so with `-v`); the worker's stderr is read by a
    /// thread from then on.
    pub fn took_a_batch(&mut self) -> mpsc::Receiver<()> {
        let child = self.child.as_mut().expect("the worker is running");
        let stderr = child.stderr.take().expect("stderr not taken yet");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("took batch") {
                    let _ = tx.send(());
                }
            }
        });
        rx
    }
}

/// A broker and worker processes on it, as most distributed tests want:
/// the workers are killed first when dropped, then the broker.
pub struct Cluster {
    /// The `drainpipe worker` processes.
    pub workers: Vec<Worker>,
    /// The broker.
    pub server: NatsServer,
}

impl Cluster {
    /// A fresh broker and `workers` worker processes of one step-1 thread
    /// each (`--workers 1`), as a run over several hosts has.
    pub fn start(workers: usize) -> Cluster {
        let server = NatsServer::start();
        let workers = (0..workers)
            .map(|_| Worker::start(&server.url(), 1, None))
            .collect();
        Cluster { workers, server }
    }

    /// The broker's URL.
    pub fn url(&self) -> String {
        self.server.url()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
