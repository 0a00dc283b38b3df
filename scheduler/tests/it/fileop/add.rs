//! ADD: archive extraction (and its escape attempts) and URL downloads
//! against a local HTTP server.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rbk_scheduler::fileop::{copy, AddOptions, CopySpec, FileOpError};

use super::{dirs, is_root, listing, read, spec, tree};

fn tar_bytes(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(if *kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(data.len() as u64);
        h.set_mtime(1_500_000_000);
        h.set_uid(1000);
        h.set_gid(1000);
        // Write raw names, so `..` entries can be built at all.
        let raw = &mut h.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            let raw = &mut h.as_old_mut().linkname;
            raw[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn add_spec(sources: &[&str], dest: &str) -> CopySpec {
    let mut s = spec(sources, dest);
    s.add = Some(AddOptions {
        unpack: true,
        checksum: None,
        keep_git_dir: false,
    });
    s
}

#[test]
fn add_extracts_tar_gzip_bzip2_xz_and_zstd() {
    let d = dirs();
    let plain = tar_bytes(&[
        ("top/", tar::EntryType::Directory, b"", None),
        ("top/f.txt", tar::EntryType::Regular, b"hello", None),
        ("top/l", tar::EntryType::Symlink, b"", Some("f.txt")),
        ("top/h", tar::EntryType::Link, b"", Some("top/f.txt")),
    ]);
    fs::write(d.ctx.join("a.tar"), &plain).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    fs::write(d.ctx.join("a.tgz"), gz.finish().unwrap()).unwrap();
    fs::write(
        d.ctx.join("a.tar.zst"),
        zstd::encode_all(plain.as_slice(), 3).unwrap(),
    )
    .unwrap();
    fs::write(d.ctx.join("not-a-tar.gz"), b"plain text").unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    bz.write_all(&plain).unwrap();
    fs::write(d.ctx.join("a.tar.bz2"), bz.finish().unwrap()).unwrap();
    let mut xz = Vec::new();
    lzma_rs::xz_compress(&mut plain.as_slice(), &mut xz).unwrap();
    fs::write(d.ctx.join("a.tar.xz"), xz).unwrap();

    for (name, dest) in [
        ("a.tar", "/x"),
        ("a.tgz", "/y/"),
        ("a.tar.zst", "/z"),
        ("a.tar.bz2", "/b"),
        ("a.tar.xz", "/xz/"),
    ] {
        copy(&d.ctx, &d.rootfs, &add_spec(&[name], dest), None).unwrap();
        let dir = dest.trim_matches('/');
        assert_eq!(
            read(&d.rootfs, &format!("{dir}/top/f.txt")),
            "hello",
            "{name}"
        );
        let l = d.rootfs.join(format!("{dir}/top/l"));
        assert_eq!(fs::read_link(l).unwrap(), Path::new("f.txt"));
        let f = fs::metadata(d.rootfs.join(format!("{dir}/top/f.txt"))).unwrap();
        let h = fs::metadata(d.rootfs.join(format!("{dir}/top/h"))).unwrap();
        assert_eq!(f.ino(), h.ino(), "{name}: hard link kept");
        assert_eq!(f.mtime(), 1_500_000_000);
        if is_root() {
            assert_eq!((f.uid(), f.gid()), (1000, 1000), "archive ownership kept");
        }
    }
    // Not an archive: copied as a file.
    copy(&d.ctx, &d.rootfs, &add_spec(&["not-a-tar.gz"], "/p/"), None).unwrap();
    assert_eq!(read(&d.rootfs, "p/not-a-tar.gz"), "plain text");
    // COPY never extracts.
    copy(&d.ctx, &d.rootfs, &spec(&["a.tar"], "/c/"), None).unwrap();
    assert!(d.rootfs.join("c/a.tar").is_file());
}

#[test]
fn add_tar_cannot_escape() {
    let d = dirs();
    let outside = d.outside.to_str().unwrap();
    let evil = tar_bytes(&[("../../../escaped", tar::EntryType::Regular, b"x", None)]);
    fs::write(d.ctx.join("dotdot.tar"), &evil).unwrap();
    let err = copy(&d.ctx, &d.rootfs, &add_spec(&["dotdot.tar"], "/x/"), None).unwrap_err();
    assert!(
        matches!(err, FileOpError::UnsafeArchiveEntry { .. }),
        "{err}"
    );

    // A symlink to the host, then a file written "through" it.
    let through = tar_bytes(&[
        ("link", tar::EntryType::Symlink, b"", Some(outside)),
        ("link/pwned", tar::EntryType::Regular, b"x", None),
        ("abs", tar::EntryType::Symlink, b"", Some("/")),
        ("abs/rootfile", tar::EntryType::Regular, b"r", None),
    ]);
    fs::write(d.ctx.join("through.tar"), &through).unwrap();
    copy(&d.ctx, &d.rootfs, &add_spec(&["through.tar"], "/y/"), None).unwrap();
    assert!(
        listing(&d.outside).is_empty(),
        "wrote outside: {:?}",
        listing(&d.outside)
    );
    // The write landed where chroot would put it: inside the rootfs.
    let inside = d.rootfs.join(outside.trim_start_matches('/')).join("pwned");
    assert!(inside.is_file());
    assert_eq!(read(&d.rootfs, "rootfile"), "r");
}

/// A one-shot HTTP server on 127.0.0.1; returns its base URL.
fn serve(routes: Vec<(&'static str, Vec<u8>)>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&req);
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let found = routes.iter().find(|(p, _)| path.starts_with(p));
            let (status, body) = match found {
                Some((_, body)) => ("200 OK", body.clone()),
                None => ("404 Not Found", b"nope".to_vec()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    format!("http://{addr}")
}

#[test]
fn add_url_downloads_with_name_mode_and_mtime() {
    let d = dirs();
    let base = serve(vec![("/files/tool.sh", b"#!/bin/sh\necho hi\n".to_vec())]);
    let url = format!("{base}/files/tool.sh?token=1");
    copy(&d.ctx, &d.rootfs, &add_spec(&[&url], "/dl/"), None).unwrap();
    let path = d.rootfs.join("dl/tool.sh");
    assert_eq!(fs::read_to_string(&path).unwrap(), "#!/bin/sh\necho hi\n");
    let m = fs::metadata(&path).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o600);
    assert_eq!(m.mtime(), 784_111_777, "mtime from Last-Modified");
    // Without a trailing slash the URL's content becomes the destination.
    copy(&d.ctx, &d.rootfs, &add_spec(&[&url], "/bin/renamed"), None).unwrap();
    assert!(d.rootfs.join("bin/renamed").is_file());
    // A 404 is an error naming the URL.
    let err = copy(
        &d.ctx,
        &d.rootfs,
        &add_spec(&[&format!("{base}/missing")], "/x/"),
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("/missing"), "{err}");
}

#[test]
fn add_url_checksum_is_verified() {
    let d = dirs();
    let body = b"payload".to_vec();
    let base = serve(vec![("/p", body.clone())]);
    let url = format!("{base}/p");
    let good = {
        use sha2::Digest;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&body)))
    };
    let mut s = add_spec(&[&url], "/ok/");
    s.add.as_mut().unwrap().checksum = Some(good.clone());
    copy(&d.ctx, &d.rootfs, &s, None).unwrap();
    assert_eq!(read(&d.rootfs, "ok/p"), "payload");

    let wrong = format!("sha256:{}", "0".repeat(64));
    s.dest = "/bad/".to_string();
    s.add.as_mut().unwrap().checksum = Some(wrong.clone());
    let err = copy(&d.ctx, &d.rootfs, &s, None).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&wrong) && msg.contains(&good), "{msg}");
    assert!(
        !d.rootfs.join("bad/p").exists(),
        "nothing written on mismatch"
    );

    // As in Docker, a checksum only makes sense for URLs.
    tree(&d.ctx, &[("local.txt", "l")]);
    let mut s = add_spec(&["local.txt"], "/l/");
    s.add.as_mut().unwrap().checksum = Some(good);
    let err = copy(&d.ctx, &d.rootfs, &s, None).unwrap_err();
    assert!(matches!(err, FileOpError::ChecksumNeedsUrl { .. }), "{err}");
}
