//! Build script of the collector: makes uPlot, the page's charting library, available to the
//! binary without committing it to the repository and without any CDN.
//!
//! uPlot is pinned by `web/package.json` and `web/package-lock.json`. This script copies both
//! files into `$OUT_DIR/web/`, runs `npm ci --ignore-scripts --no-audit --no-fund` there (only
//! when uPlot is not installed yet or the lock file changed since the last install), and copies
//! `uPlot.iife.min.js` and `uPlot.min.css` from `node_modules/uplot/dist/` to `$OUT_DIR/`, where
//! the collector embeds them with `include_bytes!`.
//!
//! Offline builds: set `HOSTWATCH_UPLOT_DIR` to a directory holding `uPlot.iife.min.js` and
//! `uPlot.min.css` (for example the `dist/` folder of the `uplot` npm package) and the two files
//! are copied from there instead; npm is not run.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The files the collector embeds, as named in uPlot's `dist/` folder and in `$OUT_DIR`.
const ASSETS: [&str; 2] = ["uPlot.iife.min.js", "uPlot.min.css"];

/// The npm package files that pin uPlot's version.
const PACKAGE_FILES: [&str; 2] = ["package.json", "package-lock.json"];

/// Written next to `node_modules` after a successful `npm ci`: a copy of the lock file installed.
const STAMP: &str = ".installed-package-lock.json";

/// Environment variable naming a directory that already holds the uPlot files.
const UPLOT_DIR_VAR: &str = "HOSTWATCH_UPLOT_DIR";

fn main() {
    let manifest_dir = PathBuf::from(
        env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR is set by cargo"),
    );
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let web_src = manifest_dir.join("web");

    println!("cargo:rerun-if-changed=build.rs");
    for file in PACKAGE_FILES {
        println!("cargo:rerun-if-changed=web/{file}");
    }
    println!("cargo:rerun-if-env-changed={UPLOT_DIR_VAR}");

    let source_dir = match env::var_os(UPLOT_DIR_VAR) {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            for asset in ASSETS {
                println!("cargo:rerun-if-changed={}", dir.join(asset).display());
            }
            dir
        }
        _ => npm_install(&web_src, &out_dir.join("web")),
    };

    for asset in ASSETS {
        let from = source_dir.join(asset);
        let to = out_dir.join(asset);
        if let Err(err) = fs::copy(&from, &to) {
            panic!(
                "hostwatch collector build: cannot copy {} to {}: {err}\n{}",
                from.display(),
                to.display(),
                help()
            );
        }
    }
}

/// Installs the locked uPlot into `work` with `npm ci` unless it is already there for the same
/// lock file, and returns the directory holding the uPlot files to embed.
fn npm_install(web_src: &Path, work: &Path) -> PathBuf {
    fs::create_dir_all(work).unwrap_or_else(|err| {
        panic!("hostwatch collector build: cannot create {}: {err}", work.display())
    });
    for file in PACKAGE_FILES {
        let from = web_src.join(file);
        let to = work.join(file);
        if let Err(err) = fs::copy(&from, &to) {
            panic!(
                "hostwatch collector build: cannot copy {} to {}: {err}",
                from.display(),
                to.display()
            );
        }
    }

    let lock = fs::read(work.join("package-lock.json")).unwrap_or_default();
    let installed_lock = fs::read(work.join(STAMP)).ok();
    let dist = work.join("node_modules").join("uplot").join("dist");
    let installed = work.join("node_modules").join("uplot").join("package.json").is_file()
        && ASSETS.iter().all(|asset| dist.join(asset).is_file());

    if !installed || installed_lock.as_deref() != Some(lock.as_slice()) {
        // A failed or interrupted install must not look like a finished one next time.
        let _ = fs::remove_file(work.join(STAMP));
        let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
        let status = Command::new(npm)
            .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
            .current_dir(work)
            // Cargo reads the build script's stdout for directives: npm's chatter goes to stderr.
            .stdout(std::io::stderr())
            .status();
        match status {
            Ok(status) if status.success() => {}
            Ok(status) => panic!(
                "hostwatch collector build: `npm ci` in {} failed ({status}); it needs the npm registry to \
                 download uPlot.\n{}",
                work.display(),
                help()
            ),
            Err(err) => panic!(
                "hostwatch collector build: cannot run `{npm}` ({err}): Node.js and npm are needed to fetch \
                 uPlot, the page's charting library.\n{}",
                help()
            ),
        }
        if let Err(err) = fs::write(work.join(STAMP), &lock) {
            panic!("hostwatch collector build: cannot write {}: {err}", work.join(STAMP).display());
        }
    }
    dist
}

/// What to do when uPlot cannot be obtained.
fn help() -> String {
    format!(
        "To build the collector, either install Node.js with npm (npm ci fetches uPlot from the npm registry, \
         as pinned by collector/web/package-lock.json), or set {UPLOT_DIR_VAR} to a directory containing \
         {} and {} (the dist/ folder of the `uplot` npm package) to build offline.",
        ASSETS[0], ASSETS[1]
    )
}
