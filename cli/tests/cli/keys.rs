//! Gateway API keys from the command line: created once, listed without secrets, revoked.

use super::*;

#[tokio::test]
async fn keys_are_created_listed_and_revoked() {
    let (server, conn) = server().await;
    let url = server.url();
    let create = conveyor(
        &url,
        &[
            "keys",
            "create",
            "--tenant",
            "acme",
            "--types",
            "order.*,video.>",
            "--rate",
            "100/s",
            "--name",
            "checkout",
        ],
    );
    let (out, err) = text(&create);
    assert!(create.status.success(), "{out}{err}");
    let key = out.trim().to_owned();
    assert!(key.starts_with("cvk_"), "{out}");
    assert!(err.contains("shown only now"), "{err}");

    // The key is stored hashed: its secret is nowhere in the bucket or the listing.
    let (id, secret) = conveyor_gateway::keys::split_key(&key).unwrap();
    let record = conveyor_gateway::keys::Keys::open(&conn)
        .await
        .unwrap()
        .get(id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.tenant, "acme");
    assert_eq!(record.types, ["order.*", "video.>"]);
    assert!(!serde_json::to_string(&record).unwrap().contains(secret));
    let list = conveyor(&url, &["keys", "list"]);
    let (out, _) = text(&list);
    assert!(
        out.contains(id) && out.contains("acme") && out.contains("checkout"),
        "{out}"
    );
    assert!(out.contains("order.*,video.>, 100/s"), "{out}");
    assert!(!out.contains(secret));
    let json = conveyor(&url, &["keys", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&text(&json).0).unwrap();
    assert_eq!(listed[0]["id"], id);

    let bad = conveyor(
        &url,
        &["keys", "create", "--tenant", "acme", "--rate", "lots"],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad).1.contains("invalid rate"), "{:?}", text(&bad));
    let bad = conveyor(&url, &["keys", "create", "--tenant", "ac me"]);
    assert_eq!(bad.status.code(), Some(1));

    let revoke = conveyor(&url, &["keys", "revoke", id]);
    assert!(revoke.status.success(), "{:?}", text(&revoke));
    assert!(text(&revoke).0.contains("revoked key"));
    let again = conveyor(&url, &["keys", "revoke", id]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again).1.contains("no key has id"),
        "{:?}",
        text(&again)
    );
    assert!(
        text(&conveyor(&url, &["keys", "list"]))
            .0
            .contains("no keys")
    );
}
