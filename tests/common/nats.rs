//! A real `nats-server` with JetStream for the tests of distributed runs:
//! on 127.0.0.1 only, on a free port, with its store in a temporary folder;
//! killed and waited for when dropped. `.ci/run` installs Debian's
//! `nats-server` when it is missing.
#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Asserts that each file of `names` is byte-identical in the output
/// folders `single` (the single-process run's) and `other`, naming the
/// file and `other` (`"distributed"`, `"TLS"`, ...) when one differs.
pub fn same_files(single: &Path, other_dir: &Path, names: &[&str], other: &str) {
    for name in names {
        let a = std::fs::read(single.join(name)).unwrap();
        let b = std::fs::read(other_dir.join(name)).unwrap();
        assert!(
            a == b,
            "{name} differs between the single-process and the {other} run"
        );
    }
}

/// A running `nats-server -js`, stopped when dropped.
pub struct NatsServer {
    child: Child,
    port: u16,
    _store: tempfile::TempDir,
    /// More arguments for `nats-server` (TLS), kept for a restart.
    extra: Vec<OsString>,
    /// `nats` or `tls`.
    scheme: &'static str,
}

impl NatsServer {
    /// Starts a server and waits (at most 10 s) until it takes connections.
    pub fn start() -> NatsServer {
        NatsServer::start_with(Vec::new(), "nats")
    }

    /// Starts a server that speaks only TLS, with the server certificate
    /// of `certificates` (its URL is `tls://`).
    pub fn start_tls(certificates: &Certificates) -> NatsServer {
        let extra = vec![
            "--tls".into(),
            "--tlscert".into(),
            certificates.server_cert().into(),
            "--tlskey".into(),
            certificates.server_key().into(),
        ];
        NatsServer::start_with(extra, "tls")
    }

    /// Starts a server in operator mode, trusting `accounts`'s operator and
    /// knowing its account: only its users get in (`--nats-creds`).
    pub fn start_with_accounts(accounts: &Accounts) -> NatsServer {
        NatsServer::start_with(vec!["-c".into(), accounts.config().into()], "nats")
    }

    fn start_with(extra: Vec<OsString>, scheme: &'static str) -> NatsServer {
        let store = tempfile::tempdir().unwrap();
        // A port the system just handed out and took back: free.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = serve(port, store.path(), &extra);
        NatsServer {
            child,
            port,
            _store: store,
            extra,
            scheme,
        }
    }

    /// Stops the server (SIGKILL), waits `down`, and starts it again on the
    /// same port with the same store (its streams are on disk).
    pub fn restart(&mut self, down: Duration) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down);
        self.child = serve(self.port, self._store.path(), &self.extra);
    }

    /// Stops the server for good (SIGKILL); it is not started again.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The runs' streams the server keeps in its store (read from the
    /// store's folder: a removed stream's folder is gone); the stream of
    /// run-name claims, `DRAINPIPE_CLAIMS`, is not a run's.
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
                    .filter(|name| name.starts_with("DRAINPIPE-"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }
}

/// Starts `nats-server` on 127.0.0.1:`port` with its store in `store`, and
/// waits (at most 10 s) until it takes connections.
fn serve(port: u16, store: &Path, extra: &[OsString]) -> Child {
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .args(extra)
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
        Worker::start_with(url, workers, failpoints, &[])
    }

    /// As [`Worker::start`], with more arguments (`--nats-ca FILE`).
    pub fn start_with(
        url: &str,
        workers: u32,
        failpoints: Option<&str>,
        extra: &[&OsStr],
    ) -> Worker {
        let mut cmd = crate::binary::drainpipe();
        cmd.args(["worker", "--nats", url, "--workers", &workers.to_string()]);
        cmd.args(extra);
        if let Some(f) = failpoints {
            cmd.env("FAILPOINTS", f).arg("-v");
        }
        Worker {
            child: Some(crate::binary::spawn(cmd)),
        }
    }
}

impl Worker {
    /// Each line of the worker's stderr, as it comes; the worker's stderr
    /// is read by a thread from then on.
    pub fn lines(&mut self) -> mpsc::Receiver<String> {
        let child = self.child.as_mut().expect("the worker is running");
        let stderr = child.stderr.take().expect("stderr not taken yet");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        rx
    }

    /// Fires each time the worker's stderr says it took a batch (started
    /// with failpoints, so with `-v`); the worker's stderr is read by a
    /// thread from then on.
    pub fn took_a_batch(&mut self) -> mpsc::Receiver<()> {
        let lines = self.lines();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in lines {
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

/// A certificate authority made for one test, and a server certificate it
/// signed for 127.0.0.1 and localhost, as PEM files in a temporary folder:
/// made at test time (rcgen), so no tool beyond the build is needed.
pub struct Certificates {
    dir: tempfile::TempDir,
}

impl Certificates {
    /// Makes the authority and the server's certificate and key.
    pub fn new() -> Certificates {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "drainpipe test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let ca = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("server-key.pem"), key.serialize_pem()).unwrap();
        Certificates { dir }
    }

    /// The authority's certificate, for `--nats-ca`.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server's certificate.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server's private key.
    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server-key.pem")
    }
}

/// A NATS operator, one account with JetStream and one user of it, made
/// for one test: the JWTs signed with nkeys here, no tool needed. Gives
/// the server's configuration and the user's credentials file, the format
/// `nsc` writes.
pub struct Accounts {
    dir: tempfile::TempDir,
    /// The user's nkey seed: the secret of the credentials file.
    pub seed: String,
}

impl Accounts {
    /// Makes the keys, the JWTs and the two files.
    pub fn new() -> Accounts {
        let operator = nkeys::KeyPair::new_operator();
        let account = nkeys::KeyPair::new_account();
        // JetStream in operator mode needs a system account.
        let system = nkeys::KeyPair::new_account();
        let user = nkeys::KeyPair::new_user();
        let unlimited = serde_json::json!({
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
            "wildcards": true, "conn": -1, "leaf": -1,
            "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1
        });
        let operator_jwt = jwt(
            &operator,
            &operator.public_key(),
            serde_json::json!({"type": "operator", "version": 2}),
        );
        let account_jwt = jwt(
            &operator,
            &account.public_key(),
            serde_json::json!({
                "limits": unlimited,
                "default_permissions": {"pub": {}, "sub": {}},
                "type": "account", "version": 2
            }),
        );
        let system_jwt = jwt(
            &operator,
            &system.public_key(),
            serde_json::json!({"type": "account", "version": 2}),
        );
        let user_jwt = jwt(
            &account,
            &user.public_key(),
            serde_json::json!({
                "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                "type": "user", "version": 2
            }),
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("server.conf"),
            format!(
                "operator: \"{operator_jwt}\"\nsystem_account: {system}\nresolver: MEMORY\n\
                 resolver_preload: {{\n  {account}: \"{account_jwt}\"\n  {system}: \"{system_jwt}\"\n}}\n",
                account = account.public_key(),
                system = system.public_key(),
            ),
        )
        .unwrap();
        let seed = user.seed().unwrap();
        std::fs::write(
            dir.path().join("user.creds"),
            format!(
                "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
                 -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
            ),
        )
        .unwrap();
        Accounts { dir, seed }
    }

    /// The server's configuration file.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("server.conf")
    }

    /// The user's credentials file, for `--nats-creds`.
    pub fn creds(&self) -> PathBuf {
        self.dir.path().join("user.creds")
    }
}

/// A NATS JWT for `subject`, signed by `issuer`, with `nats` as its
/// NATS-specific claims.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, nats: serde_json::Value) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "jti": format!("test{subject}"),
        "iat": now,
        "iss": issuer.public_key(),
        "name": "test",
        "sub": subject,
        "nats": nats,
    });
    let payload = b64.encode(serde_json::to_vec(&claims).unwrap());
    let signed = format!("{header}.{payload}");
    let signature = b64.encode(issuer.sign(signed.as_bytes()).unwrap());
    format!("{signed}.{signature}")
}
