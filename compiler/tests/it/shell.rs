//! BuildKit shell-word conformance (§4, §5, §6.9).
