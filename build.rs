//! Names the commit a binary was built from, for `purser --version` and
//! `purser_build_info`: `PURSER_COMMIT` when the build sets it (a container
//! build has no `.git`), else what git says, else "unknown".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PURSER_COMMIT");
    // The migrations are built in (`sqlx::migrate!`): a new one rebuilds.
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let commit = std::env::var("PURSER_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=PURSER_COMMIT={commit}");
}
