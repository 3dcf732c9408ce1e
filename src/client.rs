//! A typed client of one node's client and admin APIs, over mutual TLS,
//! configured by a `client.toml`. Used by the CLI, the demo, tests and benches.

use std::time::Duration;

use thiserror::Error;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::config::{ClientConfig, ConfigError};
use crate::identity::{
    CertificateRefusal, NodeIdentity, TlsError, TlsIdentity, certificate_refusal,
    client_tls_config, connect_channel, install_crypto_provider,
};
use crate::proto::v1::admin_service_client::AdminServiceClient;
use crate::proto::v1::alert_service_client::AlertServiceClient;
use crate::proto::v1::disclosure_service_client::DisclosureServiceClient;
use crate::proto::v1::report_service_client::ReportServiceClient;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("purpose: {0}")]
    Purpose(String),
    #[error("the node at {address} refused this client's certificate {cert}: {refusal}")]
    CertificateRefused {
        address: String,
        cert: std::path::PathBuf,
        refusal: CertificateRefusal,
    },
}

/// Adds the caller's stated purpose (`x-casebridge-purpose`) to every
/// request, where the node's audit log records it.
#[derive(Clone, Default)]
pub struct Purpose(Option<tonic::metadata::BinaryMetadataValue>);

impl Purpose {
    /// Printable UTF-8, at most [`crate::audit::MAX_PURPOSE_BYTES`] bytes.
    pub fn new(text: &str) -> Result<Self, ClientError> {
        let text = crate::audit::check_purpose(text).map_err(ClientError::Purpose)?;
        Ok(Self(Some(
            tonic::metadata::BinaryMetadataValue::from_bytes(text.as_bytes()),
        )))
    }
}

impl tonic::service::Interceptor for Purpose {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(p) = &self.0 {
            req.metadata_mut()
                .insert_bin(crate::audit::PURPOSE_BIN_HEADER, p.clone());
        }
        Ok(req)
    }
}

/// The service stack every typed client of a node goes through (the
/// purpose header on every call).
pub type Svc = InterceptedService<Channel, Purpose>;

#[derive(Clone)]
pub struct NodeClient {
    pub alerts: AlertServiceClient<Svc>,
    pub admin: AdminServiceClient<Svc>,
    pub disclosure: DisclosureServiceClient<Svc>,
    pub reports: ReportServiceClient<Svc>,
    pub channel: Channel,
}

/// Largest message the client accepts or sends. The node enforces its own,
/// configurable limit (default 4 MiB); the client is never the tighter side.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

impl NodeClient {
    pub async fn connect(cfg: &ClientConfig) -> Result<Self, ClientError> {
        install_crypto_provider();
        let own = TlsIdentity::load(&cfg.cert, &cfg.key)?;
        let tls = client_tls_config(&own, &cfg.federation_ca, &[])?;
        let expected = NodeIdentity {
            federation: cfg.federation.clone(),
            agency: cfg.node_agency.clone(),
        };
        let channel = connect_channel(
            &cfg.node_address,
            (expected, None),
            std::sync::Arc::new(tls),
            Duration::from_secs(10),
        )
        .await?;
        Ok(Self::from_channel(channel))
    }

    pub async fn connect_file(path: &std::path::Path) -> Result<Self, ClientError> {
        Self::connect(&ClientConfig::load(path)?).await
    }

    /// After a call failed without a reason (a TLS 1.3 refusal of our
    /// certificate reaches gRPC as a bare transport error): dials the node
    /// once more and returns the refusal, with its reason, if that is what
    /// happened. `None` when the node accepts the certificate or the config
    /// cannot be read (the original error stands).
    pub async fn certificate_refused(cfg: &ClientConfig) -> Option<ClientError> {
        install_crypto_provider();
        let own = TlsIdentity::load(&cfg.cert, &cfg.key).ok()?;
        let tls = client_tls_config(&own, &cfg.federation_ca, &[]).ok()?;
        let refusal = certificate_refusal(
            &cfg.node_address,
            std::sync::Arc::new(tls),
            Duration::from_secs(5),
        )
        .await?;
        Some(ClientError::CertificateRefused {
            address: cfg.node_address.clone(),
            cert: cfg.cert.clone(),
            refusal,
        })
    }

    pub fn from_channel(channel: Channel) -> Self {
        Self::with_purpose(channel, Purpose::default())
    }

    /// A client whose every call states `purpose` to the node.
    pub fn with_purpose(channel: Channel, purpose: Purpose) -> Self {
        Self {
            alerts: AlertServiceClient::with_interceptor(channel.clone(), purpose.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            admin: AdminServiceClient::with_interceptor(channel.clone(), purpose.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            disclosure: DisclosureServiceClient::with_interceptor(channel.clone(), purpose.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            reports: ReportServiceClient::with_interceptor(channel.clone(), purpose)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            channel,
        }
    }

    /// The same connection, stating `purpose` on every call.
    pub fn purpose(self, purpose: Purpose) -> Self {
        Self::with_purpose(self.channel, purpose)
    }
}
