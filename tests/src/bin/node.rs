//! The `poststelle` command line, built inside the test package so that integration tests get
//! its path from Cargo (`CARGO_BIN_EXE_poststelle-node`) and run nodes as real processes.
//! Identical to `gateway/src/main.rs`.

fn main() -> std::process::ExitCode {
    gateway::cli::main()
}
