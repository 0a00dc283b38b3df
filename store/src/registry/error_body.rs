//! What a registry says when it refuses: the explanation in its JSON error
//! body (`{"errors":[{"code":…,"message":…}]}`), read within limits.

use ureq::http::Response;

use super::transfer::{MinSpeed, Paced};

/// The registry's explanation from its JSON error body
/// (`{"errors":[{"code":…,"message":…}]}`), or the raw text.
pub(crate) fn error_message(r: Response<ureq::Body>) -> String {
    let status = r.status();
    // Held to the default floor too: a trickled error body is cut short
    // (and whatever came is the message).
    let limited = r.into_body().into_with_config().limit(64 << 10).reader();
    let mut reader = Paced::new(limited, "", MinSpeed::default());
    let mut body = Vec::new();
    let _ = std::io::Read::read_to_end(&mut reader, &mut body);
    describe_error_body(status.as_u16(), &body)
}

/// See [`error_message`].
pub(crate) fn describe_error_body(status: u16, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(body) {
        let parts: Vec<String> = e
            .errors
            .iter()
            .map(|i| format!("{}: {}", i.code, i.message))
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        format!("HTTP {status}")
    } else {
        text.chars().take(300).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies() {
        let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#;
        assert_eq!(
            describe_error_body(401, body),
            "UNAUTHORIZED: authentication required"
        );
        assert_eq!(describe_error_body(500, b""), "HTTP 500");
    }
}
