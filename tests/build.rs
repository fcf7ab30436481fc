//! Builds the certbind filter for `wasm32-wasip1` (release) so the tests and benchmarks of this
//! crate always run the `.wasm` compiled from the current sources, never a stale hand-made one.
//!
//! The nested cargo uses its own target directory: the outer build holds the lock on `target/`,
//! so sharing it would deadlock. Its path reaches the crate as `CERTBIND_FILTER_WASM`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const WASM_TARGET: &str = "wasm32-wasip1";
const FILTER_PACKAGE: &str = "certbind-filter";
const FILTER_ARTIFACT: &str = "certbind_filter.wasm";
/// The benchmark's baseline guest, built in the same nested cargo run.
const PASSTHROUGH_PACKAGE: &str = "certbind-passthrough-guest";
const PASSTHROUGH_ARTIFACT: &str = "certbind_passthrough_guest.wasm";

/// Set to give the nested filter build its own RUSTFLAGS (the outer ones are for the host target
/// and may carry coverage or CPU flags that make no sense for wasm, so they are never passed on).
const FILTER_RUSTFLAGS_VAR: &str = "CERTBIND_FILTER_RUSTFLAGS";

/// Variables the outer cargo sets (for this build script or its own configuration) that would
/// change or break the nested build: target selection, target dir, flags meant for the host
/// target (`-C instrument-coverage`, `-C target-cpu=native`), the outer jobserver, wrappers such as
/// clippy-driver, and the build-script environment of this crate.
const CLEARED_VARS: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_CRATE_NAME",
    "CARGO_TARGET_TMPDIR",
    "OUT_DIR",
    "TARGET",
    "HOST",
    "NUM_JOBS",
    "OPT_LEVEL",
    "DEBUG",
    "PROFILE",
    "RUSTC_LINKER",
    "LLVM_PROFILE_FILE",
];

/// Prefixes of per-crate build-script variables (`CARGO_CFG_TARGET_ARCH`, `CARGO_FEATURE_*`,
/// `CARGO_PKG_NAME`, `DEP_*`, coverage tools' own settings) that describe the outer build.
const CLEARED_PREFIXES: &[&str] = &["CARGO_CFG_", "CARGO_FEATURE_", "CARGO_PKG_", "DEP_", "CARGO_LLVM_COV"];

fn main() -> ExitCode {
    match build_filter() {
        Ok(wasm) => {
            println!("cargo:rustc-env=CERTBIND_FILTER_WASM={}", wasm.display());
            let passthrough = wasm.with_file_name(PASSTHROUGH_ARTIFACT);
            println!("cargo:rustc-env=CERTBIND_PASSTHROUGH_WASM={}", passthrough.display());
            // Machine code compiled from filter modules is kept beside them (see host::compiled).
            if let Some(cache) = wasm.ancestors().nth(3).map(|target_wasm| target_wasm.join("cwasm")) {
                println!("cargo:rustc-env=CERTBIND_WASM_CACHE_DIR={}", cache.display());
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: building the certbind filter for {WASM_TARGET} failed\n{message}");
            ExitCode::FAILURE
        }
    }
}

fn build_filter() -> Result<PathBuf, String> {
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .ok_or("CARGO_MANIFEST_DIR is not set (build.rs must run under cargo)")?;
    let workspace = manifest_dir.parent().ok_or("the tests crate has no parent directory")?.to_path_buf();
    emit_rerun_triggers(&workspace);

    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    ensure_wasm_target_installed(&rustc)?;

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = workspace.join("target").join("wasm");
    let mut command = Command::new(&cargo);
    command
        .arg("build")
        .arg("-p")
        .arg(FILTER_PACKAGE)
        .arg("-p")
        .arg(PASSTHROUGH_PACKAGE)
        .arg("--target")
        .arg(WASM_TARGET)
        .arg("--release")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&workspace);
    for name in CLEARED_VARS {
        command.env_remove(name);
    }
    for (name, _) in env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if CLEARED_PREFIXES.iter().any(|prefix| name.starts_with(prefix)) {
            command.env_remove(name);
        }
    }
    if let Some(flags) = env::var_os(FILTER_RUSTFLAGS_VAR) {
        command.env("RUSTFLAGS", flags);
    }

    let output = command.output().map_err(|err| format!("could not run {}: {err}", Path::new(&cargo).display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let hint = if stderr.contains("may not be installed") || stderr.contains("can't find crate for `core`") {
            format!("\nhint: install the target with `rustup target add {WASM_TARGET}`")
        } else {
            String::new()
        };
        return Err(format!(
            "nested `cargo build -p {FILTER_PACKAGE} --target {WASM_TARGET} --release` exited with {}:\n{stderr}{hint}",
            output.status
        ));
    }

    let wasm = target_dir.join(WASM_TARGET).join("release").join(FILTER_ARTIFACT);
    if !wasm.is_file() {
        return Err(format!("the nested build succeeded but {} does not exist:\n{stderr}", wasm.display()));
    }
    Ok(wasm)
}

/// The filter is rebuilt whenever its sources, the shared crate, the lock file or the workspace
/// manifest (which holds the release profile) change.
fn emit_rerun_triggers(workspace: &Path) {
    for relative in [
        "filter/src",
        "filter/Cargo.toml",
        "tests/guests",
        "shared/src",
        "shared/Cargo.toml",
        "Cargo.lock",
        "Cargo.toml",
        ".cargo/config.toml",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(relative).display());
    }
    println!("cargo:rerun-if-env-changed={FILTER_RUSTFLAGS_VAR}");
}

/// Fails early, with the command that fixes it, when the toolchain has no wasm32-wasip1 std.
fn ensure_wasm_target_installed(rustc: &std::ffi::OsStr) -> Result<(), String> {
    let output = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|err| format!("could not run {} --print sysroot: {err}", Path::new(rustc).display()))?;
    if !output.status.success() {
        // Cannot tell; let the nested build report whatever is wrong.
        return Ok(());
    }
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let target_lib = Path::new(&sysroot).join("lib").join("rustlib").join(WASM_TARGET);
    if target_lib.is_dir() {
        Ok(())
    } else {
        Err(format!(
            "the Rust target {WASM_TARGET} is not installed for the toolchain at {sysroot}\n\
             fix: `rustup target add {WASM_TARGET}`"
        ))
    }
}
