//! `certbind`: the control plane's single binary (see `certbind --help`).

fn main() -> std::process::ExitCode {
    certbind_control_plane::cli::main()
}
