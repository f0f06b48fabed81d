//! Worker processes for tests: the real `cassandra-sink-worker` binary, started, killed (SIGKILL),
//! stopped (SIGTERM), frozen (SIGSTOP) and thawed (SIGCONT) like Kubernetes or a failing node would.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The worker binary next to the test binary (`target/<profile>/cassandra-sink-worker`). The test
/// command builds it before the tests run.
pub fn binary() -> PathBuf {
    project_binary("cassandra-sink-worker")
}

/// A binary of this workspace next to the test binary (`target/<profile>/<name>`).
pub fn project_binary(name: &str) -> PathBuf {
    let test_binary = std::env::current_exe().expect("test binary path");
    let profile_dir = test_binary
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let binary = profile_dir.join(name);
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo build --bins` (scripts/test.sh does)",
        binary.display()
    );
    binary
}

/// The worker of the last release that read one topic per sink, built by
/// `scripts/previous-release.sh` (scripts/test.sh runs it) into `target/previous-release/`.
pub fn previous_release() -> PathBuf {
    let test_binary = std::env::current_exe().expect("test binary path");
    let target = test_binary
        .ancestors()
        .nth(3)
        .expect("target/<profile>/deps/<test>");
    let binary = target.join("previous-release/cassandra-sink-worker");
    assert!(
        binary.is_file(),
        "{} is missing: run scripts/previous-release.sh (scripts/test.sh does)",
        binary.display()
    );
    binary
}

/// A free port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// A running worker process.
pub struct Worker {
    child: Child,
    /// Its /healthz, /readyz and /metrics address.
    pub address: SocketAddr,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
}

impl Worker {
    /// Starts `cassandra-sink-worker run --config <config>` with extra environment variables.
    pub fn start(config: &Path, name: &str, environment: &[(&str, &str)]) -> Self {
        Self::start_binary(&binary(), config, name, environment)
    }

    /// Like [`Worker::start`], with another build of the worker (the benchmark runs a release build).
    pub fn start_binary(
        binary: &Path,
        config: &Path,
        name: &str,
        environment: &[(&str, &str)],
    ) -> Self {
        let address = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = config.with_file_name(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("worker log file");
        let child = Command::new(binary)
            .args(["run", "--config"])
            .arg(config)
            .args(["--listen", &address.to_string(), "--worker-id", name])
            .envs(environment.iter().copied())
            .env("RUST_LOG", "info,scylla=warn")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .expect("start the worker binary");
        Self {
            child,
            address,
            log,
        }
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {} failed", self.pid());
    }

    /// SIGKILL, and reap it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit (graceful shutdown). A worker spawned a moment ago may not have
    /// installed its signal handlers yet, and SIGTERM would then be the default, fatal, action: the
    /// signal waits until it serves `/healthz` (its handlers come first), or has exited.
    pub fn terminate(mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.get("/healthz").is_none() && Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.signal("-TERM");
        self.wait(timeout).unwrap_or_else(|| {
            let _ = self.child.kill();
            panic!(
                "worker did not stop within {timeout:?} of SIGTERM:\n{}",
                self.log_text()
            )
        })
    }

    /// SIGSTOP: the process is frozen, as a node cut off from the network would seem to others.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT.
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Waits for the worker to stop by itself with a failure, and returns its log; panics, showing the
    /// log, if it is still running after `timeout` or exited successfully.
    pub fn wait_for_failure(&mut self, timeout: Duration) -> String {
        let status = self.wait(timeout);
        let log = self.log_text();
        match status {
            None => panic!("the worker is still running after {timeout:?}:\n{log}"),
            Some(status) => assert!(!status.success(), "the worker exited with {status}:\n{log}"),
        }
        log
    }

    /// Everything the worker logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GETs a path of its HTTP endpoint; `None` while it is not listening.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut stream =
            std::net::TcpStream::connect_timeout(&self.address, Duration::from_secs(1)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())?;
        Some((status, body))
    }

    /// The value of a metric sample (first line starting with `name`), if exposed.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics")?;
        body.lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
