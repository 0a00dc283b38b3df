//! `rbk build`'s command line as clap parses it. Nothing past
//! [`BuildSettings::resolve`](super::settings::BuildSettings::resolve)
//! reads these structs.

use std::path::PathBuf;

use crate::cmd_registry::RegistryFlags;
use crate::inputs::BuildInputArgs;
use crate::progress::ProgressMode;

/// `rbk build`
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  rbk build -t myapp:1.0 .
  rbk build -f docker/Dockerfile.prod --build-arg VERSION=2 -t myapp:2 .
  rbk build examples/debian/rbk.toml            # every image of the file, as one graph
  rbk build examples/debian/rbk.toml nginx      # one target (or group)
  rbk build --explain -t myapp .                # say why each step missed the cache
  rbk build -t reg.example.com/app:1 --push .   # push the -t names
  rbk build -o type=local,dest=out .            # the final filesystem (also: out, type=tar, -)
  rbk build -o type=docker,dest=app.tar .       # an archive for docker load (type=oci too)
  rbk build -q --iidfile id --metadata-file meta.json .
  rbk build --progress rawjson . 2> events.jsonl
  rbk build --label team=core --annotation org.opencontainers.image.source=URL .
  rbk build --secret id=token,env=TOKEN --ssh default .
  rbk build --build-context src=../lib --build-context base=docker-image://debian:bookworm .
  rbk build --cache-to type=local,dest=/ci/cache,mode=max --cache-from type=local,src=/ci/cache .
  rbk build -t reg/app:1 --push --cache-to type=inline --cache-from reg/app:1 .
  rbk build -o type=registry,name=reg/app:1,compression=zstd,compression-level=19 .
  rbk build --no-cache-filter deps .            # rerun one stage
  SOURCE_DATE_EPOCH=1700000000 rbk build .      # reproducible: same inputs, same image id
  rbk build -f - . < Dockerfile.ci")]
pub struct BuildArgs {
    #[command(flatten)]
    pub input: BuildInputArgs,
    #[command(flatten)]
    pub shard: ShardArgs,
    /// Secret for RUN --mount=type=secret (repeatable): id=ID,src=FILE,
    /// id=ID,env=VAR, or id=ID alone (the variable ID, else the file ID)
    #[arg(long = "secret", value_name = "id=ID[,src=FILE|,env=VAR]")]
    pub secrets: Vec<String>,
    /// SSH agent for RUN --mount=type=ssh (repeatable): default (the
    /// agent of $SSH_AUTH_SOCK), ID=SOCKET, or ID=KEY[,KEY...] (an agent rbk
    /// starts with those keys for the build)
    #[arg(long = "ssh", value_name = "default|ID[=SOCKET|KEY,...]")]
    pub ssh: Vec<String>,
    /// Do not use cached results
    #[arg(long)]
    pub no_cache: bool,
    /// Do not use cached results for these stages (by name or index) and
    /// what is built on them (repeatable, or comma-separated)
    #[arg(long = "no-cache-filter", value_name = "STAGE", value_delimiter = ',')]
    pub no_cache_filter: Vec<String>,
    /// Steps to run at once (default: twice the cores, at least 4)
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Network for RUN steps: default, none, or host (needs --allow
    /// network.host)
    #[arg(long, default_value = "default")]
    pub network: String,
    /// Grant an entitlement, as in BuildKit: network.host (RUN on the
    /// host's network) or security.insecure (RUN --security=insecure: all
    /// capabilities, no seccomp); repeatable
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,
    /// Explain every cache miss
    #[arg(long)]
    pub explain: bool,
    /// Progress output
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
    /// Compression of the layers kept in the store: none (the default:
    /// `rbk push` compresses them when it sends them), gzip or zstd
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Export the build cache (repeatable):
    /// type=registry,ref=HOST/NAME:TAG[,mode=min|max],
    /// type=local,dest=DIR[,mode=min|max], or type=inline (in the image);
    /// add cache-mounts=true[,cache-mounts-max=SIZE] to carry the RUN
    /// cache mounts too
    #[arg(long = "cache-to", value_name = "SPEC")]
    pub cache_to: Vec<String>,
    /// Import a build cache (repeatable): type=registry,ref=HOST/NAME:TAG
    /// or just the reference (a cache artifact, or an image with an inline
    /// cache), or type=local,src=DIR
    #[arg(long = "cache-from", value_name = "SPEC")]
    pub cache_from: Vec<String>,
    /// When to pull base images: missing (not in the store), always, never;
    /// a bare --pull means always
    #[arg(
        long,
        value_enum,
        default_value = "missing",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "always"
    )]
    pub pull: PullPolicy,
    /// Where the images go besides the store (repeatable), as buildx:
    /// type=image[,name=N][,push=true], type=registry,name=N,
    /// type=docker|oci,dest=FILE|-[,name=N], type=tar,dest=FILE|-,
    /// type=local,dest=DIR; a bare DIR means type=local, - type=tar.
    /// Image and archive outputs take compression=gzip|zstd|uncompressed,
    /// compression-level=N, force-compression=BOOL, oci-mediatypes=BOOL
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    pub outputs: Vec<String>,
    /// Push the images to their registries under their -t names (the same
    /// as --output type=registry)
    #[arg(long)]
    pub push: bool,
    /// Accepted for buildx's sake: rbk's images are always in its store
    /// (`rbk save | docker load` moves them to Docker)
    #[arg(long)]
    pub load: bool,
    /// SLSA provenance attestation: true, false, min, max, or
    /// mode=min|max[,builder-id=URI] (default: mode=min on images pushed or
    /// exported as OCI archives; BUILDX_NO_DEFAULT_ATTESTATIONS=1 turns the
    /// default off)
    #[arg(long, value_name = "true|false|mode=min|max")]
    pub provenance: Option<String>,
    /// SPDX SBOM attestation of what each image has installed: true|false
    #[arg(long, value_name = "true|false")]
    pub sbom: Option<String>,
    /// An attestation (repeatable): type=provenance[,mode=min|max]
    /// [,builder-id=URI][,disabled=true] or type=sbom[,disabled=true]
    #[arg(long = "attest", value_name = "type=provenance|sbom[,...]")]
    pub attest: Vec<String>,
    /// Add an annotation to the image manifest (repeatable): KEY=VALUE or
    /// manifest:KEY=VALUE
    #[arg(long = "annotation", value_name = "[manifest:]KEY=VALUE")]
    pub annotations: Vec<String>,
    /// After the build, write the build graph as one HTML page to FILE,
    /// each step coloured cached, run, failed or cancelled, with its
    /// duration and the critical path (written after a failure too)
    #[arg(long = "graph-out", value_name = "FILE.html")]
    pub graph_out: Option<PathBuf>,
    /// Print the targets as resolved (variables, inherits, matrix, --set)
    /// as JSON, as `docker buildx bake --print`, and build nothing
    #[arg(long)]
    pub print: bool,
    /// Check the Dockerfiles with BuildKit's lint rules and build nothing
    /// (as `docker build --check`; also `rbk check`)
    #[arg(long)]
    pub check: bool,
    /// Write the image id (sha256:...) to FILE
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Write the build's result as JSON to FILE, as buildx does
    /// (containerimage.digest, containerimage.config.digest,
    /// containerimage.descriptor, image.name; after push-by-digest=true
    /// also rbk.tags for `rbk manifest merge`)
    #[arg(long = "metadata-file", value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Print only the image id on standard output, no progress
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `--pull`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// Pull base images that are not in the store.
    Missing,
    /// Pull every base image, even one the store has.
    Always,
    /// Use only the store.
    Never,
}

/// The flags of a fleet build.
#[derive(Debug, Clone, clap::Args)]
pub struct ShardArgs {
    /// Build only shard I of N of a target file's targets (1-based; see
    /// `rbk plan`): the others' targets are taken from the shared registry
    /// cache (--cache-from/--cache-to type=registry) once they push them
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// The plan to follow (`rbk plan --format json`), so every shard uses
    /// the same split; without it each shard makes the plan itself
    #[arg(long = "plan", value_name = "PLAN.json", requires = "shard")]
    pub plan: Option<PathBuf>,
    /// How long a step another shard makes is waited for before this shard
    /// makes it itself (auto: 10m, or 3× the plan's expected makespan when
    /// durations were recorded, if longer)
    #[arg(
        long = "shard-wait",
        value_name = "DURATION",
        default_value = "auto",
        requires = "shard"
    )]
    pub wait: String,
}
