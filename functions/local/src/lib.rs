//! `bulk-local`: every route of the bulk user API on one local process, over the embedded store,
//! with the processor running as an in-process worker over a durable queue.
//!
//! [`LocalServer::start`] is the whole process minus signal handling: the binary runs it until
//! Ctrl-C or SIGTERM, the benchmarks run it in-process.

use std::convert::Infallible;
use std::net::SocketAddr;

use bulk_users::adapters::embedded::{self, EmbeddedAdapters};
use bulk_users::api::{error_for_path, Api, ApiError, ApiRequest, ApiResponse};
use bulk_users::local::{seed_credential, DropFolder, LocalSettings, LocalWorker};
use bulk_users::service::{BulkService, ServiceConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A running local server: HTTP listener, queue worker and drop folder.
pub struct LocalServer {
    /// Where it listens.
    pub address: SocketAddr,
    /// The secret of the credential created at start, when the tenant had none (shown once).
    pub created_secret: Option<String>,
    pub service: BulkService,
    pub adapters: EmbeddedAdapters,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl LocalServer {
    /// Opens the data directory, seeds the credential and starts serving.
    pub async fn start(settings: &LocalSettings, config: ServiceConfig) -> Result<Self, Error> {
        let adapters = embedded::open(&settings.data_dir).await?;
        let service = BulkService::new(adapters.ports.clone(), config);
        let created_secret = seed_credential(&service, settings).await?;

        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        if settings.workers > 0 {
            let worker =
                LocalWorker::new(service.clone(), adapters.queue.clone(), settings.workers);
            tasks.push(tokio::spawn(worker.run(stopped.clone())));
        }
        let drop_folder =
            DropFolder::new(service.clone(), adapters.files.clone(), &settings.data_dir);
        tasks.push(tokio::spawn(drop_folder.run(stopped.clone())));

        let address: SocketAddr = format!("{}:{}", settings.host, settings.port).parse()?;
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let api = Api::new(service.clone());
        tasks.push(tokio::spawn(accept(
            listener,
            api,
            settings.max_request_bytes,
            stopped,
        )));
        Ok(LocalServer {
            address,
            created_secret,
            service,
            adapters,
            stop,
            tasks,
        })
    }

    /// Stops accepting, lets the worker finish the chunks it holds, and returns.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

async fn accept(listener: TcpListener, api: Api, limit: u64, mut stopped: watch::Receiver<bool>) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        let api = api.clone();
        let source = peer.ip().to_string();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let api = api.clone();
                let source = source.clone();
                async move { Ok::<_, Infallible>(serve(&api, request, limit, source).await) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
}

async fn serve(
    api: &Api,
    request: hyper::Request<Incoming>,
    limit: u64,
    source: String,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let response = match Limited::new(body, limit as usize).collect().await {
        Ok(collected) => {
            api.handle(ApiRequest {
                method: parts.method,
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().map(str::to_owned),
                headers: parts.headers,
                body: collected.to_bytes(),
                deadline: None,
                source: Some(source),
            })
            .await
        }
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            let mut response = error_for_path(
                &path,
                &ApiError::TooLarge {
                    limit: "max_request_bytes",
                    message: format!(
                        "the request body is over the limit max_request_bytes of {limit} bytes"
                    ),
                },
            );
            // The rest of the body is never read, so the connection cannot carry another
            // request: say so, or a client would reuse it and fail.
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            response
        }
        Err(_) => error_for_path(
            &path,
            &ApiError::bad_request("body", "the request body could not be read"),
        ),
    };
    to_hyper(response)
}

fn to_hyper(response: ApiResponse) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = response.into_parts();
    hyper::Response::from_parts(parts, Full::new(body))
}
