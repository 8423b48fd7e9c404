//! Test harness: runs the real `sediment` binary on free ports with its own
//! data dir, and kills or restarts it like an operator (or a crash) would.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Broker {
    pub data_dir: PathBuf,
    /// The address it listens on (loopback, or one inside a test's network
    /// namespace).
    pub host: String,
    /// The network namespace it runs in, if any (`ip netns exec`).
    netns: Option<String>,
    pub port: u16,
    pub http_port: u16,
    extra_config: String,
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// prlimit(1) options the broker runs under (`--as=BYTES`,
    /// `--nofile=SOFT:HARD`, ...), kept across restarts.
    prlimits: Vec<String>,
    log_path: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Broker {
    /// Starts a broker with `extra_config` appended to its TOML config file.
    pub fn start(extra_config: &str) -> Broker {
        Self::start_with_env(extra_config, &[])
    }

    /// Starts a broker with extra environment variables (`AWS_*` for S3).
    pub fn start_with_env(extra_config: &str, env: &[(String, String)]) -> Broker {
        Self::start_full(extra_config, env, &[])
    }

    /// Starts a broker whose address space is capped at `bytes` (prlimit),
    /// with glibc's malloc arenas capped so that the cap measures what the
    /// broker allocates rather than what it reserves. A regression that
    /// allocates without bound then kills the broker, not the machine.
    pub fn start_limited(extra_config: &str, bytes: u64) -> Broker {
        Self::start_with_prlimit(extra_config, bytes, &[])
    }

    /// `start_limited` with more prlimit(1) options, for example
    /// `--nofile=256:256` for a low file-descriptor limit.
    pub fn start_with_prlimit(extra_config: &str, bytes: u64, prlimits: &[&str]) -> Broker {
        let address_space = format!("--as={bytes}");
        let mut all = vec![address_space.as_str()];
        all.extend_from_slice(prlimits);
        Self::start_full(extra_config, &[("MALLOC_ARENA_MAX".into(), "2".into())], &all)
    }

    /// Starts a broker inside network namespace `netns`, listening on
    /// `host` there (Kafka 9092, HTTP 9644: the namespace has its own ports).
    pub fn start_in_netns(netns: &str, host: &str, extra_config: &str) -> Broker {
        Self::start_at(Some(netns.to_string()), host, 9092, 9644, extra_config, &[], &[])
    }

    fn start_full(extra_config: &str, env: &[(String, String)], prlimits: &[&str]) -> Broker {
        Self::start_at(None, "127.0.0.1", free_port(), free_port(), extra_config, env, prlimits)
    }

    fn start_at(
        netns: Option<String>,
        host: &str,
        port: u16,
        http_port: u16,
        extra_config: &str,
        env: &[(String, String)],
        prlimits: &[&str],
    ) -> Broker {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let mut broker = Broker {
            data_dir,
            host: host.to_string(),
            netns,
            port,
            http_port,
            extra_config: extra_config.to_string(),
            env: env.to_vec(),
            child: None,
            prlimits: prlimits.iter().map(|l| l.to_string()).collect(),
            log_path: tmp.path().join("broker.log"),
            _tmp: Some(tmp),
        };
        // A port free when picked can be taken by another test before the
        // broker binds it: pick fresh loopback ports and start again.
        for _ in 0..3 {
            match broker.try_spawn() {
                Err(log) if broker.netns.is_none() && log.contains("Address already in use") => {
                    broker.port = free_port();
                    broker.http_port = free_port();
                }
                Err(log) => panic!("{log}"),
                Ok(()) => return broker,
            }
        }
        broker.spawn();
        broker
    }

    pub fn bootstrap(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.host, self.http_port)
    }

    fn spawn(&mut self) {
        if let Err(log) = self.try_spawn() {
            panic!("{log}");
        }
    }

    /// Starts the broker and waits until it is ready; `Err` with its log if
    /// it exits or is not ready in time.
    fn try_spawn(&mut self) -> Result<(), String> {
        let config_path = self.data_dir.parent().unwrap().join("sediment.toml");
        // Groups form quickly in tests; everything else is the default.
        let config = format!("group_initial_rebalance_delay_ms = 100\n{}", self.extra_config);
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).unwrap();
        let mut command = if let Some(netns) = &self.netns {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", netns]).arg(env!("CARGO_BIN_EXE_sediment"));
            c
        } else if self.prlimits.is_empty() {
            Command::new(env!("CARGO_BIN_EXE_sediment"))
        } else {
            let mut c = Command::new("prlimit");
            c.args(&self.prlimits).arg("--").arg(env!("CARGO_BIN_EXE_sediment"));
            c
        };
        let child = command
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.bootstrap())
            .arg("--http-listen")
            .arg(format!("{}:{}", self.host, self.http_port))
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(body) = http_get(&self.http("/readyz")) {
                if body.starts_with("ready") {
                    return Ok(());
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("broker exited with {status}: {}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("broker not ready: {}", self.log()))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL: no shutdown, no flush, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM (a graceful stop) and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let sent = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
        assert!(sent.success());
        child.wait().unwrap()
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Sends a signal (`STOP`, `CONT`, ...) to the running broker.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id();
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Starts a stopped broker again (same ports, config and data dir).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the broker is still running");
        self.spawn();
    }

    /// The broker's peak resident set (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let pid = self.child.as_ref().unwrap().id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    pub fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        let topics = self.data_dir.join("topics");
        for entry in std::fs::read_dir(&topics).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            // Directories are named <topic>.<uuid>; a uuid is 36 characters.
            if name.len() > 37 && &name[..name.len() - 37] == topic {
                return path.join(partition.to_string());
            }
        }
        panic!("no directory for topic {topic} under {}", topics.display());
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        // A failing test shows what the broker said last.
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(200).collect();
            eprintln!(
                "---- broker on port {} (last {} log lines) ----\n{}",
                self.port,
                tail.len(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// The value of an unlabelled metric (or the first series of a labelled one
/// whose line starts with `name`).
pub fn metric(broker: &Broker, name: &str) -> f64 {
    let text = http_get(&broker.http("/metrics")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The sum of every series of a metric.
pub fn metric_sum(broker: &Broker, name: &str) -> f64 {
    let text = http_get(&broker.http("/metrics")).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `check` until it holds or `secs` pass.
pub fn wait_until(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Minimal HTTP/1.1 GET over a TcpStream, to avoid an HTTP client dependency.
pub fn http_get(url: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status_ok = response.starts_with("HTTP/1.1 200");
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    if status_ok {
        Ok(body)
    } else {
        Err(std::io::Error::other(format!(
            "HTTP error: {}",
            response.lines().next().unwrap_or("")
        )))
    }
}

/// Runs a client script from tests/clients with python3; panics with its
/// output if it fails.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients").join(script);
    let output = Command::new("python3").arg(path).args(args).output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{script} failed:\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
