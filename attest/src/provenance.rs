//! SLSA provenance v1 for an image build, laid out as BuildKit lays out its
//! own (buildType, `externalParameters.configSource`/`request`,
//! `internalParameters`, `resolvedDependencies`, `runDetails`), so readers
//! of BuildKit's provenance read rbk's.
//!
//! `mode=min` records where the build came from and what it resolved; with
//! `mode=max` it adds the build's steps, the Dockerfile, and the ids (never
//! the values) of the secrets and SSH agents it was given.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::statement::{Statement, Subject};

/// The predicate type of SLSA provenance v1.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";

/// rbk's build type: names the layout of the fields below.
pub const BUILD_TYPE: &str = "urn:rbk:build-type:dockerfile:v1";

/// How much the provenance records (`--provenance mode=min|max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Sources, the build's arguments and platform (buildx's default).
    Min,
    /// Also the steps, the Dockerfile, secret and SSH ids.
    Max,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "min" => Ok(Mode::Min),
            "max" => Ok(Mode::Max),
            other => Err(format!("provenance mode {other:?}: expected min or max")),
        }
    }
}

/// Where the build's definition came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A local directory (not trackable: `resolvedDependencies` is then
    /// incomplete, as BuildKit says of local contexts).
    Local {
        /// The Dockerfile's path as given (`-f`), relative to the context.
        path: String,
    },
    /// A git repository at a commit.
    Git {
        /// The URL as given, with `#ref[:subdir]`.
        uri: String,
        /// The commit it resolved to (hex SHA-1 or SHA-256).
        commit: String,
        /// The Dockerfile's path within it.
        path: String,
    },
    /// A tarball fetched over HTTP(S).
    Url {
        /// The URL.
        uri: String,
        /// `sha256:<hex>` of what was fetched.
        digest: String,
        /// The Dockerfile's path within it.
        path: String,
    },
}

/// A dependency the build resolved: a base image, a git repository, a URL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dependency {
    /// Its URI: `pkg:docker/…` for images, the URL otherwise.
    pub uri: String,
    /// Algorithm → hex digest (`sha256`, `sha1` for git commits).
    pub digest: BTreeMap<String, String>,
}

impl Dependency {
    /// A dependency with one digest written `algo:hex`.
    pub fn new(uri: impl Into<String>, digest: &str) -> Dependency {
        let (algo, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
        Dependency {
            uri: uri.into(),
            digest: [(algo.to_string(), hex.to_string())].into(),
        }
    }
}

/// One step of the build graph, for `mode=max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Its id in this document (`step0`, …).
    pub id: String,
    /// The instruction as the image history records it.
    pub created_by: String,
    /// The ids of the steps it depends on.
    pub inputs: Vec<String>,
}

/// Everything the provenance of one image records.
#[derive(Debug, Clone)]
pub struct BuildRecord {
    /// How much to record.
    pub mode: Mode,
    /// `runDetails.builder.id` (`builder-id=` of `--attest`), empty if none.
    pub builder_id: String,
    /// Where the definition came from.
    pub config: ConfigSource,
    /// Frontend options as BuildKit names them: `build-arg:NAME`,
    /// `label:NAME`, `target`, `filename`… (never secret values).
    pub args: BTreeMap<String, String>,
    /// The local sources used (`context`, `dockerfile`).
    pub locals: Vec<String>,
    /// Secret ids (recorded with `mode=max`).
    pub secrets: Vec<String>,
    /// SSH agent ids (recorded with `mode=max`).
    pub ssh: Vec<String>,
    /// The platform the builder runs on (`linux/amd64`).
    pub builder_platform: String,
    /// Base images, git repositories and URLs the build resolved.
    pub dependencies: Vec<Dependency>,
    /// The graph's steps (`mode=max`).
    pub steps: Vec<Step>,
    /// The Dockerfile's text (`mode=max`).
    pub dockerfile: Option<String>,
    /// A build id shared by every platform of one invocation.
    pub invocation_id: String,
    /// Unix seconds the build started and finished.
    pub started: i64,
    /// Unix seconds the build finished.
    pub finished: i64,
    /// True when no step could reach the network.
    pub hermetic: bool,
    /// True when `SOURCE_DATE_EPOCH` made the build reproducible.
    pub reproducible: bool,
}

impl BuildRecord {
    /// The SLSA v1 predicate.
    pub fn predicate(&self) -> Value {
        json!({
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "configSource": self.config_source(),
                    "request": self.request(),
                },
                "internalParameters": self.internal(),
                "resolvedDependencies": self.dependencies(),
            },
            "runDetails": {
                "builder": { "id": self.builder_id },
                "metadata": {
                    "invocationID": self.invocation_id,
                    "startedOn": crate::rfc3339(self.started),
                    "finishedOn": crate::rfc3339(self.finished),
                    "buildkit_hermetic": self.hermetic,
                    "buildkit_completeness": {
                        "request": self.mode == Mode::Max,
                        "resolvedDependencies": !matches!(self.config, ConfigSource::Local { .. }),
                    },
                    "buildkit_reproducible": self.reproducible,
                },
            },
        })
    }

    /// The in-toto statement of this provenance about `subjects`.
    pub fn statement(&self, subjects: Vec<Subject>) -> Statement {
        Statement::new(subjects, PREDICATE_TYPE, self.predicate())
    }

    fn config_source(&self) -> Value {
        match &self.config {
            ConfigSource::Local { path } => json!({ "path": path }),
            ConfigSource::Git { uri, commit, path } => {
                let algo = if commit.len() == 64 { "sha256" } else { "sha1" };
                json!({ "uri": uri, "digest": { algo: commit }, "path": path })
            }
            ConfigSource::Url { uri, digest, path } => {
                let d = Dependency::new(uri.clone(), digest);
                json!({ "uri": uri, "digest": d.digest, "path": path })
            }
        }
    }

    fn request(&self) -> Value {
        let mut r = Map::new();
        r.insert("frontend".into(), json!("dockerfile.v0"));
        r.insert("args".into(), json!(self.args));
        if self.mode == Mode::Max {
            let secrets: Vec<Value> = self.secrets.iter().map(|id| json!({ "id": id })).collect();
            let ssh: Vec<Value> = self.ssh.iter().map(|id| json!({ "id": id })).collect();
            r.insert("secrets".into(), Value::Array(secrets));
            r.insert("ssh".into(), Value::Array(ssh));
        }
        let locals: Vec<Value> = self.locals.iter().map(|n| json!({ "name": n })).collect();
        r.insert("locals".into(), Value::Array(locals));
        Value::Object(r)
    }

    fn internal(&self) -> Value {
        let mut m = Map::new();
        if self.mode == Mode::Max {
            let steps: Vec<Value> = self
                .steps
                .iter()
                .map(|s| json!({ "id": s.id, "op": s.created_by, "inputs": s.inputs }))
                .collect();
            let mut config = Map::new();
            config.insert("steps".into(), Value::Array(steps));
            if let Some(text) = &self.dockerfile {
                config.insert("dockerfile".into(), json!(text));
            }
            m.insert("buildConfig".into(), Value::Object(config));
        }
        m.insert("builderPlatform".into(), json!(self.builder_platform));
        Value::Object(m)
    }

    fn dependencies(&self) -> Value {
        let mut deps = self.dependencies.clone();
        deps.sort();
        deps.dedup();
        Value::Array(
            deps.iter()
                .map(|d| json!({ "uri": d.uri, "digest": d.digest }))
                .collect(),
        )
    }
}

/// A build id from what identifies an invocation: reproducible builds
/// (`SOURCE_DATE_EPOCH`) derive it from their inputs so two builds of the
/// same inputs give byte-identical provenance.
pub fn invocation_id(parts: &[&str]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(&[0]);
    }
    h.finalize().to_hex()[..25].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(mode: Mode) -> BuildRecord {
        BuildRecord {
            mode,
            builder_id: String::new(),
            config: ConfigSource::Git {
                uri: "https://example.test/app.git#main".into(),
                commit: "4b220de5058abfd01ff619c9d2ff6b09a049bea0".into(),
                path: "Dockerfile".into(),
            },
            args: [("build-arg:V".to_string(), "1".to_string())].into(),
            locals: vec!["context".into(), "dockerfile".into()],
            secrets: vec!["token".into()],
            ssh: vec![],
            builder_platform: "linux/amd64".into(),
            dependencies: vec![
                Dependency::new("pkg:docker/debian@12?platform=linux%2Famd64", "sha256:aa"),
                Dependency::new("https://example.test/app.git#main", "sha1:4b22"),
                Dependency::new("pkg:docker/debian@12?platform=linux%2Famd64", "sha256:aa"),
            ],
            steps: vec![Step {
                id: "step0".into(),
                created_by: "RUN make".into(),
                inputs: vec![],
            }],
            dockerfile: Some("FROM debian:12\nRUN make\n".into()),
            invocation_id: invocation_id(&["a", "b"]),
            started: 1_700_000_000,
            finished: 1_700_000_000,
            hermetic: false,
            reproducible: true,
        }
    }

    #[test]
    fn min_leaves_out_steps_and_secret_ids() {
        let p = record(Mode::Min).predicate();
        let def = &p["buildDefinition"];
        assert_eq!(def["buildType"], BUILD_TYPE);
        assert!(def["internalParameters"].get("buildConfig").is_none());
        assert!(def["externalParameters"]["request"]
            .get("secrets")
            .is_none());
        assert_eq!(
            def["externalParameters"]["configSource"]["digest"]["sha1"],
            "4b220de5058abfd01ff619c9d2ff6b09a049bea0"
        );
        // duplicates folded, sorted
        assert_eq!(
            def["resolvedDependencies"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(
            p["runDetails"]["metadata"]["startedOn"],
            "2023-11-14T22:13:20Z"
        );
    }

    #[test]
    fn max_records_steps_dockerfile_and_secret_ids_but_no_values() {
        let p = record(Mode::Max).predicate();
        let config = &p["buildDefinition"]["internalParameters"]["buildConfig"];
        assert_eq!(config["steps"][0]["op"], "RUN make");
        assert!(config["dockerfile"]
            .as_str()
            .is_some_and(|d| d.contains("RUN make")));
        assert_eq!(
            p["buildDefinition"]["externalParameters"]["request"]["secrets"][0]["id"],
            "token"
        );
    }

    #[test]
    fn the_same_record_gives_the_same_bytes() {
        let s = |m| {
            record(m)
                .statement(vec![Subject::sha256("x", "sha256:01")])
                .to_bytes()
        };
        assert_eq!(s(Mode::Max), s(Mode::Max));
        assert_eq!(invocation_id(&["a", "b"]), invocation_id(&["a", "b"]));
        assert_ne!(invocation_id(&["a", "b"]), invocation_id(&["ab"]));
    }
}
