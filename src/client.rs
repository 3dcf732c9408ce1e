//! A typed client of one node's client and admin APIs, over mutual TLS,
//! configured by a `client.toml`. Used by the CLI, the demo, tests and benches.

use std::time::Duration;

use thiserror::Error;
use tonic::transport::Channel;

use crate::config::{ClientConfig, ConfigError};
use crate::identity::{
    NodeIdentity, TlsError, TlsIdentity, client_tls_config, connect_channel,
    install_crypto_provider,
};
use crate::proto::v1::admin_service_client::AdminServiceClient;
use crate::proto::v1::alert_service_client::AlertServiceClient;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

#[derive(Clone)]
pub struct NodeClient {
    pub alerts: AlertServiceClient<Channel>,
    pub admin: AdminServiceClient<Channel>,
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
            expected,
            std::sync::Arc::new(tls),
            Duration::from_secs(10),
        )
        .await?;
        Ok(Self::from_channel(channel))
    }

    pub async fn connect_file(path: &std::path::Path) -> Result<Self, ClientError> {
        Self::connect(&ClientConfig::load(path)?).await
    }

    pub fn from_channel(channel: Channel) -> Self {
        Self {
            alerts: AlertServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            admin: AdminServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            channel,
        }
    }
}
