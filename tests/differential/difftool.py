#!/usr/bin/env python3
"""The differential suite's helper: makes the shared build context, reads an
image archive (what `rbk save` and `docker save` write) into a manifest of
its flattened file tree and config, and compares two manifests.

    difftool.py context DIR
    difftool.py manifest IMAGE.tar OUT.json
    difftool.py compare BUILDKIT.json RBK.json

Only timestamps and ids are left out of a manifest: everything else about a
file (type, permission bits with setuid/setgid/sticky, owner, size, content
digest, symlink target, device numbers, xattrs, hard-link groups) and the
config fields the Dockerfile reference defines are compared as they are.
"""

import hashlib
import io
import json
import os
import posixpath
import subprocess
import sys
import tarfile

CONFIG_FIELDS = [
    "Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts",
    "Volumes", "Labels", "StopSignal", "Healthcheck", "Shell", "OnBuild",
]


# -- the shared context -------------------------------------------------------

def _write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    os.chmod(path, mode)


def _archive_tree():
    """The tar every ADD case unpacks: owners, special bits, links."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        def add(name, kind=tarfile.REGTYPE, data=b"", mode=0o644, uid=0, gid=0,
                link=""):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.uid, ti.gid = kind, mode, uid, gid
            ti.mtime = 946684800
            ti.linkname = link
            ti.size = len(data) if kind == tarfile.REGTYPE else 0
            t.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        add("top", tarfile.DIRTYPE, mode=0o755, uid=1234, gid=5678)
        add("top/owned.txt", data=b"owned by 1234:5678\n", uid=1234, gid=5678)
        add("top/suid", data=b"#!/bin/sh\n", mode=0o4755)
        add("top/sgid-dir", tarfile.DIRTYPE, mode=0o2775, gid=50)
        add("top/sgid-dir/f", data=b"in a setgid dir\n", mode=0o640, gid=50)
        add("top/sticky", tarfile.DIRTYPE, mode=0o1777)
        add("top/link", tarfile.SYMTYPE, link="owned.txt")
        add("top/hard", tarfile.LNKTYPE, link="top/owned.txt")
        add("loose.txt", data=b"at the archive's top level\n", mode=0o600)
    return buf.getvalue()


def make_context(root):
    """The files every case's context starts from (the case adds its own)."""
    w = lambda rel, data, mode=0o644: _write(os.path.join(root, rel), data, mode)
    for name in ["a.txt", "b.txt", "file1.txt", "file2.txt", "dfile.txt"]:
        w(name, f"{name}\n")
    w("notes.log", "a log\n")
    w("data/sub/deep.log", "a deep log\n")
    w("data/sub/keep.txt", "kept\n")
    w("data/top.txt", "top\n")
    w("dir/one.txt", "one\n")
    w("dir/nested/two.txt", "two\n")
    w("dir/exec.sh", "#!/bin/sh\necho hi\n", 0o755)
    w("dA/f.txt", "dA\n")
    w("dB/f.txt", "dB\n")
    w("m/x/file.txt", "m/x\n")
    w("m/y/file.txt", "m/y\n")
    w("m/z/other.txt", "m/z\n")
    w("modes/setuid", "setuid\n", 0o4755)
    w("modes/setgid", "setgid\n", 0o2755)
    w("modes/private", "private\n", 0o600)
    w("modes/readonly", "readonly\n", 0o444)
    os.makedirs(os.path.join(root, "modes/sticky"))
    os.chmod(os.path.join(root, "modes/sticky"), 0o1777)
    os.makedirs(os.path.join(root, "empty-dir"))
    w("etc/passwd",
      "root:x:0:0:root:/root:/bin/sh\n"
      "app:x:1000:1000:app:/home/app:/bin/sh\n"
      "web:x:1001:50:web:/var/www:/bin/sh\n")
    w("etc/group", "root:x:0:\nstaff:x:50:web\napp:x:1000:\nops:x:2000:app\n")
    links = os.path.join(root, "links")
    os.makedirs(links)
    os.symlink("../a.txt", os.path.join(links, "file-link"))
    os.symlink("../dir", os.path.join(links, "dir-link"))
    os.symlink("nowhere", os.path.join(links, "dangling"))
    os.symlink("/etc/passwd", os.path.join(links, "absolute"))
    w("hard/h1", "hard linked\n")
    os.link(os.path.join(root, "hard/h1"), os.path.join(root, "hard/h2"))
    w("xattr/tagged", "with an xattr\n")
    try:
        os.setxattr(os.path.join(root, "xattr/tagged"), "user.rbk.test", b"v1")
    except OSError:
        pass  # a filesystem without user xattrs: both builders see none
    tar = _archive_tree()
    w("arch/t.tar", tar)
    import gzip, bz2, lzma
    w("arch/t.tar.gz", gzip.compress(tar, mtime=0))
    w("arch/t.tgz", gzip.compress(tar, mtime=0))
    w("arch/t.tar.bz2", bz2.compress(tar))
    w("arch/t.tar.xz", lzma.compress(tar))
    zst = subprocess.run(["zstd", "-q", "-c"], input=tar, capture_output=True)
    if zst.returncode == 0:
        w("arch/t.tar.zst", zst.stdout)
    w("arch/fake.tar.gz", "not an archive, only named like one\n")
    w("arch/plain.gz", gzip.compress(b"gzip, but not of a tar\n", mtime=0))
    w("arch/notes.tar.txt", "a text file\n")


# -- reading an image archive --------------------------------------------------

def _image_parts(archive):
    """(config dict, [layer bytes]) of the only image in a docker-archive."""
    with tarfile.open(archive) as t:
        def read(name):
            return t.extractfile(_norm(name)).read()
        manifest = json.loads(read("manifest.json"))
        if len(manifest) != 1:
            sys.exit(f"{archive}: expected one image, found {len(manifest)}")
        config = json.loads(read(manifest[0]["Config"]))
        layers = [read(l) for l in manifest[0]["Layers"]]
    return config, layers


def _norm(name):
    """A member name as a path relative to the root ("" for the root)."""
    name = posixpath.normpath("/" + name)
    return "" if name == "/" else name[1:]


def _entry(ti, tf):
    e = {"uid": ti.uid, "gid": ti.gid, "mode": oct(ti.mode & 0o7777)}
    if ti.isreg():
        data = tf.extractfile(ti).read()
        e.update(type="file", size=len(data),
                 sha256=hashlib.sha256(data).hexdigest())
    elif ti.isdir():
        e["type"] = "dir"
    elif ti.issym():
        e.update(type="symlink", target=ti.linkname)
    elif ti.ischr() or ti.isblk():
        e.update(type="char" if ti.ischr() else "block",
                 dev=f"{ti.devmajor}:{ti.devminor}")
    elif ti.isfifo():
        e["type"] = "fifo"
    else:
        e["type"] = f"tar type {ti.type!r}"
    xattrs = {k[len("SCHILY.xattr."):]: v for k, v in ti.pax_headers.items()
              if k.startswith("SCHILY.xattr.")}
    if xattrs:
        e["xattrs"] = xattrs
    return e


def flatten(layers):
    """The file tree the layers stack up to, whiteouts applied."""
    tree = {}
    inode = {}   # path -> hard-link group key
    for n, blob in enumerate(layers):
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tf:
            entries = tf.getmembers()
            # Whiteouts and opaque markers hide what the lower layers have.
            for ti in entries:
                path = _norm(ti.name)
                base = posixpath.basename(path)
                parent = posixpath.dirname(path)
                if base == ".wh..wh..opq":
                    prefix = parent + "/"
                    for p in [p for p in tree if p.startswith(prefix)]:
                        del tree[p]
                        inode.pop(p, None)
                elif base.startswith(".wh."):
                    gone = posixpath.join(parent, base[len(".wh."):])
                    for p in [p for p in tree if p == gone or p.startswith(gone + "/")]:
                        del tree[p]
                        inode.pop(p, None)
            for ti in entries:
                path = _norm(ti.name)
                if not path or posixpath.basename(path).startswith(".wh."):
                    continue
                if ti.islnk():
                    target = _norm(ti.linkname)
                    if target not in tree:
                        tree[path] = {"type": f"hard link to missing {target}"}
                        continue
                    tree[path] = dict(tree[target])
                    key = inode.setdefault(target, f"{n}:{target}")
                    inode[path] = key
                    continue
                if ti.isdir() and path in tree and tree[path].get("type") == "dir":
                    # A directory entry again: its metadata is the newest.
                    pass
                tree[path] = _entry(ti, tf)
                inode.pop(path, None)
    # Hard links: which paths share a file, named by the smallest path.
    groups = {}
    for p, k in inode.items():
        if p in tree:
            groups.setdefault(k, []).append(p)
    for members in groups.values():
        if len(members) > 1:
            for p in members:
                tree[p]["hardlinks"] = sorted(members)
    return tree


def manifest(archive, out):
    config, layers = _image_parts(archive)
    cfg = config.get("config") or {}
    fields = {}
    for f in CONFIG_FIELDS:
        v = cfg.get(f)
        if v in (None, {}, []):
            continue  # absent, null and empty mean the same to a runtime
        fields[f] = v
    doc = {"config": fields, "os": config.get("os"),
           "architecture": config.get("architecture"), "files": flatten(layers)}
    with open(out, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)


# -- comparing ----------------------------------------------------------------

def compare(a_path, b_path, limit=12):
    """Prints the differences (BuildKit's value first); exits 1 if any."""
    a = json.load(open(a_path))
    b = json.load(open(b_path))
    diffs = []
    for f in sorted(set(a["config"]) | set(b["config"])):
        if a["config"].get(f) != b["config"].get(f):
            diffs.append(f"config {f}: buildkit {json.dumps(a['config'].get(f))}"
                         f" rbk {json.dumps(b['config'].get(f))}")
    for k in ("os", "architecture"):
        if a[k] != b[k]:
            diffs.append(f"{k}: buildkit {a[k]} rbk {b[k]}")
    fa, fb = a["files"], b["files"]
    for p in sorted(set(fa) | set(fb)):
        if p not in fb:
            diffs.append(f"/{p}: only in buildkit's image {json.dumps(fa[p])}")
        elif p not in fa:
            diffs.append(f"/{p}: only in rbk's image {json.dumps(fb[p])}")
        elif fa[p] != fb[p]:
            keys = sorted(set(fa[p]) | set(fb[p]))
            d = ", ".join(f"{k} {fa[p].get(k)} vs {fb[p].get(k)}"
                          for k in keys if fa[p].get(k) != fb[p].get(k))
            diffs.append(f"/{p}: {d}")
    for d in diffs[:limit]:
        print(f"    {d}")
    if len(diffs) > limit:
        print(f"    … and {len(diffs) - limit} more")
    return 1 if diffs else 0


def main(argv):
    if len(argv) == 3 and argv[1] == "context":
        make_context(argv[2])
    elif len(argv) == 4 and argv[1] == "manifest":
        manifest(argv[2], argv[3])
    elif len(argv) == 4 and argv[1] == "compare":
        return compare(argv[2], argv[3])
    else:
        sys.exit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
