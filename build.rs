//! Names the commit a binary was built from, for `purser --version` and
//! `purser_build_info`: `PURSER_COMMIT` when the build sets it (a container
//! build has no `.git`), else what git says, else "unknown".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PURSER_COMMIT");
    // The migrations are built in (`sqlx::migrate!`): a new one rebuilds.
    println!("cargo:rerun-if-changed=migrations");
    // Where git keeps them (a worktree's `.git` is a file naming its
    // directory); only paths that exist, as cargo reruns the script, and
    // rebuilds purser, at every build while one it was told of is missing
    // (a tarball has no `.git`).
    for name in ["HEAD", "refs/heads"] {
        let path = Command::new("git")
            .args(["rev-parse", "--git-path", name])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
        if let Some(path) = path.filter(|p| std::path::Path::new(p).exists()) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
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
