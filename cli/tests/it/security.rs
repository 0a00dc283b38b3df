//! The sandbox as an attacker meets it: from inside a RUN step, try what
//! Docker's default sandbox refuses (new namespaces, mounts, keyrings, bpf,
//! perf, ptrace and signals across the PID namespace, usable device nodes,
//! sysrq, reboot…) and assert each refusal; and path escapes through
//! COPY/ADD symlinks, tar members and WORKDIR symlinks.
//!
//! The syscall attempts are a small static C program
//! (`cli/tests/fixtures/security/probe.c`) built with gcc and copied into
//! the image, so every attempt is the raw syscall, not a tool's guess.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::build::{rbk, write};
use crate::repo_root;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A store holding `localhost/busybox:latest` with every applet, or None
/// (loudly) when builds cannot run here.
fn store_with_full_busybox(test: &str) -> Option<tempfile::TempDir> {
    if let Err(why) = rbk_runtime::sandbox::sandbox_supported() {
        eprintln!("SKIPPED {test}: {why}");
        return None;
    }
    if !Path::new("/bin/busybox").exists() {
        eprintln!("SKIPPED {test}: /bin/busybox is missing (apt-get install busybox-static)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    for d in ["bin", "etc", "tmp", "mnt", "root"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    let tarball = dir.path().join("busybox.tar");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["--numeric-owner", "-cf"])
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success());
    let out = rbk(&dir.path().join("store"))
        .arg("import")
        .arg(&tarball)
        .arg("localhost/busybox:latest")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    Some(dir)
}

/// The probe, built statically into `dir`, or None (loudly) without gcc.
fn build_probe(test: &str, dir: &Path) -> Option<PathBuf> {
    let src = repo_root().join("cli/tests/fixtures/security/probe.c");
    let out = dir.join("probe");
    match Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&out)
        .arg(&src)
        .output()
    {
        Ok(o) if o.status.success() => Some(out),
        Ok(o) => panic!("cannot build the probe: {}", text(&o)),
        Err(e) => {
            eprintln!("SKIPPED {test}: no gcc to build the probe ({e})");
            None
        }
    }
}

/// `name → result` from lines `name RESULT`.
fn results(s: &str) -> BTreeMap<String, String> {
    s.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn run_steps_are_refused_what_docker_refuses() {
    let test = "run_steps_are_refused_what_docker_refuses";
    let Some(dir) = store_with_full_busybox(test) else {
        return;
    };
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let Some(_) = build_probe(test, &ctx) else {
        return;
    };
    let host_pid = std::process::id();
    // A service on the host's loopback the step must not reach.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    write_the_probes_dockerfile(&ctx, host_pid, port);
    let store = dir.path().join("store");
    let out = rbk(&store)
        .args(["build", "--progress", "plain", "-t", "probe"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let run = rbk(&store)
        .args([
            "run",
            "--rm",
            "probe",
            "sh",
            "-c",
            "cat /results.txt; ls -l /tmp/blk",
        ])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run));
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    every_attempt_was_refused_as_docker_refuses_it(&stdout);
}

/// A Dockerfile in `ctx` whose steps run the probe against the host's
/// `host_pid`, try device nodes, sysrq, and the host's loopback `port`,
/// each writing `name RESULT` lines to /results.txt.
fn write_the_probes_dockerfile(ctx: &Path, host_pid: u32, port: u16) {
    write(
        ctx,
        &[(
            "Dockerfile",
            &format!(
                "FROM localhost/busybox:latest\n\
                 COPY probe /probe\n\
                 RUN /probe {host_pid} > /results.txt\n\
                 RUN echo \"procs $(ls /proc | grep -c '^[0-9]')\" >> /results.txt \
                  && echo \"init $(tr '\\0' ' ' < /proc/1/cmdline)\" >> /results.txt \
                  && mknod /tmp/blk b 8 0 && echo \"mknod OK\" >> /results.txt \
                  && (head -c 1 /tmp/blk >/dev/null 2>&1 && echo 'open-blk OK' || echo 'open-blk refused') >> /results.txt \
                  && (mknod /dev/blk2 b 8 0 && head -c 1 /dev/blk2 >/dev/null 2>&1 && echo 'open-devblk OK' || echo 'open-devblk refused') >> /results.txt \
                  && (echo h > /proc/sysrq-trigger 2>/dev/null && echo 'sysrq-shell OK' || echo 'sysrq-shell refused') >> /results.txt\n\
                 RUN echo \"net $(ls /sys/class/net | tr '\\n' ' ')\" >> /results.txt \
                  && ((echo | nc -w 3 127.0.0.1 {port}) && echo 'host-loopback OK' || echo 'host-loopback refused') >> /results.txt \
                  && ((echo | nc -w 3 10.0.2.2 {port}) && echo 'host-gateway OK' || echo 'host-gateway refused') >> /results.txt\n"
            ),
        )],
    );
}

/// The results the probe's image printed (`stdout`: /results.txt and
/// `ls -l /tmp/blk`): each attempt refused as Docker refuses it, the
/// step in its own PID namespace, its device node committed.
fn every_attempt_was_refused_as_docker_refuses_it(stdout: &str) {
    let r = results(stdout);
    let expect = [
        ("unshare-user", "EPERM"),
        ("unshare-mount", "EPERM"),
        ("mount-tmpfs", "EPERM"),
        ("keyctl", "EPERM"),
        ("add_key", "EPERM"),
        ("bpf", "EPERM"),
        ("perf_event_open", "EPERM"),
        ("userfaultfd", "EPERM"),
        ("ptrace-init", "EPERM"),
        ("ptrace-host", "ESRCH"),
        ("kill-host", "ESRCH"),
        ("personality-bad", "EPERM"),
        ("socket-vsock", "EPERM"),
        ("clone3", "ENOSYS"),
        ("clone-newpid", "EPERM"),
        ("clone-plain", "OK"),
        ("reboot", "EPERM"),
        ("init", "rbk-init"),
        ("mknod", "OK"),
        ("open-blk", "refused"),
        ("open-devblk", "refused"),
        ("sysrq-shell", "refused"),
        ("net", "lo tap0"),
        ("host-loopback", "refused"),
        ("host-gateway", "refused"),
    ];
    for (name, want) in expect {
        assert_eq!(
            r.get(name).map(String::as_str),
            Some(want),
            "{name} in:\n{stdout}"
        );
    }
    assert_ne!(
        r.get("sysrq-open").map(String::as_str),
        Some("OK"),
        "{stdout}"
    );
    let procs: usize = r["procs"].parse().unwrap();
    assert!(
        procs <= 6,
        "the step sees {procs} processes: not its own PID namespace"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with('b') && l.ends_with("/tmp/blk")),
        "the device node was not committed:\n{stdout}"
    );
}

#[test]
fn insecure_needs_its_entitlement_and_then_lifts_the_filter() {
    let test = "insecure_needs_its_entitlement_and_then_lifts_the_filter";
    let Some(dir) = store_with_full_busybox(test) else {
        return;
    };
    let ctx = dir.path().join("ctx");
    write(
        &ctx,
        &[(
            "Dockerfile",
            "FROM localhost/busybox:latest\nRUN --security=insecure mount -t tmpfs t /mnt && echo mounted > /ok\n",
        )],
    );
    let store = dir.path().join("store");
    let refused = rbk(&store)
        .args(["build", "--progress", "plain"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let err = text(&refused);
    assert!(
        err.contains("Dockerfile:2: RUN --security=insecure needs `--allow security.insecure`"),
        "{err}"
    );
    let allowed = rbk(&store)
        .args([
            "build",
            "--progress",
            "plain",
            "--allow",
            "security.insecure",
        ])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(allowed.status.success(), "{}", text(&allowed));
    for args in [
        &["--network", "host"][..],
        &["--allow", "network.everything"][..],
    ] {
        let out = rbk(&store)
            .args(["build", "--progress", "plain"])
            .args(args)
            .arg(&ctx)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(text(&out).contains("--"), "{}", text(&out));
    }
}

#[test]
fn copy_add_and_workdir_cannot_reach_outside() {
    let test = "copy_add_and_workdir_cannot_reach_outside";
    let Some(dir) = store_with_full_busybox(test) else {
        return;
    };
    let ctx = dir.path().join("ctx");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), "host secret\n").unwrap();
    std::fs::create_dir_all(&ctx).unwrap();
    // A context symlink to a host file, and one to a host directory.
    std::os::unix::fs::symlink(outside.join("secret"), ctx.join("link-to-host")).unwrap();
    std::os::unix::fs::symlink(&outside, ctx.join("dir-to-host")).unwrap();
    let marker = dir.path().join("escaped-workdir");
    write(
        &ctx,
        &[(
            "Dockerfile",
            &format!(
                "FROM localhost/busybox:latest\n\
                 RUN ln -s / /up && mkdir -p {parent}\n\
                 WORKDIR /up{marker}\n\
                 COPY Dockerfile ./copied\n\
                 COPY link-to-host /link\n",
                parent = marker.parent().unwrap().display(),
                marker = marker.display(),
            ),
        )],
    );
    let store = dir.path().join("store");
    let out = rbk(&store)
        .args(["build", "--progress", "plain", "-t", "esc"])
        .arg(&ctx)
        .output()
        .unwrap();
    // Whatever the outcome, nothing reached the host.
    assert!(
        !marker.exists(),
        "WORKDIR through a symlink wrote on the host"
    );
    if out.status.success() {
        let run = rbk(&store)
            .args([
                "run",
                "--rm",
                "esc",
                "sh",
                "-c",
                "cat /link 2>&1; ls -l /link",
            ])
            .output()
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&run.stdout).contains("host secret"),
            "COPY followed a context symlink out of the context:\n{}",
            text(&run)
        );
    }
    an_add_of_a_tar_whose_members_climb_out_fails(&ctx, &store);
}

/// ADD of a tar whose members climb out of the destination: the build of
/// `ctx` fails, and nothing reaches the host.
fn an_add_of_a_tar_whose_members_climb_out_fails(ctx: &Path, store: &Path) {
    let tarball = ctx.join("evil.tar");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    let name = b"../../../../../../tmp/rbk-evil-member";
    h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    b.append(&h, &b"evil"[..]).unwrap();
    std::fs::write(&tarball, b.into_inner().unwrap()).unwrap();
    write(
        ctx,
        &[(
            "Dockerfile",
            "FROM localhost/busybox:latest\nADD evil.tar /opt/\n",
        )],
    );
    let out = rbk(store)
        .args(["build", "--progress", "plain"])
        .arg(ctx)
        .output()
        .unwrap();
    assert!(
        !Path::new("/tmp/rbk-evil-member").exists(),
        "a tar member escaped to the host"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "an escaping member must fail the ADD: {}",
        text(&out)
    );
}
