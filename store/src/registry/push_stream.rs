//! A push's layers compressed and uploaded at once.
//!
//! A layer stored uncompressed with no variant for the push's format yet
//! is compressed (see [`crate::variant`]) while its compressed bytes go to
//! the registry: one streamed, chunked `PATCH` into an upload session, fed
//! piece by piece as the compressor makes them, then a bodiless `PUT
//! ?digest=` once the last piece (and so the digest) is known. The registry
//! checks that digest against what it received. The same bytes go into the
//! store as the variant, so the next push (to another registry, or after a
//! failure) reuses them.
//!
//! The digest is unknown before compression ends, so no `HEAD` can ask
//! first whether the registry has it. So only layers a build step of this
//! store made are streamed (those another store is unlikely to have
//! pushed); a base image's layer, imported or loaded uncompressed, is
//! compressed first and asked for with `HEAD`, so a registry that has it
//! gets no byte of it. A streamed
//! upload is not retried (its bytes are gone): when it fails, the layer is
//! compressed to the end into the store anyway, and the ordinary upload of
//! the stored variant, with its retries, takes over.

use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

use super::http::{Body, Client, Session};
use super::push::accepted_location;
use super::{Progress, RegistryError};
use crate::digest::Digest;
use crate::images::{Image, Store};
use crate::oci::Descriptor;
use crate::variant::ExportFormat;

/// Compressed pieces in flight between the compressor and the upload.
const IN_FLIGHT: usize = 8;

impl Client {
    /// Compresses and uploads, at once, every layer of `images` that has no
    /// `format` variant in the store yet (each distinct layer once, layers
    /// in parallel). Afterwards every layer has its variant, so the
    /// manifest can be made. Returns the variants now in the registry.
    pub(super) fn stream_new_layers(
        &self,
        store: &Store,
        images: &[Image],
        dest: &crate::reference::Reference,
        format: &ExportFormat,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<Vec<Digest>, RegistryError> {
        let mut pending: Vec<&Descriptor> = Vec::new();
        for l in images.iter().flat_map(|i| &i.manifest.layers) {
            if !pending.iter().any(|p| p.digest == l.digest)
                && store.content.made_here(&l.digest)
                && store.cached_layer_variant(l, format)?.is_none()
            {
                pending.push(l);
            }
        }
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let s = self.session(dest.domain())?;
        super::for_each_parallel(&pending, self.opts.parallel, |layer| {
            self.stream_layer(&s, store, dest.path(), layer, format, progress)
        })
    }

    /// Streams one layer's variant to `repo` as it is made. When the
    /// stream fails, the variant (by then in the store all the same) is
    /// uploaded from the store instead: the stream's failure is reported as
    /// a retry, the upload's is the error. Returns the variant's digest.
    fn stream_layer(
        &self,
        s: &Session,
        store: &Store,
        repo: &str,
        layer: &Descriptor,
        format: &ExportFormat,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<Digest, RegistryError> {
        let scopes = vec![format!("repository:{repo}:pull,push")];
        let location = self.open_upload(s, repo, &scopes, progress)?;
        progress(&Progress::Started {
            digest: layer.digest.clone(),
            size: layer.size,
        });
        let (tx, rx) = sync_channel(IN_FLIGHT);
        let (made, sent) = std::thread::scope(|scope| {
            let upload = scope.spawn(|| {
                let body = Body::Stream(Mutex::new(Some(Box::new(Pieces::new(rx)))));
                let headers = [("Content-Type", "application/octet-stream")];
                let r = self.send(s, "PATCH", &location, &headers, &body, &scopes, progress)?;
                accepted_location(s, r, "PATCH", &location)
            });
            let mut side = Feed(tx);
            let made = store.layer_variant_teed(layer, format, &mut side);
            if made.is_ok() {
                // The end of the stream; a failed compression leaves
                // without it, and the upload then fails instead of ending.
                let _ = side.0.send(None);
            }
            drop(side);
            let sent = upload
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (made, sent)
        });
        let variant = made?;
        let close = |next: String| {
            self.close_upload(
                s,
                repo,
                &next,
                &variant.digest,
                &Body::Empty,
                &scopes,
                progress,
            )
        };
        match sent.and_then(close) {
            Ok(()) => {
                s.placed(&variant.digest, repo);
                progress(&Progress::Done {
                    digest: layer.digest.clone(),
                });
            }
            Err(e) => {
                // The stored variant, uploaded the ordinary way (with its
                // retries); its failure is the push's.
                progress(&Progress::Retrying {
                    what: format!("upload of {} (layer {})", variant.digest, layer.digest),
                    attempt: 2,
                    reason: e.to_string(),
                });
                self.upload_blob(s, store, repo, &variant, None, progress)?;
                s.placed(&variant.digest, repo);
            }
        }
        Ok(variant.digest)
    }

    /// POSTs a new upload session: its location.
    fn open_upload(
        &self,
        s: &Session,
        repo: &str,
        scopes: &[String],
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<String, RegistryError> {
        let start = format!("/v2/{repo}/blobs/uploads/");
        let r = self.send(s, "POST", &start, &[], &Body::Empty, scopes, progress)?;
        accepted_location(s, r, "POST", &start)
    }
}

/// The compressor's end of the stream: each write becomes a piece;
/// `None` marks the end.
struct Feed(SyncSender<Option<Vec<u8>>>);

impl Write for Feed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .send(Some(buf.to_vec()))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The upload's end: the pieces in order. A stream that stops without its
/// end mark (the compression failed) is an error, so the request fails
/// rather than ending early as if complete.
struct Pieces {
    rx: Receiver<Option<Vec<u8>>>,
    piece: Vec<u8>,
    at: usize,
    ended: bool,
}

impl Pieces {
    fn new(rx: Receiver<Option<Vec<u8>>>) -> Self {
        Pieces {
            rx,
            piece: Vec::new(),
            at: 0,
            ended: false,
        }
    }
}

impl Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.piece.len() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Some(p)) => {
                    self.piece = p;
                    self.at = 0;
                }
                Ok(None) => self.ended = true,
                Err(_) => return Err(io::Error::other("the layer's compression stopped")),
            }
        }
        let n = buf.len().min(self.piece.len() - self.at);
        buf[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pieces_arrive_in_order_and_an_unmarked_end_is_an_error() {
        let (tx, rx) = sync_channel(2);
        let writer = std::thread::spawn(move || {
            let mut f = Feed(tx);
            f.write_all(b"hello ").unwrap();
            f.write_all(b"").unwrap();
            f.write_all(b"world").unwrap();
            f.0.send(None).unwrap();
        });
        let mut got = String::new();
        Pieces::new(rx).read_to_string(&mut got).unwrap();
        writer.join().unwrap();
        assert_eq!(got, "hello world");

        let (tx, rx) = sync_channel(2);
        tx.send(Some(b"part".to_vec())).unwrap();
        drop(tx);
        let mut out = Vec::new();
        let err = Pieces::new(rx).read_to_end(&mut out).unwrap_err();
        assert!(err.to_string().contains("compression stopped"), "{err}");
        assert_eq!(out, b"part");
    }
}
