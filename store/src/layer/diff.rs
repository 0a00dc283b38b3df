//! Writing layers: an overlay upper dir or the difference of two trees
//! becomes a deterministic tar, hashed and compressed in one pass.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{
    is_overlay_whiteout, lstat_opt, DiffOptions, LayerError, LayerInfo, OPAQUE_MARKER,
    OVERLAY_OPAQUE_USER_XATTR, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX,
};
use crate::compress::{compressor, Compression, Compressor, HashingWriter};
use crate::sys;

/// Writes the changes recorded in an overlayfs upper dir as an OCI layer.
///
/// 0/0 character devices become `.wh.<name>` whiteouts, directories marked
/// opaque (`trusted.overlay.opaque` or `user.overlay.opaque` = `y`) get a
/// `.wh..wh..opq` entry, and overlay's own xattrs are left out. Hard links
/// within the layer are written as links.
pub fn diff_upper(
    upper: &Path,
    out: impl Write,
    opts: impl Into<DiffOptions>,
) -> Result<LayerInfo, LayerError> {
    let mut items = Vec::new();
    plan_upper(upper, Path::new(""), &mut items)?;
    write_layer(&items, out, opts.into(), true)
}

/// Writes what changed in `new` relative to `base` (everything when `base`
/// is `None`): entries added or modified (type, mode, owner, mtime, size,
/// xattrs, link target, or content when the timestamps cannot tell) and a
/// whiteout for each entry deleted. Directories holding a change are
/// included so the layer carries their metadata.
pub fn diff_trees(
    base: Option<&Path>,
    new: &Path,
    out: impl Write,
    opts: impl Into<DiffOptions>,
) -> Result<LayerInfo, LayerError> {
    let mut items = Vec::new();
    plan_trees(base, new, Path::new(""), &mut items)?;
    write_layer(&items, out, opts.into(), false)
}

/// Tars a whole directory as a layer (`diff_trees(None, dir, ..)`), e.g. for
/// `rbk import` of an unpacked rootfs.
pub fn tar_dir(
    dir: &Path,
    out: impl Write,
    opts: impl Into<DiffOptions>,
) -> Result<LayerInfo, LayerError> {
    diff_trees(None, dir, out, opts)
}

/// One entry to write, in archive order.
enum Item {
    /// A file, directory, link or device taken from disk.
    Node {
        name: PathBuf,
        abs: PathBuf,
        meta: Metadata,
    },
    /// A whiteout or opaque marker (empty file with zeroed metadata, so both
    /// snapshotters produce identical bytes for the same deletion).
    Whiteout { name: PathBuf },
}

fn whiteout_name(name: &OsStr) -> OsString {
    let mut w = OsString::from(WHITEOUT_PREFIX);
    w.push(name);
    w
}

/// The children of `dir` sorted by byte order of their names.
fn sorted_children(dir: &Path) -> Result<Vec<OsString>, LayerError> {
    let rd = fs::read_dir(dir).map_err(LayerError::io("read directory", dir))?;
    let mut names = Vec::new();
    for e in rd {
        names.push(
            e.map_err(LayerError::io("read directory", dir))?
                .file_name(),
        );
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

fn lstat(p: &Path) -> Result<Metadata, LayerError> {
    fs::symlink_metadata(p).map_err(LayerError::io("stat", p))
}

fn is_opaque(dir: &Path) -> Result<bool, LayerError> {
    for x in [OVERLAY_OPAQUE_XATTR, OVERLAY_OPAQUE_USER_XATTR] {
        let v =
            sys::get_xattr(dir, OsStr::new(x)).map_err(LayerError::io("read xattrs of", dir))?;
        if v.as_deref() == Some(b"y") {
            return Ok(true);
        }
    }
    Ok(false)
}

fn plan_upper(root: &Path, rel: &Path, items: &mut Vec<Item>) -> Result<(), LayerError> {
    let dir = root.join(rel);
    let mut kids = Vec::new();
    for name in sorted_children(&dir)? {
        let abs = dir.join(&name);
        let meta = lstat(&abs)?;
        let emitted = if is_overlay_whiteout(&meta) {
            whiteout_name(&name)
        } else {
            name.clone()
        };
        kids.push((emitted, abs, meta));
    }
    // Sort by the names as they appear in the archive (`.wh.x` sorts apart
    // from `x`), which is what "sorted entries" means to a reader.
    kids.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (emitted, abs, meta) in kids {
        let name = rel.join(&emitted);
        if is_overlay_whiteout(&meta) {
            items.push(Item::Whiteout { name });
            continue;
        }
        let is_dir = meta.is_dir();
        items.push(Item::Node {
            name: name.clone(),
            abs: abs.clone(),
            meta,
        });
        if is_dir {
            if is_opaque(&abs)? {
                items.push(Item::Whiteout {
                    name: name.join(OPAQUE_MARKER),
                });
            }
            plan_upper(root, &name, items)?;
        }
    }
    Ok(())
}

fn plan_trees(
    base: Option<&Path>,
    new: &Path,
    rel: &Path,
    items: &mut Vec<Item>,
) -> Result<(), LayerError> {
    let new_dir = new.join(rel);
    let new_names = sorted_children(&new_dir)?;
    // The base side counts only where it is a real directory; a symlink or
    // file there means everything under `rel` is new.
    let base_dir = match base {
        Some(b) => {
            let d = b.join(rel);
            match lstat_opt(&d)? {
                Some(m) if m.is_dir() => Some(d),
                _ => None,
            }
        }
        None => None,
    };
    let base_names = match &base_dir {
        Some(d) => sorted_children(d)?,
        None => Vec::new(),
    };
    let mut kids: Vec<(OsString, Option<OsString>)> = Vec::new();
    for n in &new_names {
        kids.push((n.clone(), Some(n.clone())));
    }
    for n in &base_names {
        if new_names
            .binary_search_by(|x| x.as_bytes().cmp(n.as_bytes()))
            .is_err()
        {
            kids.push((whiteout_name(n), None));
        }
    }
    kids.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (emitted, real) in kids {
        let name = rel.join(&emitted);
        let Some(real) = real else {
            items.push(Item::Whiteout { name });
            continue;
        };
        let abs = new_dir.join(&real);
        let meta = lstat(&abs)?;
        let old = match &base_dir {
            Some(d) => lstat_opt(&d.join(&real))?.map(|m| (d.join(&real), m)),
            None => None,
        };
        if meta.is_dir() {
            let mut sub = Vec::new();
            let changed = match &old {
                Some((op, om)) if om.is_dir() => {
                    plan_trees(base, new, &name, &mut sub)?;
                    !same_entry(op, om, &abs, &meta)?
                }
                _ => {
                    plan_trees(None, new, &name, &mut sub)?;
                    true
                }
            };
            if changed || !sub.is_empty() {
                items.push(Item::Node { name, abs, meta });
                items.extend(sub);
            }
        } else {
            let changed = match &old {
                Some((op, om)) => !same_entry(op, om, &abs, &meta)?,
                None => true,
            };
            if changed {
                items.push(Item::Node { name, abs, meta });
            }
        }
    }
    Ok(())
}

/// Whether two entries are the same for layer purposes. ctime and atime are
/// ignored (a copy changes them); when both mtimes have zero nanoseconds the
/// timestamps may have been truncated by a tar round trip, so regular files
/// are then compared byte for byte.
fn same_entry(a: &Path, am: &Metadata, b: &Path, bm: &Metadata) -> Result<bool, LayerError> {
    if am.mode() != bm.mode()
        || am.uid() != bm.uid()
        || am.gid() != bm.gid()
        || am.mtime() != bm.mtime()
        || am.mtime_nsec() != bm.mtime_nsec()
    {
        return Ok(false);
    }
    let ft = am.file_type();
    if ft.is_file() {
        if am.size() != bm.size() || am.nlink() != bm.nlink() {
            return Ok(false);
        }
        if am.mtime_nsec() == 0 && !same_content(a, b)? {
            return Ok(false);
        }
    } else if ft.is_symlink() {
        let ta = fs::read_link(a).map_err(LayerError::io("read link", a))?;
        let tb = fs::read_link(b).map_err(LayerError::io("read link", b))?;
        if ta != tb {
            return Ok(false);
        }
    } else if (ft.is_char_device() || ft.is_block_device()) && am.rdev() != bm.rdev() {
        return Ok(false);
    }
    Ok(xattrs(a, false)? == xattrs(b, false)?)
}

fn same_content(a: &Path, b: &Path) -> Result<bool, LayerError> {
    let mut fa = File::open(a).map_err(LayerError::io("open", a))?;
    let mut fb = File::open(b).map_err(LayerError::io("open", b))?;
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(LayerError::io("read", a))?;
        let nb = read_full(&mut fb, &mut bb).map_err(LayerError::io("read", b))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The xattrs that belong in a layer, sorted by name. Overlay's own
/// bookkeeping and SELinux labels (host policy, not image content) are left
/// out. In an upper dir, redirect/metacopy xattrs mean the entry's real
/// content lives elsewhere, which a tar cannot say: refuse.
fn xattrs(path: &Path, upper: bool) -> Result<Vec<(OsString, Vec<u8>)>, LayerError> {
    let names = sys::list_xattrs(path).map_err(LayerError::io("list xattrs of", path))?;
    let mut out = Vec::new();
    for n in names {
        let b = n.as_bytes();
        if upper && (b == b"trusted.overlay.redirect" || b == b"trusted.overlay.metacopy") {
            return Err(LayerError::OverlayFeature {
                path: path.to_path_buf(),
                xattr: n.to_string_lossy().into_owned(),
            });
        }
        if b.starts_with(b"trusted.overlay.")
            || b.starts_with(b"user.overlay.")
            || b == b"security.selinux"
        {
            continue;
        }
        if let Some(v) = sys::get_xattr(path, &n).map_err(LayerError::io("read xattrs of", path))? {
            out.push((n, v));
        }
    }
    out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(out)
}

type Sink<W> = HashingWriter<Compressor<BlobSink<W>>>;

/// What the compressor writes into: hashed for the blob's digest, except
/// for an uncompressed layer, whose blob digest is its diff id (hashed
/// already, one level up): sha256 is the costliest part of a diff.
enum BlobSink<W> {
    Hashing(HashingWriter<W>),
    Counting { inner: W, len: u64 },
}

impl<W: Write> Write for BlobSink<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            BlobSink::Hashing(h) => h.write(buf),
            BlobSink::Counting { inner, len } => {
                let n = inner.write(buf)?;
                *len += n as u64;
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            BlobSink::Hashing(h) => h.flush(),
            BlobSink::Counting { inner, .. } => inner.flush(),
        }
    }
}

/// Streams `items` as a tar through the diffID hasher, the compressor and
/// the digest hasher into `out`.
fn write_layer<W: Write>(
    items: &[Item],
    out: W,
    opts: DiffOptions,
    upper: bool,
) -> Result<LayerInfo, LayerError> {
    let werr = |source| LayerError::Write { source };
    let sink = if opts.compression == Compression::None {
        BlobSink::Counting { inner: out, len: 0 }
    } else {
        BlobSink::Hashing(HashingWriter::new(out))
    };
    let inner = compressor(sink, opts.compression, opts.level).map_err(werr)?;
    let mut w = TarWriter {
        out: HashingWriter::new(inner),
        links: HashMap::new(),
        buf: vec![0u8; 256 * 1024],
        opts,
        upper,
    };
    for item in items {
        w.item(item)?;
    }
    w.out.write_all(&[0u8; 1024]).map_err(werr)?;
    let (comp, diff_id, uncompressed_size) = w.out.finish();
    let mut blob = comp.finish().map_err(werr)?;
    blob.flush().map_err(werr)?;
    let (digest, size) = match blob {
        BlobSink::Hashing(h) => {
            let (_, digest, size) = h.finish();
            (digest, size)
        }
        BlobSink::Counting { len, .. } => (diff_id.clone(), len),
    };
    Ok(LayerInfo {
        diff_id,
        digest,
        size,
        uncompressed_size,
        media_type: opts.compression.layer_media_type(),
    })
}

struct TarWriter<W: Write> {
    out: Sink<W>,
    /// (dev, inode) of multiply-linked files already written → their name.
    links: HashMap<(u64, u64), Vec<u8>>,
    buf: Vec<u8>,
    opts: DiffOptions,
    upper: bool,
}

impl<W: Write> TarWriter<W> {
    fn item(&mut self, item: &Item) -> Result<(), LayerError> {
        match item {
            Item::Whiteout { name } => {
                let mut h = tar::Header::new_ustar();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mtime(0);
                h.set_size(0);
                let mut pax = Vec::new();
                set_name(&mut h, name.as_os_str().as_bytes(), &mut pax);
                self.header(&h, &pax)
            }
            Item::Node { name, abs, meta } => self.node(name, abs, meta),
        }
    }

    fn node(&mut self, name: &Path, abs: &Path, meta: &Metadata) -> Result<(), LayerError> {
        let ft = meta.file_type();
        let mut h = tar::Header::new_ustar();
        let mut pax = Vec::new();
        let mut tar_name = name.as_os_str().as_bytes().to_vec();
        if ft.is_dir() {
            tar_name.push(b'/');
        }
        set_name(&mut h, &tar_name, &mut pax);
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(u64::from(meta.uid()));
        h.set_gid(u64::from(meta.gid()));
        let mut mtime = meta.mtime().max(0);
        if let Some(clamp) = self.opts.clamp_mtime {
            mtime = mtime.min(clamp.max(0));
        }
        h.set_mtime(mtime as u64);
        h.set_size(0);

        if !ft.is_dir() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                let first = first.clone();
                h.set_entry_type(tar::EntryType::Link);
                set_link_name(&mut h, &first, &mut pax);
                return self.header(&h, &pax);
            }
            self.links.insert(key, name.as_os_str().as_bytes().to_vec());
        }
        for (k, v) in xattrs(abs, self.upper)? {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k.as_bytes());
            pax_record(&mut pax, &key, &v);
        }
        if ft.is_file() {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(meta.size());
            self.header(&h, &pax)?;
            return self.file_data(abs, meta.size());
        }
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
        } else if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            let target = fs::read_link(abs).map_err(LayerError::io("read link", abs))?;
            set_link_name(&mut h, target.as_os_str().as_bytes(), &mut pax);
        } else if ft.is_char_device() || ft.is_block_device() {
            h.set_entry_type(if ft.is_char_device() {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            });
            let (major, minor) = sys::dev_major_minor(meta.rdev());
            let too_big = |_| LayerError::Io {
                op: "archive device numbers of",
                path: abs.to_path_buf(),
                source: io::Error::new(io::ErrorKind::InvalidData, "device number too large"),
            };
            h.set_device_major(u32::try_from(major).map_err(too_big)?)
                .map_err(|e| LayerError::io("archive", abs)(e))?;
            h.set_device_minor(u32::try_from(minor).map_err(too_big)?)
                .map_err(|e| LayerError::io("archive", abs)(e))?;
        } else if ft.is_fifo() {
            h.set_entry_type(tar::EntryType::Fifo);
        } else {
            // Sockets cannot be archived; tar and Docker skip them too.
            return Ok(());
        }
        self.header(&h, &pax)
    }

    /// Writes an optional PAX extended header, then `h`.
    fn header(&mut self, h: &tar::Header, pax: &[u8]) -> Result<(), LayerError> {
        let werr = |source| LayerError::Write { source };
        if !pax.is_empty() {
            let mut x = tar::Header::new_ustar();
            x.set_entry_type(tar::EntryType::XHeader);
            let mut ignored = Vec::new();
            let base = h.path_bytes();
            let base = base
                .rsplit(|&b| b == b'/')
                .find(|s| !s.is_empty())
                .unwrap_or(b"x");
            let mut xname = b"PaxHeaders/".to_vec();
            xname.extend_from_slice(&base[..base.len().min(80)]);
            set_name(&mut x, &xname, &mut ignored);
            x.set_mode(0o644);
            x.set_uid(0);
            x.set_gid(0);
            x.set_mtime(0);
            x.set_size(pax.len() as u64);
            x.set_cksum();
            self.out.write_all(x.as_bytes()).map_err(werr)?;
            self.out.write_all(pax).map_err(werr)?;
            self.pad(pax.len() as u64)?;
        }
        let mut h = h.clone();
        h.set_cksum();
        self.out.write_all(h.as_bytes()).map_err(werr)
    }

    fn pad(&mut self, len: u64) -> Result<(), LayerError> {
        let rem = (512 - (len % 512) as usize) % 512;
        self.out
            .write_all(&[0u8; 512][..rem])
            .map_err(|source| LayerError::Write { source })
    }

    /// Copies exactly `size` bytes of `abs`; a file that shrank since it was
    /// stat'ed would corrupt the archive, so that is an error.
    fn file_data(&mut self, abs: &Path, size: u64) -> Result<(), LayerError> {
        let mut f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(abs)
            .map_err(LayerError::io("open", abs))?;
        let mut left = size;
        while left > 0 {
            let want = self
                .buf
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match f.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(LayerError::Io {
                        op: "read",
                        path: abs.to_path_buf(),
                        source: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "file shrank while it was being archived",
                        ),
                    })
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LayerError::io("read", abs)(e)),
            };
            self.out
                .write_all(&self.buf[..n])
                .map_err(|source| LayerError::Write { source })?;
            left -= n as u64;
        }
        self.pad(size)
    }
}

/// Puts `name` in the ustar name/prefix fields, or, when it does not fit,
/// a truncated name there and the full one in a PAX `path` record.
fn set_name(h: &mut tar::Header, name: &[u8], pax: &mut Vec<u8>) {
    let Some(u) = h.as_ustar_mut() else { return };
    if name.len() <= u.name.len() {
        u.name[..name.len()].copy_from_slice(name);
        return;
    }
    // Split at a '/' so that the prefix fits 155 bytes and the rest 100.
    let split = name
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'/' && i <= u.prefix.len() && name.len() - i - 1 <= u.name.len())
        .map(|(i, _)| i)
        .next_back();
    match split {
        Some(i) if i > 0 && i + 1 < name.len() => {
            u.prefix[..i].copy_from_slice(&name[..i]);
            let rest = &name[i + 1..];
            u.name[..rest.len()].copy_from_slice(rest);
        }
        _ => {
            let n = u.name.len();
            u.name.copy_from_slice(&name[..n]);
            pax_record(pax, b"path", name);
        }
    }
}

fn set_link_name(h: &mut tar::Header, target: &[u8], pax: &mut Vec<u8>) {
    let Some(u) = h.as_ustar_mut() else { return };
    if target.len() <= u.linkname.len() {
        u.linkname[..target.len()].copy_from_slice(target);
    } else {
        let n = u.linkname.len();
        u.linkname.copy_from_slice(&target[..n]);
        pax_record(pax, b"linkpath", target);
    }
}

/// Appends a PAX record `"<len> <key>=<value>\n"`, where `<len>` counts the
/// whole record including its own digits.
fn pax_record(pax: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    pax.extend_from_slice(len.to_string().as_bytes());
    pax.push(b' ');
    pax.extend_from_slice(key);
    pax.push(b'=');
    pax.extend_from_slice(value);
    pax.push(b'\n');
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        for (k, v, want) in [
            (&b"path"[..], &b"a"[..], &b"9 path=a\n"[..]),
            (b"path", &[b'x'; 95][..], b""),
        ] {
            let mut out = Vec::new();
            pax_record(&mut out, k, v);
            let (len, _) = out.split_at(out.iter().position(|&b| b == b' ').unwrap());
            let len: usize = std::str::from_utf8(len).unwrap().parse().unwrap();
            assert_eq!(len, out.len());
            if !want.is_empty() {
                assert_eq!(out, want);
            }
        }
    }

    #[test]
    fn long_names_use_prefix_or_pax() {
        let cases: &[(usize, usize, bool)] = &[(50, 0, false), (120, 40, false), (300, 0, true)];
        for &(total, seg, want_pax) in cases {
            let name: Vec<u8> = if seg > 0 {
                let mut n = vec![b'd'; seg];
                n.push(b'/');
                n.extend(vec![b'f'; total - seg - 1]);
                n
            } else {
                vec![b'f'; total]
            };
            let mut h = tar::Header::new_ustar();
            let mut pax = Vec::new();
            set_name(&mut h, &name, &mut pax);
            assert_eq!(!pax.is_empty(), want_pax, "{total}");
            if !want_pax {
                assert_eq!(&*h.path_bytes(), &name[..]);
            }
        }
    }
}
