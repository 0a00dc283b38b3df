//! placeholder
use std::path::PathBuf;
/// A mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: String,
    pub source: PathBuf,
    pub options: Vec<String>,
}
