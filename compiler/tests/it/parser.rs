//! BuildKit parser conformance (§1–§3, §6.1–§6.8 of shared/conformance/README.md).
