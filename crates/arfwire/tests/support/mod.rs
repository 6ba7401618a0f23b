//! Helpers shared by the end-to-end tests that run the built binary as child processes:
//! locating the workspace and the broker, throwaway databases, services with their logs, a
//! small LMTP client and CRLF fixtures.
//!
//! Each test binary uses a subset of these.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The recipient the front door accepts.
pub(crate) const RCPT: &str = "junk@provider.example";

pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

pub(crate) fn arfwire() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_arfwire"));
    command.current_dir(workspace()).env_remove("RUST_LOG");
    command
}

pub(crate) fn run(command: &mut Command, what: &str) -> Output {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The broker address, which must answer: a missing broker fails the test.
pub(crate) fn bootstrap() -> String {
    arfwire_kafka::testing::broker_bootstrap()
}

pub(crate) fn database_url(db: &str) -> String {
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned());
    match base.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{db}"),
        None => base,
    }
}

pub(crate) fn admin_sql(sql: String) -> Result<(), String> {
    let admin = database_url("postgres");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&admin).await.map_err(|e| {
            format!("PostgreSQL is not reachable at {admin} ({e}); run scripts/services.sh up")
        })?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// A loopback port nobody listens on right now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A child process that is killed if the test ends without stopping it.
pub(crate) struct Service {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Service {
    pub(crate) fn start(name: &'static str, mut command: Command, dir: &Path) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = command
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Service {
            name,
            child: Some(child),
            log,
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails the test if the process has already exited.
    pub(crate) fn assert_running(&mut self) {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait().expect("wait")
        {
            panic!("{} exited early with {status}:\n{}", self.name, self.log());
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub(crate) fn stop(&mut self, within: Duration) {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "could not signal {}", self.name);
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                assert!(
                    status.success(),
                    "{} exited with {status} after SIGTERM:\n{}",
                    self.name,
                    self.log()
                );
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "{} did not stop within {within:?} of SIGTERM:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A line-based LMTP client on a plain socket.
pub(crate) struct Lmtp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Lmtp {
    pub(crate) fn connect(address: SocketAddr, deadline: Instant) -> Self {
        let stream = loop {
            match TcpStream::connect_timeout(&address, Duration::from_secs(1)) {
                Ok(stream) => break stream,
                Err(error) => {
                    assert!(
                        Instant::now() < deadline,
                        "the LMTP front door never listened: {error}"
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let writer = stream.try_clone().expect("clone");
        let mut client = Lmtp {
            reader: BufReader::new(stream),
            writer,
        };
        client.expect("220");
        client
    }

    /// Read one (possibly multi-line) reply; its last line must start with `code`.
    pub(crate) fn expect(&mut self, code: &str) -> String {
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("reply line");
            assert!(!line.is_empty(), "connection closed; reply so far: {reply}");
            reply.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                assert!(line.starts_with(code), "expected {code}, got: {reply}");
                return reply;
            }
        }
    }

    pub(crate) fn command(&mut self, line: &str, code: &str) -> String {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("send");
        self.expect(code)
    }

    /// Deliver one message; the server answers 250 once the raw topic has it.
    pub(crate) fn deliver(&mut self, crlf_message: &[u8]) {
        self.command("MAIL FROM:<reporter@example.org>", "250");
        self.command(&format!("RCPT TO:<{RCPT}>"), "250");
        self.command("DATA", "354");
        let mut data = Vec::with_capacity(crlf_message.len() + 16);
        for line in crlf_message.split_inclusive(|b| *b == b'\n') {
            if line.first() == Some(&b'.') {
                data.push(b'.');
            }
            data.extend_from_slice(line);
        }
        if !data.ends_with(b"\r\n") {
            data.extend_from_slice(b"\r\n");
        }
        data.extend_from_slice(b".\r\n");
        self.writer.write_all(&data).expect("send data");
        self.expect("250");
    }
}

/// A fixture with CRLF line endings, as an MTA would deliver it.
pub(crate) fn fixture_crlf(name: &str) -> Vec<u8> {
    let raw = std::fs::read(workspace().join("fixtures").join(name)).expect("fixture");
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 20);
    let mut previous = 0u8;
    for &b in &raw {
        if b == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        previous = b;
    }
    out
}
