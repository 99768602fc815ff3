//! The webhook signature: HMAC-SHA256 over `"<unix>.<body>"`.

use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// `t=<unix>,v1=<hex hmac-sha256(secret, "<unix>.<body>")>`.
pub fn sign(secret: &str, unix: i64, body: &[u8]) -> String {
    format!("t={unix},v1={}", hex(&mac(secret, unix, body)))
}

fn mac(secret: &str, unix: i64, body: &[u8]) -> Vec<u8> {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length.
        Err(_) => return Vec::new(),
    };
    mac.update(unix.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a `Conveyor-Signature` header against `body`, as a webhook receiver should: the
/// signature must match and its time be within `tolerance` of now.
pub fn verify_signature(secret: &str, header: &str, body: &[u8], tolerance: Duration) -> bool {
    let mut unix = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", t)) => unix = t.parse::<i64>().ok(),
            Some(("v1", s)) => v1 = Some(s),
            _ => {}
        }
    }
    let (Some(unix), Some(v1)) = (unix, v1) else {
        return false;
    };
    let age = (Utc::now().timestamp() - unix).unsigned_abs();
    if age > tolerance.as_secs() {
        return false;
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(unix.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected: Vec<u8> = (0..v1.len() / 2)
        .filter_map(|i| u8::from_str_radix(v1.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    mac.verify_slice(&expected).is_ok()
}
