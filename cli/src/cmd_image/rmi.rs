//! `rbk rmi`: untag images, and delete those no tag is left on, unless a
//! container on record still uses them.

use std::io::Write;

use rbk_store::images::RemoveEvent;
use rbk_store::{Reference, Store};

/// `rbk rmi`.
pub(super) fn rmi(
    store: &Store,
    out: &mut dyn Write,
    names: &[String],
    force: bool,
) -> anyhow::Result<i32> {
    let mut code = 0;
    for n in names {
        if let Some(conflict) = (!force).then(|| in_use(store, n)).flatten() {
            eprintln!("rbk: {conflict}");
            code = 1;
            continue;
        }
        match store.remove(n, force) {
            Ok(events) => {
                for e in events {
                    match e {
                        RemoveEvent::Untagged(r) => writeln!(out, "Untagged: {}", r.familiar())?,
                        RemoveEvent::Deleted(d) => writeln!(out, "Deleted: {d}")?,
                    }
                }
            }
            Err(e) => {
                eprintln!("rbk: {}", rbk_scheduler::error_chain(&e));
                code = 1;
            }
        }
    }
    Ok(code)
}

/// Why `rmi NAME` must be forced, as Docker says it: a container on record
/// uses the image, and NAME is its last tag or its id (removing it would
/// take the files the container stands on).
fn in_use(store: &Store, name: &str) -> Option<String> {
    let image = store.resolve(name).ok()?;
    let is_tag = Reference::parse(name).is_ok_and(|r| image.tags.contains(&r));
    if is_tag && image.tags.len() > 1 {
        return None;
    }
    let user = rbk_runtime::container::list(store.root())
        .into_iter()
        .find(|c| store.resolve(&c.image).is_ok_and(|i| i.id == image.id))?;
    let short = image.id.hex().get(..12).unwrap_or_default().to_string();
    Some(format!(
        "conflict: unable to remove repository reference {name:?} (must force) - container {} is using its referenced image {short}",
        user.id
    ))
}
