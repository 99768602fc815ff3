//! `conveyor keys`: the API keys of the HTTP gateway (`conveyor-gateway`).

use clap::Subcommand;
use conveyor::Connection;
use conveyor_gateway::keys::{KeyRecord, KeySpec, Keys, Rate};

use crate::Fail;

/// Create, list and revoke gateway API keys.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a key for one tenant; it is printed once (only its hash is stored).
    Create {
        /// The tenant every event of the key is published for.
        #[arg(long)]
        tenant: String,
        /// Event types the key may publish, comma-separated patterns (`*` one token, a final
        /// `>` the rest), e.g. order.*,video.> (default: every type).
        #[arg(long = "types", value_delimiter = ',')]
        types: Vec<String>,
        /// Rate limit, e.g. 100/s, 6000/m (default: none). Counted per gateway process.
        #[arg(long)]
        rate: Option<String>,
        /// A label, e.g. checkout-api.
        #[arg(long)]
        name: Option<String>,
        /// Print JSON (the key and its record).
        #[arg(long)]
        json: bool,
    },
    /// The keys (without secrets).
    List {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key (by id or the whole key): every gateway refuses it within 2 seconds.
    Revoke {
        /// The key's id (`cvk_<id>_...`) or the key.
        id: String,
    },
}

pub(crate) async fn run(conn: &Connection, cmd: KeysCommand) -> Result<(), Fail> {
    let keys = Keys::open(conn).await.map_err(|e| e.to_string())?;
    match cmd {
        KeysCommand::Create {
            tenant,
            types,
            rate,
            name,
            json,
        } => {
            let tenant = conveyor::TenantId::parse(&tenant)
                .map_err(|e| format!("invalid --tenant: {}", e.message()))?;
            let rate = rate
                .as_deref()
                .map(Rate::parse)
                .transpose()
                .map_err(|e| e.message().to_owned())?;
            let spec = KeySpec {
                tenant,
                types,
                rate,
                name,
            };
            let (key, record) = keys.create(spec).await.map_err(|e| e.to_string())?;
            if json {
                let out = serde_json::json!({ "key": key, "record": record });
                println!("{out}");
            } else {
                println!("{key}");
                eprintln!(
                    "created key {} for tenant {} ({}); it is shown only now: store it as a secret",
                    record.id,
                    record.tenant,
                    describe(&record)
                );
            }
            Ok(())
        }
        KeysCommand::List { json } => {
            let all = keys.list().await.map_err(|e| e.to_string())?;
            if json {
                let out = serde_json::to_string(&all).map_err(|e| e.to_string())?;
                println!("{out}");
                return Ok(());
            }
            if all.is_empty() {
                println!("no keys (create one with: conveyor keys create --tenant <tenant>)");
                return Ok(());
            }
            println!(
                "{:<14} {:<20} {:<20} CREATED  SCOPE",
                "ID", "TENANT", "NAME"
            );
            for r in &all {
                println!(
                    "{:<14} {:<20} {:<20} {}  {}",
                    r.id,
                    r.tenant,
                    r.name.as_deref().unwrap_or("-"),
                    r.created_at.format("%Y-%m-%d"),
                    describe(r)
                );
            }
            Ok(())
        }
        KeysCommand::Revoke { id } => {
            let record = keys.revoke(&id).await.map_err(|e| e.to_string())?;
            println!("revoked key {} of tenant {}", record.id, record.tenant);
            Ok(())
        }
    }
}

fn describe(r: &KeyRecord) -> String {
    let types = if r.types.is_empty() {
        "every type".to_owned()
    } else {
        r.types.join(",")
    };
    match r.rate {
        Some(rate) => format!("{types}, {rate}"),
        None => format!("{types}, no rate limit"),
    }
}
