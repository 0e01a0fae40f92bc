//! The `poststelle` binary: command line → config → tracing → run → exit code.

fn main() -> std::process::ExitCode {
    gateway::cli::main()
}
