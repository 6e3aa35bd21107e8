//! `--listen HOST:PORT`: gotrace as a Prometheus exporter. `GET /metrics`
//! answers in the Prometheus text format, or in OpenMetrics when the
//! scraper's `Accept` asks for it; anything else is a 404.
//!
//! Connections are served by hyper on gotrace's own event loop. A request
//! reads nothing but its path and `Accept` header; it is handed to the
//! run's loop ([`Exporter::next`]), which reads the maps then and answers
//! — so the probes never wait on a scrape, and a scrape never sees a half
//! updated set of binaries.

pub mod metrics;

use std::{
    convert::Infallible,
    net::{SocketAddr, ToSocketAddrs as _},
};

use anyhow::Context as _;
use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    header, Method, Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, oneshot};

pub use metrics::{Labels, Snapshot};

/// A socket bound for `--listen`, before anything is attached (so that a
/// port in use is an error that leaves nothing behind).
pub struct Listener {
    socket: std::net::TcpListener,
    address: SocketAddr,
}

impl Listener {
    /// Binds `address` (`HOST:PORT`; a name resolves to its first address).
    pub fn bind(address: &str) -> anyhow::Result<Self> {
        let resolved = address
            .to_socket_addrs()
            .map_err(|err| {
                anyhow::anyhow!(
                    "--listen {address:?}: not a HOST:PORT address ({err}); e.g. --listen 127.0.0.1:9435"
                )
            })?
            .next()
            .with_context(|| format!("--listen {address:?} resolves to no address"))?;
        let socket = std::net::TcpListener::bind(resolved).map_err(|err| {
            let hint = match err.kind() {
                std::io::ErrorKind::AddrInUse => {
                    ": another program listens there, pick another port"
                }
                std::io::ErrorKind::PermissionDenied => {
                    ": ports below 1024 need root or CAP_NET_BIND_SERVICE, pick a higher one"
                }
                std::io::ErrorKind::AddrNotAvailable => {
                    ": no interface of this host has that address"
                }
                _ => "",
            };
            anyhow::anyhow!("--listen {address}: cannot listen on {resolved} ({err}){hint}")
        })?;
        socket
            .set_nonblocking(true)
            .context("making the listening socket non-blocking")?;
        let address = socket.local_addr().context("reading the bound address")?;
        Ok(Self { socket, address })
    }

    /// The address bound (with the port the kernel chose for port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

/// One scrape waiting for its answer.
pub struct Scrape {
    /// OpenMetrics was asked for.
    pub open_metrics: bool,
    reply: oneshot::Sender<(&'static str, String)>,
}

impl Scrape {
    /// Answers with `snapshot` in the format asked for.
    pub fn answer(self, snapshot: Snapshot) {
        // The client may have gone: nothing to do then.
        let _ = self
            .reply
            .send(metrics::encode(snapshot, self.open_metrics));
    }
}

/// Serving `/metrics`, on the run's event loop.
pub struct Exporter {
    listener: tokio::net::TcpListener,
    scrapes: mpsc::Receiver<Scrape>,
    sender: mpsc::Sender<Scrape>,
}

impl Exporter {
    /// Starts accepting on `listener` (inside the event loop).
    pub fn start(listener: Listener) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::from_std(listener.socket)
            .context("serving the --listen socket")?;
        let (sender, scrapes) = mpsc::channel(16);
        Ok(Self {
            listener,
            scrapes,
            sender,
        })
    }

    /// Accepts connections until a scrape comes, and returns it for the
    /// run to answer.
    pub async fn next(&mut self) -> Scrape {
        loop {
            tokio::select! {
                Some(scrape) = self.scrapes.recv() => return scrape,
                accepted = self.listener.accept() => {
                    // A failed accept (a client that reset, no fds left)
                    // only loses that connection.
                    if let Ok((stream, _)) = accepted {
                        serve(stream, self.sender.clone());
                    }
                }
            }
        }
    }
}

/// Waits for the next scrape of `exporter`, forever without one.
pub async fn next(exporter: &mut Option<Exporter>) -> Scrape {
    match exporter {
        Some(exporter) => exporter.next().await,
        None => std::future::pending().await,
    }
}

/// Serves one connection on its own task.
fn serve(stream: tokio::net::TcpStream, scrapes: mpsc::Sender<Scrape>) {
    let service = hyper::service::service_fn(move |request| respond(request, scrapes.clone()));
    tokio::spawn(async move {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
}

async fn respond(
    request: Request<Incoming>,
    scrapes: mpsc::Sender<Scrape>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let plain = |status: StatusCode, text: &str| {
        let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
        *response.status_mut() = status;
        response
    };
    if request.uri().path() != "/metrics" {
        return Ok(plain(
            StatusCode::NOT_FOUND,
            "gotrace serves /metrics only\n",
        ));
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n"));
    }
    let open_metrics = request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let (reply, answer) = oneshot::channel();
    let sent = scrapes
        .send(Scrape {
            open_metrics,
            reply,
        })
        .await;
    let Ok((content_type, body)) = (match sent {
        Ok(()) => answer.await.map_err(drop),
        Err(_) => Err(()),
    }) else {
        return Ok(plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "gotrace is stopping\n",
        ));
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    Ok(response)
}

/// `--labels`: the per-process label asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProcessLabel {
    Pid,
    Comm,
}

/// Process names for the `comm` label: as the kernel noted them when
/// each process first called (so that they are known even once it has
/// exited), else as `/proc` says.
pub struct ProcessNames {
    noted: Option<aya::maps::HashMap<aya::maps::MapData, u32, [u8; 16]>>,
}

impl ProcessNames {
    /// Takes the names map of a run with `--labels`.
    pub fn new(ebpf: &mut aya::Ebpf) -> anyhow::Result<Self> {
        use gotrace_common::probe::PROCESS_NAMES_MAP;
        let map = ebpf
            .take_map(PROCESS_NAMES_MAP)
            .with_context(|| format!("map {PROCESS_NAMES_MAP} missing from gotrace's object"))?;
        Ok(Self {
            noted: Some(aya::maps::HashMap::try_from(map)?),
        })
    }

    /// No names (runs without `--labels`).
    pub fn none() -> Self {
        Self { noted: None }
    }

    /// The label `label` gives process `pid`.
    pub fn label(&self, label: ProcessLabel, pid: u32) -> (&'static str, String) {
        match label {
            ProcessLabel::Pid => ("pid", pid.to_string()),
            ProcessLabel::Comm => {
                let noted = self.noted.as_ref().and_then(|m| m.get(&pid, 0).ok());
                let name = match noted {
                    Some(comm) => {
                        let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
                        String::from_utf8_lossy(&comm[..end]).into_owned()
                    }
                    None => std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .map(|c| c.trim_end().to_owned())
                        .unwrap_or_default(),
                };
                ("comm", name)
            }
        }
    }
}
