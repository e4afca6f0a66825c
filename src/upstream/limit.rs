//! `PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS`: at most that many requests to one service
//! at once. The limit sits in the SDK's HTTP connector, around each attempt's exchange, so it
//! is taken only once the SDK has the credentials to sign with: a read waiting on one role's
//! AssumeRole never holds a place the function's own reads (or another role's) need.

use std::sync::Arc;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use tokio::sync::Semaphore;

/// `inner`, with at most `permits` requests in flight through it at once (each from when it is
/// sent until its answer's head arrives).
pub(super) fn limited(inner: SharedHttpClient, permits: usize) -> SharedHttpClient {
    SharedHttpClient::new(Limited {
        inner,
        permits: Arc::new(Semaphore::new(permits)),
    })
}

#[derive(Debug)]
struct Limited {
    inner: SharedHttpClient,
    permits: Arc<Semaphore>,
}

impl HttpClient for Limited {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(LimitedConnector {
            inner: self.inner.http_connector(settings, components),
            permits: self.permits.clone(),
        })
    }

    fn connector_metadata(&self) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

#[derive(Debug)]
struct LimitedConnector {
    inner: SharedHttpConnector,
    permits: Arc<Semaphore>,
}

impl HttpConnector for LimitedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (inner, permits) = (self.inner.clone(), self.permits.clone());
        HttpConnectorFuture::new(async move {
            let _permit = permits.acquire_owned().await.expect("the semaphore is never closed");
            inner.call(request).await
        })
    }
}
