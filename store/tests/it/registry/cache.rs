//! The shared build cache against a real registry: records asked by key,
//! once each, and a registry that goes away mid-build.

use std::sync::Arc;

use rbk_store::cache::CacheRecord;
use rbk_store::registry::cache::{export, RemoteCache};
use rbk_store::registry::Client;
use rbk_store::{Reference, Store};

use super::{options, quiet, Registry};

fn record(key: &str) -> CacheRecord {
    CacheRecord {
        key: key.to_string(),
        family: "f".to_string(),
        layer: None,
        diff_id: None,
        chain_id: None,
        config: Some(serde_json::json!({"Env": [key]})),
        inputs: serde_json::Value::Null,
        created: "2026-01-01T00:00:00Z".to_string(),
    }
}

#[test]
fn records_are_asked_once_by_key_and_a_registry_that_went_away_is_not_asked_again() {
    let Some((reg, _)) = Registry::start(false) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("s")).unwrap();
    let client = Arc::new(Client::new(options(tmp.path())).unwrap());
    let cache = Reference::parse(&format!("{}/c/app:bc", reg.host)).unwrap();
    let no_layer = |_: &rbk_store::oci::Descriptor| -> Result<_, _> { unreachable!() };
    let report = export(
        &client,
        &store,
        &cache,
        &[record("k1"), record("k2")],
        &no_layer,
        &quiet,
    )
    .unwrap();
    assert_eq!((report.records, report.pushed, report.skipped), (2, 2, 0));
    // Again, with one new: only that one is pushed.
    let report = export(
        &client,
        &store,
        &cache,
        &[record("k2"), record("k3")],
        &no_layer,
        &quiet,
    )
    .unwrap();
    assert_eq!((report.pushed, report.skipped), (1, 1));

    let imported = RemoteCache::import(client.clone(), &store, cache.clone(), &quiet).unwrap();
    assert!(imported.by_key());
    assert_eq!(imported.len(), 2, "the index lists the last export");
    // k1 is not in the index, and is found all the same.
    assert_eq!(imported.get("k1").unwrap().record, record("k1"));
    assert!(imported.get("nope").is_none());
    assert!(imported.get("k1").is_some());
    let st = imported.stats();
    assert_eq!((st.asked, st.found, st.error), (2, 1, None));

    drop(reg);
    assert!(imported.get("k2").is_none(), "the registry is gone");
    assert!(imported.get("k3").is_none());
    let st = imported.stats();
    assert_eq!(st.asked, 3, "k3 was not asked of a registry that failed");
    let error = st.error.unwrap();
    assert!(
        error.contains("k2") && error.contains("cannot reach"),
        "{error}"
    );
    // What was found stays found.
    assert!(imported.get("k1").is_some());
}

#[test]
fn a_cache_older_rbk_wrote_at_the_ref_is_read_and_newer_records_are_still_found() {
    use rbk_store::oci::{Descriptor, MEDIA_TYPE_OCI_MANIFEST};
    use rbk_store::registry::cache::{CacheEntry, CACHE_CONFIG_MEDIA_TYPE};
    let Some((reg, _)) = Registry::start(false) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("s")).unwrap();
    let client = Arc::new(Client::new(options(tmp.path())).unwrap());
    let cache = Reference::parse(&format!("{}/c/old:bc", reg.host)).unwrap();
    let no_layer = |_: &rbk_store::oci::Descriptor| -> Result<_, _> { unreachable!() };
    // A newer builder exported "new"; then an older rbk wrote its whole
    // cache (one manifest listing "old") over the ref.
    export(&client, &store, &cache, &[record("new")], &no_layer, &quiet).unwrap();
    let entry = CacheEntry {
        record: record("old"),
        remote: None,
    };
    let config =
        serde_json::to_vec(&serde_json::json!({"version": 1, "records": [entry]})).unwrap();
    let config = Descriptor::new(
        CACHE_CONFIG_MEDIA_TYPE,
        store.content.put(&config).unwrap(),
        config.len() as u64,
    );
    client
        .push_blobs(&store, &cache, std::slice::from_ref(&config), &quiet)
        .unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_OCI_MANIFEST,
        "config": config,
        "layers": [],
    });
    client
        .put_manifest(
            &cache,
            MEDIA_TYPE_OCI_MANIFEST,
            &serde_json::to_vec(&manifest).unwrap(),
            &quiet,
        )
        .unwrap();

    let imported = RemoteCache::import(client, &store, cache, &quiet).unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported.get("old").unwrap().record, record("old"));
    assert_eq!(imported.get("new").unwrap().record, record("new"));
    assert_eq!(
        imported.stats().asked,
        1,
        "only the key the old cache lacks"
    );
}
