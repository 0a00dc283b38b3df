//! Integration tests of rbk-scheduler.

mod build;
mod core;
mod fakes;
mod fileop;
mod git;
mod stepkind;
