//! Running the real `certbind` binary: command-line calls and `serve` as a child process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_certbind");

/// A command in `dir` with only the given environment (nothing inherited, so a developer's
/// DATABASE_URL or CERTBIND_* cannot leak into a test).
pub fn certbind(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).env_clear().args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs a command to completion.
pub fn run(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    certbind(dir, env, args).output().expect("running certbind")
}

/// Runs a command that must succeed; returns its trimmed stdout.
#[track_caller]
pub fn run_ok(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let out = run(dir, env, args);
    assert!(out.status.success(), "certbind {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_string()
}

/// `certbind serve` on a free port, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// `http` or `https`, as the server said it listens.
    pub scheme: String,
}

impl Server {
    /// Plain HTTP (`--plain-http`), as the API tests speak to it.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
        Server::start_with(dir, env, &["--plain-http"])
    }

    /// `certbind serve` with `args` besides `--listen`; HTTPS when `env` or `args` configure it.
    pub fn start_with(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Server {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("serve.log")).expect("log file");
        let mut child = certbind(dir, env, &[&["serve", "--listen", "127.0.0.1:0"], args].concat())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawning certbind serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((scheme, addr)) = line.strip_prefix("certbind listening on ").and_then(|l| l.split_once("://")) {
                    let _ = tx.send((scheme.to_string(), addr.to_string()));
                }
            }
        });
        let (scheme, addr) = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok((scheme, addr)) => (scheme, addr.parse().expect("address")),
            Err(_) => {
                let _ = child.kill();
                let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
                panic!("certbind serve did not start:\n{log}");
            }
        };
        Server { child, addr, scheme }
    }

    /// SIGKILL: no shutdown handler runs, nothing is flushed.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
