//! Integration tests of rbk-scheduler.

mod build;
mod fileop;
mod sandbox;
