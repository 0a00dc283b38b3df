//! rpm's database. Each installed package is an rpm *header* blob; the
//! rpmdb keeps them in `rpmdb.sqlite` (Fedora ≥ 33, RHEL ≥ 9: table
//! `Packages(hnum, blob)`) or `Packages.db` (SUSE's ndb). Old Berkeley DB
//! databases (`Packages`, RHEL ≤ 8) are reported as not readable rather
//! than skipped.
//!
//! The sqlite file (and its write-ahead log) is read from a private copy:
//! nothing is written into the image.

use std::path::Path;

use super::{read_below, Manager, Package, ScanError};

const DIRS: [&str; 2] = ["var/lib/rpm", "usr/lib/sysimage/rpm"];

/// The packages the rpmdb below `root` records.
pub fn scan(root: &Path) -> Result<Vec<Package>, ScanError> {
    for dir in DIRS {
        let sqlite = root.join(dir).join("rpmdb.sqlite");
        if is_file(&sqlite) {
            return sqlite_blobs(&sqlite)?
                .iter()
                .map(|b| header(b).map_err(|why| format_err(&sqlite, why)))
                .collect::<Result<Vec<_>, _>>()
                .map(|v| v.into_iter().flatten().collect());
        }
        let ndb_rel = format!("{dir}/Packages.db");
        if let Some(bytes) = read_below(root, &ndb_rel)? {
            let path = root.join(&ndb_rel);
            let blobs = ndb_blobs(&bytes).map_err(|why| format_err(&path, why))?;
            return blobs
                .iter()
                .map(|b| header(b).map_err(|why| format_err(&path, why)))
                .collect::<Result<Vec<_>, _>>()
                .map(|v| v.into_iter().flatten().collect());
        }
        let bdb = root.join(dir).join("Packages");
        if is_file(&bdb) {
            return Err(format_err(
                &bdb,
                "a Berkeley DB rpmdb (RHEL/CentOS 8 and older): rbk reads the sqlite and ndb forms only".into(),
            ));
        }
    }
    Ok(Vec::new())
}

fn is_file(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_file())
}

fn format_err(path: &Path, why: String) -> ScanError {
    ScanError::Format {
        path: path.to_path_buf(),
        why,
    }
}

fn sqlite_blobs(path: &Path) -> Result<Vec<Vec<u8>>, ScanError> {
    use rusqlite::{Connection, OpenFlags};
    let err = |e: rusqlite::Error| format_err(path, e.to_string());
    let io = |source| ScanError::Read {
        path: path.to_path_buf(),
        source,
    };
    // rpm leaves its database in WAL mode, often with a write-ahead log
    // beside it that holds the newest packages. Read a private copy of
    // both, so sqlite can replay the log without writing into the image.
    let tmp = tempfile::tempdir().map_err(io)?;
    let copy = tmp.path().join("rpmdb.sqlite");
    std::fs::copy(path, &copy).map_err(io)?;
    let wal = path.with_file_name("rpmdb.sqlite-wal");
    if is_file(&wal) {
        std::fs::copy(&wal, tmp.path().join("rpmdb.sqlite-wal")).map_err(io)?;
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let db = Connection::open_with_flags(&copy, flags).map_err(err)?;
    let mut q = db
        .prepare("SELECT blob FROM Packages ORDER BY hnum")
        .map_err(err)?;
    let rows = q.query_map([], |r| r.get::<_, Vec<u8>>(0)).map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

const NDB_MAGIC: u32 = u32::from_le_bytes(*b"RpmP");
const SLOT_MAGIC: u32 = u32::from_le_bytes(*b"Slot");
const BLOB_MAGIC: u32 = u32::from_le_bytes(*b"BlbS");
const NDB_PAGE: usize = 4096;
const NDB_BLOCK: usize = 16;

/// The header blobs of an ndb `Packages.db`: a header (magic, version,
/// generation, number of slot pages), 16-byte slots (magic, package
/// index, block offset, block count) filling the slot pages, and blobs at
/// `offset × 16` (magic, package index, generation, length, bytes).
fn ndb_blobs(db: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    if le32(db, 0) != Some(NDB_MAGIC) {
        return Err("not an ndb Packages.db (bad magic)".into());
    }
    let pages = le32(db, 12).ok_or("truncated header")? as usize;
    let end = pages.checked_mul(NDB_PAGE).ok_or("slot pages overflow")?;
    let mut blobs = Vec::new();
    // the first 16 bytes of the first page are the database header
    for at in (NDB_BLOCK..end.min(db.len())).step_by(NDB_BLOCK) {
        if le32(db, at) != Some(SLOT_MAGIC) {
            return Err(format!("bad slot at byte {at}"));
        }
        let pkg = le32(db, at + 4).ok_or("truncated slot")?;
        if pkg == 0 {
            continue; // free slot
        }
        let off = le32(db, at + 8).ok_or("truncated slot")? as usize * NDB_BLOCK;
        if le32(db, off) != Some(BLOB_MAGIC) || le32(db, off + 4) != Some(pkg) {
            return Err(format!("package {pkg}: no blob at byte {off}"));
        }
        let len = le32(db, off + 12).ok_or("truncated blob")? as usize;
        let body = db
            .get(off + 16..off + 16 + len)
            .ok_or_else(|| format!("package {pkg}: blob runs past the end"))?;
        blobs.push(body.to_vec());
    }
    Ok(blobs)
}

const TAG_NAME: i32 = 1000;
const TAG_VERSION: i32 = 1001;
const TAG_RELEASE: i32 = 1002;
const TAG_EPOCH: i32 = 1003;
const TAG_VENDOR: i32 = 1011;
const TAG_LICENSE: i32 = 1014;
const TAG_ARCH: i32 = 1022;
const TAG_SOURCERPM: i32 = 1044;
const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_I18NSTRING: u32 = 9;

/// A package from an rpm header blob (index count, data length, 16-byte
/// index entries of tag/type/offset/count, then the data store; all
/// big-endian). `gpg-pubkey` pseudo-packages are not software: `None`.
fn header(blob: &[u8]) -> Result<Option<Package>, String> {
    let il = be32(blob, 0).ok_or("truncated header")? as usize;
    let dl = be32(blob, 4).ok_or("truncated header")? as usize;
    let index_end = il
        .checked_mul(16)
        .and_then(|n| n.checked_add(8))
        .ok_or("header index overflow")?;
    let data = blob
        .get(index_end..index_end.checked_add(dl).ok_or("header data overflow")?)
        .ok_or("header runs past its blob")?;
    let mut h = Header::default();
    for i in 0..il {
        let e = 8 + i * 16;
        let tag = be32(blob, e).ok_or("truncated index")? as i32;
        let ty = be32(blob, e + 4).ok_or("truncated index")?;
        let off = be32(blob, e + 8).ok_or("truncated index")? as usize;
        let value = match ty {
            TYPE_STRING | TYPE_I18NSTRING => cstr(data, off),
            TYPE_INT32 => be32(data, off).map(|n| n.to_string()),
            _ => None,
        };
        if let Some(v) = value {
            h.set(tag, v);
        }
    }
    h.package()
}

fn cstr(data: &[u8], off: usize) -> Option<String> {
    let rest = data.get(off..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

#[derive(Default)]
struct Header {
    name: Option<String>,
    version: Option<String>,
    release: Option<String>,
    epoch: Option<String>,
    vendor: Option<String>,
    license: Option<String>,
    arch: Option<String>,
    source: Option<String>,
}

impl Header {
    fn set(&mut self, tag: i32, v: String) {
        let slot = match tag {
            TAG_NAME => &mut self.name,
            TAG_VERSION => &mut self.version,
            TAG_RELEASE => &mut self.release,
            TAG_EPOCH => &mut self.epoch,
            TAG_VENDOR => &mut self.vendor,
            TAG_LICENSE => &mut self.license,
            TAG_ARCH => &mut self.arch,
            TAG_SOURCERPM => &mut self.source,
            _ => return,
        };
        slot.get_or_insert(v);
    }

    fn package(self) -> Result<Option<Package>, String> {
        let name = self.name.ok_or("a header without a name")?;
        if name == "gpg-pubkey" {
            return Ok(None);
        }
        let mut version = self.version.ok_or("a header without a version")?;
        if let Some(r) = self.release {
            version = format!("{version}-{r}");
        }
        if let Some(e) = self.epoch.filter(|e| e != "0") {
            version = format!("{e}:{version}");
        }
        // `bash-5.2.26-3.fc40.src.rpm` → `bash`
        let source = self.source.and_then(|s| {
            let base = s.strip_suffix(".src.rpm")?;
            let mut parts = base.rsplitn(3, '-');
            let (_rel, _ver) = (parts.next()?, parts.next()?);
            parts.next().map(str::to_string)
        });
        Ok(Some(Package {
            manager: Manager::Rpm,
            source: source.filter(|s| *s != name),
            name,
            version,
            arch: self.arch,
            supplier: self.vendor,
            license: self.license,
        }))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An rpm header blob with string tags (and an INT32 epoch).
    pub(crate) fn blob(strings: &[(i32, &str)], epoch: Option<u32>) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        let mut n = 0u32;
        for (tag, s) in strings {
            index.extend((*tag as u32).to_be_bytes());
            index.extend(TYPE_STRING.to_be_bytes());
            index.extend((data.len() as u32).to_be_bytes());
            index.extend(1u32.to_be_bytes());
            data.extend(s.as_bytes());
            data.push(0);
            n += 1;
        }
        if let Some(e) = epoch {
            while data.len() % 4 != 0 {
                data.push(0);
            }
            index.extend((TAG_EPOCH as u32).to_be_bytes());
            index.extend(TYPE_INT32.to_be_bytes());
            index.extend((data.len() as u32).to_be_bytes());
            index.extend(1u32.to_be_bytes());
            data.extend(e.to_be_bytes());
            n += 1;
        }
        let mut b = n.to_be_bytes().to_vec();
        b.extend((data.len() as u32).to_be_bytes());
        b.extend(index);
        b.extend(data);
        b
    }

    #[test]
    fn a_header_gives_name_epoch_version_release_and_source() {
        let b = blob(
            &[
                (TAG_NAME, "bash"),
                (TAG_VERSION, "5.2.26"),
                (TAG_RELEASE, "3.fc40"),
                (TAG_ARCH, "x86_64"),
                (TAG_LICENSE, "GPL-3.0-or-later"),
                (TAG_SOURCERPM, "bash-5.2.26-3.fc40.src.rpm"),
            ],
            Some(1),
        );
        let p = header(&b).unwrap().unwrap();
        assert_eq!(
            (p.name.as_str(), p.version.as_str()),
            ("bash", "1:5.2.26-3.fc40")
        );
        assert_eq!(p.source, None, "the source package has the same name");
        assert_eq!(p.license.as_deref(), Some("GPL-3.0-or-later"));
    }

    #[test]
    fn truncated_or_hostile_headers_are_errors_not_panics() {
        assert!(header(&[0, 0, 0]).is_err());
        assert!(header(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1]).is_err());
        let mut b = blob(&[(TAG_NAME, "x")], None);
        b.truncate(b.len() - 1);
        assert!(header(&b).is_err());
    }

    #[test]
    fn ndb_slots_point_at_blobs() {
        let pkg = blob(
            &[
                (TAG_NAME, "zypper"),
                (TAG_VERSION, "1.14"),
                (TAG_RELEASE, "1"),
            ],
            None,
        );
        let mut db = vec![0u8; NDB_PAGE];
        db[0..4].copy_from_slice(b"RpmP");
        db[12..16].copy_from_slice(&1u32.to_le_bytes());
        for at in (NDB_BLOCK..NDB_PAGE).step_by(NDB_BLOCK) {
            db[at..at + 4].copy_from_slice(b"Slot");
        }
        // slot 1: package 7 at block 256 (byte 4096)
        db[20..24].copy_from_slice(&7u32.to_le_bytes());
        db[24..28].copy_from_slice(&256u32.to_le_bytes());
        db.extend(b"BlbS");
        db.extend(7u32.to_le_bytes());
        db.extend(1u32.to_le_bytes());
        db.extend((pkg.len() as u32).to_le_bytes());
        db.extend(&pkg);
        let blobs = ndb_blobs(&db).unwrap();
        assert_eq!(blobs, vec![pkg]);
        assert!(ndb_blobs(b"nope").is_err());
    }
}
