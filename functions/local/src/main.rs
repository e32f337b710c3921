//! `bulk-local`: every route of the bulk user API on one local process, over the embedded store,
//! with the processor running as an in-process worker over a durable queue.

use std::convert::Infallible;
use std::net::SocketAddr;

use bulk_users::adapters::embedded;
use bulk_users::api::{Api, ApiError, ApiRequest, ApiResponse};
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

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BULK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let settings = LocalSettings::from_env()?;
    let adapters = embedded::open(&settings.data_dir).await?;
    let service = BulkService::new(adapters.ports.clone(), ServiceConfig::from_env()?);

    if let Some(secret) = seed_credential(&service, &settings).await? {
        println!(
            "Created an API credential for tenant '{}' (shown once, store it now):\n  tenant: {}\n  key id: {}\n  secret: {}",
            settings.tenant, settings.tenant, settings.key_id, secret
        );
    }

    let (stop, stopped) = watch::channel(false);
    let worker = (settings.workers > 0).then(|| {
        let worker = LocalWorker::new(service.clone(), adapters.queue.clone(), settings.workers);
        tokio::spawn(worker.run(stopped.clone()))
    });

    let drop_folder = DropFolder::new(service.clone(), adapters.files.clone(), &settings.data_dir);
    let drop_folder = tokio::spawn(drop_folder.run(stopped.clone()));

    let address: SocketAddr = format!("{}:{}", settings.host, settings.port).parse()?;
    let listener = TcpListener::bind(address).await?;
    println!(
        "bulk-local listening on http://{} (tenant '{}', data in {})",
        listener.local_addr()?,
        settings.tenant,
        settings.data_dir.display()
    );
    let api = Api::new(service);
    let limit = settings.max_request_bytes;
    let mut stopped_http = stopped.clone();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
            _ = shutdown_signal() => break,
            _ = stopped_http.changed() => break,
        };
        let api = api.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(serve(&api, request, limit).await) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    let _ = stop.send(true);
    let _ = drop_folder.await;
    if let Some(worker) = worker {
        let _ = worker.await;
    }
    Ok(())
}

async fn serve(
    api: &Api,
    request: hyper::Request<Incoming>,
    limit: u64,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let response = match Limited::new(body, limit as usize).collect().await {
        Ok(collected) => {
            api.handle(ApiRequest {
                method: parts.method,
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().map(str::to_owned),
                headers: parts.headers,
                body: collected.to_bytes(),
            })
            .await
        }
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            let mut response = ApiError::TooLarge {
                limit: "max_request_bytes",
                message: format!(
                    "the request body is over the limit max_request_bytes of {limit} bytes"
                ),
            }
            .response();
            // The rest of the body is never read, so the connection cannot carry another
            // request: say so, or a client would reuse it and fail.
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            response
        }
        Err(_) => ApiError::bad_request("body", "the request body could not be read").response(),
    };
    to_hyper(response)
}

fn to_hyper(response: ApiResponse) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = response.into_parts();
    hyper::Response::from_parts(parts, Full::new(body))
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return std::future::pending().await,
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
