//! Integration tests of rbk-scheduler.

mod fileop;
mod sandbox;
