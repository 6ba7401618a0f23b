//! Interoperability with a real client: swaks speaking LMTP.
//!
//! swaks is a Debian package (`apt-get install -y swaks`; `scripts/services.sh up` installs
//! it). When it is missing this test fails and says so; it never passes without having run.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{MemorySubmitter, Running, config};

fn swaks_available() -> bool {
    Command::new("swaks")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

async fn run_swaks(port: u16, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<String> = [
        "--protocol",
        "LMTP",
        "--server",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--helo",
        "client.example",
        "--from",
        "reporter@isp.example",
        "--to",
        "junk@provider.example,abuse@provider.example",
        "--header",
        "Subject: swaks interop",
        "--body",
        "First line\n.leading dot\nlast line",
        "--timeout",
        "10",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    args.extend(extra.iter().map(ToString::to_string));
    let run = tokio::task::spawn_blocking(move || Command::new("swaks").args(&args).output());
    tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .expect("swaks did not finish")
        .expect("swaks task")
        .expect("swaks could not be started")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_delivers_over_lmtp() {
    assert!(
        swaks_available(),
        "swaks is not installed: run `scripts/services.sh up` or `apt-get install -y swaks`"
    );
    let submitter = MemorySubmitter::new();
    let server = Running::start(config(), submitter.clone()).await;
    let port = server.addr.port();

    for (round, extra) in [&[][..], &["--pipeline"][..]].into_iter().enumerate() {
        let output = run_swaks(port, extra).await;
        let transcript = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "swaks {extra:?} failed:\n{transcript}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // One 250 per recipient after the data.
        let queued = transcript
            .lines()
            .filter(|line| line.contains("250 2.0.0") && line.contains("queued"))
            .count();
        assert_eq!(queued, 2, "{transcript}");
        let stored = submitter.stored();
        assert_eq!(stored.len(), round + 1);
        let message = &stored[round];
        assert_eq!(
            message.envelope.rcpt_to,
            ["junk@provider.example", "abuse@provider.example"]
        );
        let text = String::from_utf8_lossy(&message.bytes);
        assert!(text.contains("Subject: swaks interop\r\n"), "{text}");
        assert!(text.contains("\r\n.leading dot\r\n"), "{text}");
        assert!(text.contains("\r\nlast line\r\n"), "{text:?}");
    }
    server.stop().await;
}
