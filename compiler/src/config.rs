//! The image configuration computed from the instructions. Field names
//! follow the Docker/OCI image config JSON (`Env`, `Cmd`, …), so it converts
//! to the store's type through serde without either crate knowing the other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An empty JSON object, as Docker writes set members (`"80/tcp": {}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Empty {}

/// `Healthcheck` of the image config.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", …]` or `["CMD-SHELL", cmd]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    /// Nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: u64,
    /// Nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: u64,
    /// Nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: u64,
    /// Nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: u64,
    /// Consecutive failures needed to be unhealthy.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub retries: u32,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

/// The runtime defaults a Dockerfile's instructions produce (`USER`,
/// `ENV`, `CMD`, …): the `config` object inside an OCI image config, which
/// the store calls `ContainerConfig`. Named apart from the store's
/// `ImageConfig`, the whole document that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuntimeConfig {
    /// `USER`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// `EXPOSE`, as `port/proto` keys.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, Empty>,
    /// `ENV`, as `KEY=value`, in order of first definition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// `ENTRYPOINT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `CMD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `VOLUME`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, Empty>,
    /// `WORKDIR`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    /// `LABEL`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `STOPSIGNAL`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
    /// `HEALTHCHECK`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// `ONBUILD` triggers, as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_build: Vec<String>,
    /// `SHELL`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shell: Vec<String>,
}

impl RuntimeConfig {
    /// The environment as ordered pairs.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect()
    }

    /// Sets `key` in `Env`, replacing in place so the first position is kept
    /// (as Docker does).
    pub fn set_env(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        for kv in &mut self.env {
            if kv.split_once('=').map(|(k, _)| k) == Some(key) || kv == key {
                *kv = entry;
                return;
            }
        }
        self.env.push(entry);
    }

    /// The value of `key` in `Env`.
    pub fn get_env(&self, key: &str) -> Option<&str> {
        self.env.iter().find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then_some(v)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_env_keeps_first_position() {
        let mut c = RuntimeConfig::default();
        c.set_env("A", "1");
        c.set_env("B", "2");
        c.set_env("A", "3");
        assert_eq!(c.env, vec!["A=3", "B=2"]);
        assert_eq!(c.get_env("A"), Some("3"));
        assert_eq!(c.get_env("C"), None);
    }

    #[test]
    fn serialises_with_docker_names() {
        let mut c = RuntimeConfig {
            cmd: Some(vec!["sh".into()]),
            ..Default::default()
        };
        c.exposed_ports.insert("80/tcp".into(), Empty {});
        let j = serde_json::to_string(&c).unwrap_or_default();
        assert_eq!(j, r#"{"ExposedPorts":{"80/tcp":{}},"Cmd":["sh"]}"#);
    }
}
