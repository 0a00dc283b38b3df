//! `rbk`: the command-line front end. Parses flags, picks concrete store and
//! executor implementations, prints tables and progress, maps errors to exit
//! codes.

fn main() {}
