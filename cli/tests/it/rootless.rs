//! Rootless rbk: a user who is not root, with subordinate ids, imports a
//! base, builds (a RUN that chowns to 1000, a COPY, a delete), lists and
//! runs the image, with the store under `$XDG_DATA_HOME/rbk`; the layer
//! holds uid 1000 as a root build's would. A user without subordinate ids
//! gets an error that says how to fix it.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use crate::rbk_bin;

const USER: &str = "rbk-rootless-t";
const NOSUB: &str = "rbk-nosubid-t";

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Why this test cannot run here, if it cannot.
fn cannot(test: &str) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some(format!("{test}: making test users needs root"));
    }
    for tool in [
        "/usr/sbin/useradd",
        "/usr/sbin/usermod",
        "/usr/bin/newuidmap",
        "/sbin/runuser",
    ] {
        if !Path::new(tool).exists() && !Path::new(&tool.replace("/sbin/", "/usr/sbin/")).exists() {
            return Some(format!(
                "{test}: {tool} is missing (apt-get install passwd uidmap util-linux)"
            ));
        }
    }
    if !Path::new("/bin/busybox").exists() {
        return Some(format!("{test}: /bin/busybox is missing"));
    }
    None
}

/// Makes `user` (idempotent), with subordinate ids when `subids`.
fn ensure_user(user: &str, subids: Option<&str>) {
    if Command::new("id")
        .arg(user)
        .output()
        .unwrap()
        .status
        .success()
    {
        return;
    }
    let ok = Command::new("useradd")
        .args([
            "-M",
            "-s",
            "/bin/sh",
            "-K",
            "SUB_UID_COUNT=0",
            "-K",
            "SUB_GID_COUNT=0",
            user,
        ])
        .status()
        .unwrap();
    assert!(ok.success(), "useradd {user}");
    if let Some(range) = subids {
        let ok = Command::new("usermod")
            .args(["--add-subuids", range, "--add-subgids", range, user])
            .status()
            .unwrap();
        assert!(ok.success(), "usermod {user}");
    }
}

/// `rbk ARGS` as `user`, in `dir`, with the store under `dir/data`. The
/// binary is a copy in `dir`: the build tree may be where `user` cannot go
/// (a checkout under /root).
fn rbk_as(user: &str, dir: &Path, args: &[&str]) -> Output {
    let bin = dir.join("rbk");
    if !bin.exists() {
        std::fs::copy(rbk_bin(), &bin).unwrap();
    }
    Command::new("runuser")
        .args(["-u", user, "--", "env", "-u", "RBK_ROOT"])
        .arg(format!("XDG_DATA_HOME={}", dir.join("data").display()))
        .arg(format!("HOME={}", dir.display()))
        .arg(&bin)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn busybox_tar(dir: &Path) {
    let root = dir.join("rootfs");
    for d in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for a in ["sh", "echo", "chown", "rm", "ls", "cat", "stat"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    let ok = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["--numeric-owner", "-cf"])
        .arg(dir.join("busybox.tar"))
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::remove_dir_all(root).unwrap();
}

/// A directory for `test`, run as [`USER`] (made, with subordinate ids,
/// when missing), holding `busybox.tar`; None, the reason printed, when
/// this host cannot run it.
fn user_dir(test: &str, prefix: &str) -> Option<tempfile::TempDir> {
    if let Some(why) = cannot(test) {
        eprintln!("SKIPPED {why}");
        return None;
    }
    ensure_user(USER, Some("400000-465535"));
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    busybox_tar(dir.path());
    Some(dir)
}

/// Gives `dir` and everything in it to [`USER`].
fn give_to_user(dir: &Path) {
    let ok = Command::new("chown")
        .args(["-R", USER])
        .arg(dir)
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Imports `dir`'s `busybox.tar` as `localhost/busybox:latest`, as [`USER`].
fn import_busybox(dir: &Path) {
    let import = rbk_as(
        USER,
        dir,
        &["import", "busybox.tar", "localhost/busybox:latest"],
    );
    assert!(import.status.success(), "{}", text(&import));
}

/// Saves image rl as [`USER`] in `dir` and reads the tar: a layer holds
/// `f` owned by 1000/1000.
fn assert_a_layer_holds_f_as_1000(d: &Path) {
    let save = rbk_as(USER, d, &["save", "-o", "rl.tar", "rl"]);
    assert!(save.status.success(), "{}", text(&save));
    let list = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {} && mkdir -p x && tar -C x -xf rl.tar && for l in x/blobs/sha256/*; do tar -tvf \"$l\" 2>/dev/null; done",
            d.display()
        ))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&list.stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.contains("1000/1000") && l.ends_with(" f")),
        "no layer holds f as 1000/1000:\n{listing}"
    );
}

#[test]
fn a_user_without_root_builds_and_runs_with_the_same_owners() {
    let Some(dir) = user_dir(
        "a_user_without_root_builds_and_runs_with_the_same_owners",
        "rbk-rootless-",
    ) else {
        return;
    };
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM localhost/busybox:latest\nRUN echo hi > /f && chown 1000:1000 /f\nCOPY a.txt /a.txt\nRUN rm /etc/group\n",
    )
    .unwrap();
    std::fs::write(ctx.join("a.txt"), "a\n").unwrap();
    give_to_user(dir.path());
    let d = dir.path();
    for args in [
        &["import", "busybox.tar", "localhost/busybox:latest"][..],
        // No network: where /dev/net/tun is root's alone (0600, as on CI's
        // machines) a rootless default network is refused (see below).
        &[
            "build",
            "--progress",
            "plain",
            "--network",
            "none",
            "-t",
            "rl",
            "ctx",
        ][..],
        &["images"][..],
    ] {
        let out = rbk_as(USER, d, args);
        assert!(
            out.status.success(),
            "rbk {args:?} as {USER}:\n{}",
            text(&out)
        );
    }
    let run = rbk_as(
        USER,
        d,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "rl",
            "sh",
            "-c",
            "stat -c '%u:%g %n' /f /a.txt; ls /etc",
        ],
    );
    let out = text(&run);
    assert!(run.status.success(), "{out}");
    assert!(out.contains("1000:1000 /f"), "{out}");
    assert!(out.contains("0:0 /a.txt"), "{out}");
    assert!(
        !out.contains("group"),
        "the delete did not reach the image: {out}"
    );
    // The store is the user's, where XDG says.
    let meta = std::fs::metadata(d.join("data/rbk/index.json")).unwrap();
    let uid = Command::new("id").args(["-u", USER]).output().unwrap();
    let uid: u32 = String::from_utf8_lossy(&uid.stdout).trim().parse().unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), uid);
    // The layer says 1000, as a root build's does.
    assert_a_layer_holds_f_as_1000(d);
}

#[test]
fn a_user_without_subordinate_ids_is_told_how_to_fix_it() {
    let test = "a_user_without_subordinate_ids_is_told_how_to_fix_it";
    if let Some(why) = cannot(test) {
        eprintln!("SKIPPED {why}");
        return;
    }
    ensure_user(NOSUB, None);
    // useradd may have given it ranges (SUB_UID_COUNT in login.defs).
    let ok = Command::new("usermod")
        .args([
            "--del-subuids",
            "1-4294967294",
            "--del-subgids",
            "1-4294967294",
            NOSUB,
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    let dir = tempfile::Builder::new()
        .prefix("rbk-nosub-")
        .tempdir()
        .unwrap();
    let ok = Command::new("chown")
        .arg(NOSUB)
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(ok.success());
    let out = rbk_as(NOSUB, dir.path(), &["images"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("/etc/subuid") && t.contains("usermod --add-subuids"),
        "{t}"
    );
}

/// A rootless build whose user may not open /dev/net/tun (root's alone,
/// mode 0600, on some hosts) stops before any step, naming the two ways
/// on, instead of falling back to the host's network; `--network none`
/// builds. The closed tun is a bind mount in a mount namespace of the
/// test's own (`unshare -m`), gone when it exits: the host is untouched.
#[test]
fn rootless_without_tun_refuses_the_default_network_instead_of_the_hosts() {
    let Some(dir) = user_dir(
        "rootless_without_tun_refuses_the_default_network_instead_of_the_hosts",
        "rbk-notun-",
    ) else {
        return;
    };
    let d = dir.path();
    let ctx = d.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM localhost/busybox:latest\nRUN echo ran > /f\n",
    )
    .unwrap();
    let closed = d.join("tun-closed");
    std::fs::write(&closed, "").unwrap();
    give_to_user(d);
    std::fs::set_permissions(&closed, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&closed, Some(0), Some(0)).unwrap();
    import_busybox(d);
    std::fs::copy(rbk_bin(), d.join("rbk")).ok();
    let build = |network: &str| {
        let script = format!(
            "[ -e /dev/net/tun ] || {{ mkdir -p /dev/net && touch /dev/net/tun; }}; \
             mount --bind {closed} /dev/net/tun && \
             exec runuser -u {USER} -- env -u RBK_ROOT XDG_DATA_HOME={data} HOME={home} \
             {bin} build --progress plain --network {network} -t notun ctx",
            closed = closed.display(),
            data = d.join("data").display(),
            home = d.display(),
            bin = d.join("rbk").display(),
        );
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .current_dir(d)
            .output()
            .unwrap()
    };
    let out = build("default");
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("/dev/net/tun"), "{t}");
    assert!(t.contains("--network none"), "{t}");
    assert!(t.contains("--allow network.host"), "{t}");
    assert!(!t.contains("host's network instead"), "{t}");
    let out = build("none");
    assert!(out.status.success(), "{}", text(&out));
}

/// Where the user may open /dev/net/tun (a mode 0666 node, bind-mounted
/// in a mount namespace of the test's own), a rootless build's RUN steps
/// get the default network from the pool made ahead: each step connected
/// (slirp4netns configured its namespace, which only works on one owned
/// by rootless rbk's user namespace, as the keeper's setns into it does),
/// neighbouring steps in different namespaces.
#[test]
fn rootless_steps_get_fresh_default_networks_made_ahead() {
    let Some(dir) = user_dir(
        "rootless_steps_get_fresh_default_networks_made_ahead",
        "rbk-tun-",
    ) else {
        return;
    };
    if !Path::new("/dev/net/tun").exists() || !Path::new("/usr/bin/slirp4netns").exists() {
        eprintln!(
            "SKIPPED rootless_steps_get_fresh_default_networks_made_ahead: \
             no /dev/net/tun or no slirp4netns (apt-get install slirp4netns)"
        );
        return;
    }
    let d = dir.path();
    let ctx = d.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let step = "RUN busybox readlink /proc/self/ns/net && busybox ip route | busybox grep default";
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM localhost/busybox:latest\n{step}\n{step}\n{step}\n"),
    )
    .unwrap();
    let dev = d.join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    give_to_user(d);
    import_busybox(d);
    std::fs::copy(rbk_bin(), d.join("rbk")).ok();
    let script = format!(
        "mount -t tmpfs tmpfs {dev} && mknod -m 666 {dev}/tun c 10 200 && \
         mount --bind {dev}/tun /dev/net/tun && \
         exec runuser -u {USER} -- env -u RBK_ROOT XDG_DATA_HOME={data} HOME={home} \
         {bin} build --progress plain --no-cache ctx",
        dev = dev.display(),
        data = d.join("data").display(),
        home = d.display(),
        bin = d.join("rbk").display(),
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .current_dir(d)
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let namespaces: Vec<&str> = t
        .lines()
        .filter_map(|l| l.split_once("net:[").map(|(_, n)| n))
        .collect();
    assert_eq!(namespaces.len(), 3, "{t}");
    assert!(
        namespaces.windows(2).all(|w| w[0] != w[1]),
        "neighbouring steps shared a network namespace: {t}"
    );
    let routed = t
        .lines()
        .filter(|l| l.contains("default via 10.0.2.2"))
        .count();
    assert_eq!(routed, 3, "a step without its network: {t}");
}

/// A rootless container's user namespace is its rbk's: `exec` and `cp`
/// join it (a namespace of their own could not), so they work as the
/// user, with the container's ids, and `cp` stays inside the container.
#[test]
fn a_user_without_root_execs_and_copies_in_its_container() {
    let Some(dir) = user_dir(
        "a_user_without_root_execs_and_copies_in_its_container",
        "rbk-rl-exec-",
    ) else {
        return;
    };
    let d = dir.path();
    std::fs::write(d.join("in.txt"), "in\n").unwrap();
    give_to_user(d);
    import_busybox(d);
    let script = "echo secret > /etc/own && chmod 600 /etc/own && chown 123 /etc/own \
                  && ln -s / /evil && echo ready && exec sleep 60";
    let run = rbk_as(
        USER,
        d,
        &[
            "run",
            "-d",
            "--name",
            "rl",
            "--network",
            "none",
            "localhost/busybox:latest",
            "sh",
            "-c",
            script,
        ],
    );
    assert!(run.status.success(), "{}", text(&run));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !text(&rbk_as(USER, d, &["logs", "rl"])).contains("ready") {
        assert!(std::time::Instant::now() < deadline, "rl did not get ready");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let exec = rbk_as(USER, d, &["exec", "rl", "sh", "-c", "cat /etc/hostname"]);
    let said = text(&exec);
    assert!(exec.status.success(), "{said}");
    assert!(said.starts_with("rl\n"), "{said}");
    let code = rbk_as(USER, d, &["exec", "rl", "sh", "-c", "exit 3"]);
    assert_eq!(code.status.code(), Some(3), "{}", text(&code));
    let out = d.join("own");
    let cp = rbk_as(
        USER,
        d,
        &["cp", "-a", "rl:/evil/etc/own", out.to_str().unwrap()],
    );
    assert!(cp.status.success(), "{}", text(&cp));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "secret\n");
    // Container uid 123 is the user's subordinate 400000 + 122.
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&out).unwrap()),
        400122
    );
    let cp = rbk_as(
        USER,
        d,
        &["cp", d.join("in.txt").to_str().unwrap(), "rl:/tmp/"],
    );
    assert!(cp.status.success(), "{}", text(&cp));
    let seen = rbk_as(
        USER,
        d,
        &["exec", "rl", "stat", "-c", "%u %n", "/tmp/in.txt"],
    );
    assert_eq!(
        String::from_utf8_lossy(&seen.stdout),
        "0 /tmp/in.txt\n",
        "{}",
        text(&seen)
    );
    let rm = rbk_as(USER, d, &["rm", "-f", "rl"]);
    assert!(rm.status.success(), "{}", text(&rm));
}
