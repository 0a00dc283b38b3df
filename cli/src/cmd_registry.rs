//! Registry commands: `pull`, `push`, `login`, `logout`, with docker-style
//! per-layer progress lines on stderr and the result on stdout.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context};
use rbk_store::compress::Compression;
use rbk_store::registry::{
    Client, Credentials, CredentialsFile, MinSpeed, PlatformSpec, Platforms, Progress,
    RegistryOptions,
};
use rbk_store::{Digest, Reference, Store};

/// How to reach registries (shared by pull, push and login).
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryFlags {
    /// Verify registries' TLS certificates (--tls-verify=false to skip)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    tls_verify: bool,
    /// A registry (host[:port]) that may use plain HTTP or an unverified
    /// certificate; repeatable
    #[arg(
        long = "insecure-registry",
        value_name = "HOST",
        env = "RBK_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    insecure_registries: Vec<String>,
    /// PEM file of the CA certificates to trust instead of the public ones
    #[arg(long, env = "RBK_REGISTRY_CA", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Credentials file (default: $RBK_ROOT/auth.json, else ~/.config/rbk/auth.json)
    #[arg(long, env = "RBK_AUTH_FILE", value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// The least progress a transfer must make: at least BYTES every
    /// SECONDS (default 65536/60); a registry slower than that is left, and
    /// the error names it
    #[arg(long, env = "RBK_REGISTRY_MIN_SPEED", value_name = "BYTES/SECONDS")]
    min_speed: Option<MinSpeed>,
}

impl RegistryFlags {
    pub(crate) fn options(&self) -> RegistryOptions {
        RegistryOptions {
            insecure_registries: self.insecure_registries.clone(),
            tls_verify: self.tls_verify,
            ca_cert: self.ca_cert.clone(),
            auth_file: self.authfile.clone().or_else(crate::env::default_auth_file),
            docker_config: crate::env::docker_config(),
            min_speed: self.min_speed.unwrap_or_default(),
            ..RegistryOptions::default()
        }
    }

    fn auth_file(&self) -> anyhow::Result<PathBuf> {
        match self.options().auth_file {
            Some(f) => Ok(f),
            None => bail!("no credentials file: set --authfile, $RBK_AUTH_FILE or $HOME"),
        }
    }
}

/// Layers a build cache holds (see `rbk_store::content::remote`) are
/// fetched, when something first reads them, through a registry client
/// with `options`: the settings and credentials a pull would use.
pub(crate) fn fetch_remote_layers_with(options: RegistryOptions) {
    rbk_store::content::remote::set_fetcher(std::sync::Arc::new(
        rbk_store::registry::ClientFetcher::new(options),
    ));
}

/// For a command without registry flags: remote layers are fetched with
/// the settings of the environment (`RBK_INSECURE_REGISTRIES`,
/// `RBK_REGISTRY_CA`, `RBK_AUTH_FILE`, Docker's config), as the flags
/// default to them. Settings the environment gets wrong fail the fetch
/// that needs them, saying why, rather than being dropped for defaults.
pub(crate) fn fetch_remote_layers_from_environment() {
    use clap::{Args, FromArgMatches};
    let cmd = RegistryFlags::augment_args(clap::Command::new("rbk"));
    let flags = cmd
        .try_get_matches_from(["rbk"])
        .and_then(|m| RegistryFlags::from_arg_matches(&m));
    match flags {
        Ok(f) => fetch_remote_layers_with(f.options()),
        Err(e) => rbk_store::content::remote::set_fetcher(std::sync::Arc::new(Misconfigured(
            format!("the registry settings of the environment: {}", e.render())
                .trim()
                .to_string(),
        ))),
    }
}

/// A fetcher for settings that could not be read: each fetch is refused
/// with why.
struct Misconfigured(String);

impl rbk_store::content::remote::Fetcher for Misconfigured {
    fn fetch(
        &self,
        _: &rbk_store::content::ContentStore,
        _: &str,
        _: &rbk_store::oci::Descriptor,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Err(self.0.clone().into())
    }
}

/// `rbk pull`.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Image to pull: NAME[:TAG|@DIGEST]
    #[arg(value_name = "NAME")]
    name: String,
    /// Platform(s) to fetch from a multi-platform image
    /// (os/arch[/variant], comma-separated; default this machine's). The
    /// tag names the whole index; each pull adds the platforms it fetched
    #[arg(long, value_name = "PLATFORM[,PLATFORM…]")]
    platform: Option<String>,
    /// Fetch every platform of a multi-platform image
    #[arg(long, conflicts_with = "platform")]
    all_platforms: bool,
    /// Print only the image name when done
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    registry: RegistryFlags,
}

/// `rbk push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// Local image to push: NAME[:TAG]
    #[arg(value_name = "NAME", add = crate::complete::images())]
    name: String,
    /// Where to push it, if not to NAME itself (HOST/REPO[:TAG])
    #[arg(value_name = "DESTINATION")]
    destination: Option<String>,
    /// Print only the manifest digest when done
    #[arg(short, long)]
    quiet: bool,
    /// Also write the manifest digest to this file
    #[arg(long, value_name = "FILE")]
    digestfile: Option<PathBuf>,
    /// Compression of the layers sent: gzip (like docker push), zstd, or
    /// none. Layers are kept uncompressed in the store and compressed once
    /// for the push (reused next time); layers stored compressed go as they
    /// are
    #[arg(long, default_value = "gzip", value_parser = ["gzip", "zstd", "none"])]
    compression: String,
    #[command(flatten)]
    registry: RegistryFlags,
}

/// `rbk login`.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Registry host[:port] (default: docker.io)
    #[arg(value_name = "SERVER")]
    server: Option<String>,
    /// User name
    #[arg(short, long)]
    username: Option<String>,
    /// Password (prefer --password-stdin: arguments show in `ps`)
    #[arg(short, long)]
    password: Option<String>,
    /// Read the password from standard input
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    registry: RegistryFlags,
}

/// `rbk logout`.
#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// Registry host[:port] (default: docker.io)
    #[arg(value_name = "SERVER")]
    server: Option<String>,
    /// Credentials file (default: $RBK_ROOT/auth.json, else ~/.config/rbk/auth.json)
    #[arg(long, env = "RBK_AUTH_FILE", value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// The least progress a transfer must make: at least BYTES every
    /// SECONDS (default 65536/60); a registry slower than that is left, and
    /// the error names it
    #[arg(long, env = "RBK_REGISTRY_MIN_SPEED", value_name = "BYTES/SECONDS")]
    min_speed: Option<MinSpeed>,
}

/// Prints docker-style progress lines: one per state change of a blob, and
/// download/upload progress at each quarter.
struct Lines {
    /// "Downloading" / "Pushing".
    verb: &'static str,
    /// "Download complete" / "Pushed".
    done: &'static str,
    /// "Already exists" / "Layer already exists".
    exists: &'static str,
    quarters: Mutex<HashMap<Digest, u64>>,
    quiet: bool,
}

impl Lines {
    fn new(pushing: bool, quiet: bool) -> Self {
        let (verb, done, exists) = if pushing {
            ("Pushing", "Pushed", "Layer already exists")
        } else {
            ("Downloading", "Download complete", "Already exists")
        };
        Lines {
            verb,
            done,
            exists,
            quarters: Mutex::new(HashMap::new()),
            quiet,
        }
    }

    fn on(&self, p: &Progress) {
        if self.quiet {
            return;
        }
        let line = match p {
            Progress::Manifest { .. } => return,
            Progress::Exists { digest } => format!("{}: {}", digest.short(), self.exists),
            Progress::Mounted { digest, from } => {
                format!("{}: Mounted from {from}", digest.short())
            }
            Progress::Started { digest, size } => {
                format!("{}: {} {}", digest.short(), self.verb, human(*size))
            }
            Progress::Bytes {
                digest,
                done,
                total,
            } => {
                let q = if *total == 0 { 4 } else { done * 4 / total };
                let mut map = self.quarters.lock().unwrap_or_else(|e| e.into_inner());
                let last = map.entry(digest.clone()).or_insert(0);
                if q <= *last || q >= 4 {
                    return;
                }
                *last = q;
                format!(
                    "{}: {} {}/{}",
                    digest.short(),
                    self.verb,
                    human(*done),
                    human(*total)
                )
            }
            Progress::Retrying {
                what,
                attempt,
                reason,
            } => format!("{what}: {reason}; retrying (attempt {attempt})"),
            Progress::Done { digest } => format!("{}: {}", digest.short(), self.done),
        };
        eprintln!("{line}");
    }
}

fn human(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2}GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1}MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}kB", n / 1e3)
    } else {
        format!("{n}B")
    }
}

fn open_store(root: &Path) -> anyhow::Result<Store> {
    Store::open(root).with_context(|| format!("cannot open the store at {}", root.display()))
}

/// `rbk pull NAME[:TAG|@DIGEST]`.
pub fn pull(root: &Path, a: &PullArgs) -> anyhow::Result<i32> {
    let reference = Reference::parse(&a.name)?;
    let platforms = if a.all_platforms {
        Platforms::All
    } else {
        match a.platform.as_deref() {
            None => Platforms::one(None),
            Some(list) => Platforms::Some(
                list.split(',')
                    .map(|p| p.trim().parse::<PlatformSpec>())
                    .collect::<Result<_, _>>()
                    .context("--platform")?,
            ),
        }
    };
    let store = open_store(root)?;
    let client = Client::new(a.registry.options())?;
    let lines = Lines::new(false, a.quiet);
    if !a.quiet {
        let what = reference
            .tag()
            .map_or_else(|| reference.familiar(), str::to_string);
        eprintln!("{what}: Pulling from {}", reference.path());
    }
    let report = client.pull_platforms(&store, &reference, &platforms, &|p| lines.on(p))?;
    if !a.quiet {
        eprintln!(
            "Digest: {}",
            report
                .index_digest
                .as_ref()
                .unwrap_or(&report.image.manifest_digest)
        );
        if let Some(index) = &report.image.index {
            eprintln!(
                "Platforms: {} in the store ({} in the index)",
                index.present_platforms().join(", "),
                index.platforms().count()
            );
        }
        if report.downloaded.is_empty() {
            eprintln!("Status: Image is up to date for {}", reference.familiar());
        } else {
            eprintln!(
                "Status: Downloaded newer image for {} ({} in {} blobs)",
                reference.familiar(),
                human(report.bytes),
                report.downloaded.len()
            );
        }
    }
    println!("{reference}");
    Ok(0)
}

/// `rbk push NAME[:TAG] [DESTINATION]`.
pub fn push(root: &Path, a: &PushArgs) -> anyhow::Result<i32> {
    let dest = Reference::parse(a.destination.as_deref().unwrap_or(&a.name))?;
    let store = open_store(root)?;
    fetch_remote_layers_with(a.registry.options());
    let client = Client::new(a.registry.options())?;
    let lines = Lines::new(true, a.quiet);
    if !a.quiet {
        eprintln!("The push refers to repository [{}]", dest.repository());
    }
    let compression: Compression = a
        .compression
        .parse()
        .map_err(|e| anyhow::anyhow!("--compression: {e}"))?;
    let pushed = client.push_with(&store, &a.name, &dest, compression, &|p| lines.on(p))?;
    let digest = pushed.digest;
    if let Some(f) = &a.digestfile {
        std::fs::write(f, digest.as_str())
            .with_context(|| format!("cannot write {}", f.display()))?;
    }
    if a.quiet {
        println!("{digest}");
    } else {
        if digest != pushed.local_digest {
            // The stored manifest lists uncompressed layers; the pushed
            // one their compressed variants. Same config, same image.
            eprintln!(
                "Layers compressed with {compression}: the pushed manifest differs from the local one ({}); the image ID is the same ({})",
                pushed.local_digest,
                pushed.id.short()
            );
        }
        let label = dest.tag().unwrap_or(rbk_store::reference::DEFAULT_TAG);
        println!("{label}: digest: {digest} size: {}", pushed.size);
    }
    Ok(0)
}

fn server_name(server: Option<&str>) -> String {
    let s = server.unwrap_or(rbk_store::reference::DEFAULT_DOMAIN);
    let s = s
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    // `docker login` users write Docker Hub's legacy index URL.
    match s {
        "index.docker.io/v1" | "index.docker.io" | "registry-1.docker.io" => {
            rbk_store::reference::DEFAULT_DOMAIN.to_string()
        }
        other => other.to_string(),
    }
}

/// `rbk login [SERVER]`: checks the credentials with the registry, then
/// stores them (mode 0600).
pub fn login(a: &LoginArgs) -> anyhow::Result<i32> {
    let server = server_name(a.server.as_deref());
    let username = match &a.username {
        Some(u) => u.clone(),
        None => bail!("rbk login: --username is required"),
    };
    let password = match (&a.password, a.password_stdin) {
        (Some(_), true) => bail!("rbk login: --password and --password-stdin are exclusive"),
        (Some(p), false) => p.clone(),
        (None, true) => {
            let mut p = String::new();
            std::io::stdin()
                .read_to_string(&mut p)
                .context("cannot read the password from stdin")?;
            p.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => bail!("rbk login: give --password-stdin (or --password)"),
    };
    let creds = Credentials { username, password };
    let client = Client::new(a.registry.options())?;
    client.login(&server, &creds)?;
    let path = a.registry.auth_file()?;
    let mut file = CredentialsFile::load(&path)?;
    file.set(&server, &creds);
    file.save(&path)?;
    eprintln!(
        "Login Succeeded ({server}; credentials in {})",
        path.display()
    );
    Ok(0)
}

/// `rbk logout [SERVER]`.
pub fn logout(a: &LogoutArgs) -> anyhow::Result<i32> {
    let server = server_name(a.server.as_deref());
    let path = match a.authfile.clone().or_else(crate::env::default_auth_file) {
        Some(p) => p,
        None => bail!("no credentials file: set --authfile, $RBK_AUTH_FILE or $HOME"),
    };
    let mut file = CredentialsFile::load(&path)?;
    if !file.remove(&server) {
        bail!("not logged in to {server} (in {})", path.display());
    }
    file.save(&path)?;
    eprintln!("Removing login credentials for {server}");
    Ok(0)
}
