//! What every long-running command installs: the tracing subscriber, the Prometheus
//! recorder with its `GET /metrics` endpoint, the shutdown signal (SIGTERM, SIGINT) and
//! the async runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSection, MetricsSection};

/// A multi-threaded runtime for a service.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("arfwire")
        .build()
        .context("starting the async runtime")
}

/// Install the global tracing subscriber: JSON or pretty lines on standard error,
/// filtered by `RUST_LOG` when set, else by the configured filter. Also routes panic
/// reports through it (without their payload beyond a short prefix).
pub(crate) fn install_logging(log: &LogSection) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.trim().is_empty() => EnvFilter::try_new(&from_env)
            .with_context(|| format!("RUST_LOG={from_env:?} is not a valid log filter"))?,
        _ => EnvFilter::try_new(&log.filter)
            .with_context(|| format!("[log] filter {:?} is not a valid log filter", log.filter))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match log.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Pretty => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))?;
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let short: String = payload.chars().take(200).collect();
        let thread = std::thread::current();
        tracing::error!(
            %location,
            thread = thread.name().unwrap_or("unnamed"),
            message = %short,
            "panic (contained where the worker processes records)"
        );
    }));
    Ok(())
}

/// A shutdown signal every task can wait for: SIGTERM or SIGINT (Ctrl-C), or a call to
/// [`Shutdown::trigger`].
#[derive(Clone)]
pub(crate) struct Shutdown {
    sender: Arc<watch::Sender<bool>>,
    receiver: watch::Receiver<bool>,
}

impl Shutdown {
    /// Listen for SIGTERM and SIGINT. Needs the runtime.
    pub(crate) fn on_signals() -> anyhow::Result<Self> {
        let (sender, receiver) = watch::channel(false);
        let shutdown = Shutdown {
            sender: Arc::new(sender),
            receiver,
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("listening for SIGTERM")?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .context("listening for SIGINT")?;
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "shutting down");
            trigger.trigger();
        });
        Ok(shutdown)
    }

    /// Ask everything to stop.
    pub(crate) fn trigger(&self) {
        self.sender.send_replace(true);
    }

    /// Completes once shutdown was asked for.
    pub(crate) async fn wait(self) {
        let mut receiver = self.receiver;
        let _ = receiver.wait_for(|stop| *stop).await;
    }
}

/// Buckets of the `_seconds` histograms: 1 ms to 60 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Install the Prometheus recorder and serve it on `GET /metrics` until `shutdown`, when
/// enabled. `listen` overrides the configured address. Returns the address served.
pub(crate) async fn start_metrics(
    section: &MetricsSection,
    listen: Option<SocketAddr>,
    shutdown: Shutdown,
) -> anyhow::Result<Option<SocketAddr>> {
    if !section.enabled && listen.is_none() {
        return Ok(None);
    }
    let address = listen.unwrap_or(section.listen);
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("seconds".to_owned()), SECONDS_BUCKETS)
        .context("configuring the metrics histograms")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("binding the metrics endpoint {address}"))?;
    let local_addr = listener.local_addr().context("metrics endpoint address")?;
    tracing::info!(listen = %local_addr, "metrics endpoint on GET /metrics");
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(5));
        loop {
            ticker.tick().await;
            upkeep.run_upkeep();
        }
    });
    tokio::spawn(serve_metrics(listener, handle, shutdown.wait()));
    Ok(Some(local_addr))
}

/// Largest request head read from a metrics client.
const MAX_REQUEST: usize = 8 * 1024;
/// Most metrics connections served at once.
const MAX_CONNECTIONS: usize = 16;
/// Bound on reading a request and writing its answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A deliberately tiny HTTP/1.x server: `GET /metrics` (or `HEAD`) answers the
/// Prometheus text format, anything else 404 or 405; one request per connection.
pub(crate) async fn serve_metrics(
    listener: TcpListener,
    handle: PrometheusHandle,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    drop(stream);
                    continue;
                };
                let handle = handle.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(IO_TIMEOUT, answer(stream, &handle)).await;
                    drop(slot);
                });
            }
        }
    }
}

async fn answer(mut stream: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..n]);
        if head.len() > MAX_REQUEST {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "",
                false,
            )
            .await;
        }
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let body = handle.render();
            respond(&mut stream, "200 OK", &body, method == "HEAD").await
        }
        ("GET" | "HEAD", _) => respond(&mut stream, "404 Not Found", "not found\n", false).await,
        _ => respond(&mut stream, "405 Method Not Allowed", "", false).await,
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes()).await?;
    if !head_only {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(address: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn the_endpoint_serves_the_registry_and_nothing_else() {
        // A recorder of the test's own (not the global one) behind the same server.
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("arfwire_test_things_total", "kind" => "a").increment(3);
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_metrics(listener, handle, async {
            let _ = stopped.await;
        }));

        let ok = get(address, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("arfwire_test_things_total{kind=\"a\"} 3"),
            "{ok}"
        );
        let missing = get(address, "GET / HTTP/1.1\r\n\r\n").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let refused = get(address, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(refused.starts_with("HTTP/1.1 405"), "{refused}");

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server stops")
            .unwrap();
    }
}
