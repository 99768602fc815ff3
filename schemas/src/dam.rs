//! DAM (digital asset management): assets, Google Drive sync, usage rights and exports.

use chrono::{DateTime, NaiveDate, Utc};
use conveyor::Event;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::{HttpUrl, Id};

/// A file was uploaded to the asset library.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DamAssetUploaded {
    /// The asset's id.
    pub asset_id: Id,
    /// File name as uploaded.
    pub file_name: String,
    /// MIME type.
    pub content_type: String,
    /// File size in bytes.
    pub size_bytes: u64,
    /// Where the file is stored.
    pub storage_url: HttpUrl,
    /// Who uploaded it.
    pub uploaded_by: Id,
    /// When it was uploaded.
    pub uploaded_at: DateTime<Utc>,
}

impl Event for DamAssetUploaded {
    const TYPE: &'static str = "dam.asset.uploaded";
}

/// A sync of a Google Drive folder into the asset library was requested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DamGdriveSyncRequested {
    /// The sync's id.
    pub sync_id: Id,
    /// The Drive folder to sync.
    pub folder_id: Id,
    /// Only files changed since then, or everything when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_since: Option<DateTime<Utc>>,
    /// Who asked for it.
    pub requested_by: Id,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
}

impl Event for DamGdriveSyncRequested {
    const TYPE: &'static str = "dam.gdrive.sync.requested";
}

/// The usage rights of one asset are to be checked for expiry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DamRightsExpiryCheck {
    /// The asset's id.
    pub asset_id: Id,
    /// The last day the asset may be used.
    pub rights_expire_on: NaiveDate,
    /// Warn this many days before expiry.
    pub warn_days_before: u32,
}

impl Event for DamRightsExpiryCheck {
    const TYPE: &'static str = "dam.rights.expiry.check";
}

/// The file format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// The original files.
    Original,
    /// Web-sized JPEGs.
    WebJpeg,
    /// A ZIP archive of the originals.
    Zip,
}

/// An export of assets was requested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DamExportRequested {
    /// The export's id.
    pub export_id: Id,
    /// The assets to export.
    pub asset_ids: Vec<Id>,
    /// The format.
    pub format: ExportFormat,
    /// Who asked for it.
    pub requested_by: Id,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
}

impl Event for DamExportRequested {
    const TYPE: &'static str = "dam.export.requested";
}

/// An export of assets is ready to download.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DamExportCompleted {
    /// The export's id.
    pub export_id: Id,
    /// Where to download it.
    pub download_url: HttpUrl,
    /// Until when the download link works.
    pub expires_at: DateTime<Utc>,
    /// Number of files exported.
    pub file_count: u32,
    /// When it finished.
    pub completed_at: DateTime<Utc>,
}

impl Event for DamExportCompleted {
    const TYPE: &'static str = "dam.export.completed";
}
