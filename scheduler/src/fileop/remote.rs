//! A build context given as an `http(s)://` URL, as `docker build URL`
//! takes one: a tar archive (plain, gzip, bzip2, xz, zstd) is extracted as
//! the context, with the same confinement as `ADD`'s extraction (no entry
//! lands outside the directory); any other body is the Dockerfile itself,
//! with an empty context.

use std::io::Seek;
use std::path::Path;

use super::dest::Writer;
use super::{archive, url, FileOpError};

/// What a context URL turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteContext {
    /// A tar archive, extracted; `sha256:<hex>` of the bytes fetched.
    Archive {
        /// Digest of the download.
        digest: String,
    },
    /// A Dockerfile, written as `Dockerfile` in an otherwise empty
    /// context; `sha256:<hex>` of it.
    Dockerfile {
        /// Digest of the download.
        digest: String,
    },
}

impl RemoteContext {
    /// `sha256:<hex>` of what was fetched.
    pub fn digest(&self) -> &str {
        match self {
            RemoteContext::Archive { digest } | RemoteContext::Dockerfile { digest } => digest,
        }
    }
}

/// Fetches the context at `url` into the empty directory `into`.
pub fn fetch_context(url_text: &str, into: &Path) -> Result<RemoteContext, FileOpError> {
    let (dl, digest) = url::download_hashed(url_text)?;
    let io = |op: &'static str| {
        move |source: std::io::Error| FileOpError::DownloadBody {
            url: url_text.to_string(),
            op,
            source,
        }
    };
    let mut body = dl.body;
    let label = Path::new(url_text);
    match archive::detect(&body, label)? {
        Some(format) => {
            let w = Writer::new(into, false, (0, 0));
            archive::extract(&w, &body, label, format, into, None)?;
            Ok(RemoteContext::Archive { digest })
        }
        None => {
            // detect read the head through a clone sharing the offset
            body.rewind().map_err(io("rewind the body"))?;
            let dest = into.join("Dockerfile");
            let mut out = std::fs::File::create(&dest).map_err(io("write the Dockerfile"))?;
            std::io::copy(&mut body, &mut out).map_err(io("write the Dockerfile"))?;
            Ok(RemoteContext::Dockerfile { digest })
        }
    }
}
