//! `rbk-attest` writes what a build can prove about an image: in-toto
//! statements ([`statement`]) carrying a SLSA v1 provenance predicate
//! ([`provenance`]) or an SPDX 2.3 software bill of materials ([`spdx`]) of
//! the packages found in the image's filesystem ([`sbom`]).
//!
//! It is pure data: it reads files below a root it is given and returns
//! JSON. Where the statements go (an attestation manifest in the image
//! index, as BuildKit attaches them) is the store's and the exporter's job.

#![deny(missing_docs)]

pub mod cosign;
pub mod manifest;
pub mod provenance;
pub mod sbom;
pub mod spdx;
pub mod statement;

/// RFC 3339 UTC time with seconds, as SLSA and SPDX write timestamps.
pub fn rfc3339(unix_seconds: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix_seconds)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&f)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_utc_seconds() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
