//! The HTTP gateway of the dev system, with an API key for tenant `acme` kept under the data
//! directory so it stays the same from one run to the next.

use std::net::SocketAddr;
use std::path::Path;

use conveyor::Connection;
use conveyor::telemetry::Telemetry;
use conveyor_gateway::keys::{KeySpec, Keys, secret_matches, split_key};
use conveyor_gateway::{Gateway, GatewayConfig};

use crate::{DevError, lines};

/// The tenant of the dev key.
pub const KEY_TENANT: &str = "acme";

/// The key in `<data>/gateway-key` when it is still valid, else a new one written there.
pub async fn dev_key(conn: &Connection, data_dir: &Path) -> Result<String, DevError> {
    let keys = Keys::open(conn).await?;
    let path = data_dir.join("gateway-key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let key = text.trim().to_owned();
        if let Some((id, secret)) = split_key(&key)
            && let Some(record) = keys.get(id).await?
            && secret_matches(&record, secret)
        {
            return Ok(key);
        }
    }
    let spec = KeySpec {
        tenant: conveyor::TenantId::parse(KEY_TENANT)?,
        types: Vec::new(),
        rate: None,
        name: Some("conveyor-dev".into()),
    };
    let (key, _) = keys.create(spec).await?;
    std::fs::create_dir_all(data_dir)?;
    std::fs::write(&path, format!("{key}\n"))?;
    Ok(key)
}

/// Starts the gateway on `addr`; says why not when it cannot (a port in use does not stop the
/// rest of the system).
pub async fn start(
    conn: &Connection,
    telemetry: &Telemetry,
    addr: SocketAddr,
    data_dir: &Path,
) -> Option<(Gateway, String)> {
    let config = GatewayConfig {
        listen: addr,
        default_source: "conveyor-dev-gateway".into(),
        ..GatewayConfig::default()
    };
    let started = async {
        let key = dev_key(conn, data_dir).await?;
        let gateway = Gateway::start(conn, telemetry, config).await?;
        Ok::<_, DevError>((gateway, key))
    };
    match started.await {
        Ok((gateway, key)) => {
            lines::say(
                "gateway",
                &format!(
                    "POST http://{}/v1/events with Authorization: Bearer $(cat {}) (tenant {KEY_TENANT})",
                    gateway.local_addr(),
                    data_dir.join("gateway-key").display()
                ),
            );
            Some((gateway, key))
        }
        Err(e) => {
            lines::say("gateway", &format!("not serving the HTTP gateway: {e}"));
            None
        }
    }
}
