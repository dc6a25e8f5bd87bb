//! Where the chorus-server binary of a test (or example) run is, and building
//! it when it is missing or stale.
//!
//! A test of another package than `chorus-server` has no
//! `CARGO_BIN_EXE_chorus-server`, and `cargo test -p chorus --test NAME`
//! alone builds no binary of the server. So the binary is looked up in the
//! target directory the running executable was built in
//! (`<target>/<profile>/deps/<test>` or `<target>/<profile>/examples/<name>`
//! → `<target>/<profile>/chorus-server`, also under `<target>/<triple>/`). When
//! it is missing, or older than a source file of a crate it is built from, it
//! is built once per process with `cargo build -p chorus-server` into that
//! target directory and profile (cargo's own lock on the target directory
//! serialises test processes that do this at the same time). Under
//! `cargo test --workspace` the binary is fresh already (the server's own
//! integration tests make cargo build it) and cargo is not run again.
//!
//! `CHORUS_SERVER=<path>` overrides all of this.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// The workspace root (this crate lives in `<root>/testkit`).
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// What chorus-server is built from, relative to the workspace root: the
/// sources and manifests of the workspace crates in its build, and the
/// workspace manifest and lock file. (Their tests, benches and examples are
/// not part of the binary.)
const SOURCES: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "engine/Cargo.toml",
    "engine/src",
    "replication/Cargo.toml",
    "replication/src",
    "site/Cargo.toml",
    "site/src",
    "server/Cargo.toml",
    "server/src",
];

/// How long a build of chorus-server may take before the test gives up.
const BUILD_LIMIT: Duration = Duration::from_secs(30 * 60);

/// The chorus-server binary to run (see the module docs). Panics with the
/// reason when it can be neither found nor built.
pub fn server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("CHORUS_SERVER") {
            return PathBuf::from(path);
        }
        let build = BuildDir::of_current_exe()
            .unwrap_or_else(|e| panic!("cannot locate chorus-server: {e}"));
        let binary = build.binary();
        if !is_fresh(&binary, &workspace_root()) {
            build.build();
            // Cargo leaves a binary it finds up to date untouched (say the
            // newer source was the workspace manifest, changed for another
            // crate): mark it checked now, or every later test process
            // would run cargo again. A read-only handle can set the time,
            // also while another test runs the binary.
            let checked =
                std::fs::File::open(&binary).and_then(|f| f.set_modified(SystemTime::now()));
            assert!(
                checked.is_ok(),
                "cargo built chorus-server, but {}: {checked:?}",
                binary.display()
            );
        }
        binary
    })
}

/// A cargo output directory: `<target>/[<triple>/]<profile>`.
#[derive(Debug)]
struct BuildDir {
    target_dir: PathBuf,
    triple: Option<String>,
    profile_dir: PathBuf,
}

impl BuildDir {
    fn of_current_exe() -> Result<BuildDir, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        BuildDir::of_exe(&exe)
    }

    /// `exe` is `<profile_dir>/deps/<name>` (tests, benches) or
    /// `<profile_dir>/examples/<name>` (examples).
    fn of_exe(exe: &Path) -> Result<BuildDir, String> {
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .ok_or_else(|| format!("{} is not in a cargo target directory", exe.display()))?;
        let above = profile_dir
            .parent()
            .ok_or_else(|| format!("{} has no target directory", profile_dir.display()))?;
        // Cargo tags the root of every target directory with CACHEDIR.TAG;
        // without it, `above` is the directory of a `--target` triple.
        let (target_dir, triple) = if above.join("CACHEDIR.TAG").exists() {
            (above.to_path_buf(), None)
        } else {
            let triple = above.file_name().map(|n| n.to_string_lossy().into_owned());
            match above.parent() {
                Some(target) if target.join("CACHEDIR.TAG").exists() => {
                    (target.to_path_buf(), triple)
                }
                _ => (above.to_path_buf(), None),
            }
        };
        Ok(BuildDir {
            target_dir,
            triple,
            profile_dir: profile_dir.to_path_buf(),
        })
    }

    fn binary(&self) -> PathBuf {
        self.profile_dir
            .join(format!("chorus-server{}", std::env::consts::EXE_SUFFIX))
    }

    /// The cargo arguments that select this directory's profile: the `dev`
    /// and `test` profiles build into `debug`, `release` and `bench` into
    /// `release`, a custom profile into its own name.
    fn profile_args(&self) -> Vec<String> {
        match self.profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => Vec::new(),
            Some("release") => vec!["--release".into()],
            Some(other) => vec!["--profile".into(), other.into()],
        }
    }

    /// Runs `cargo build -p chorus-server` into this directory.
    fn build(&self) {
        let cargo = std::env::var_os("CARGO")
            .or_else(|| option_env!("CARGO").map(Into::into))
            .unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        command
            .arg("build")
            .arg("--manifest-path")
            .arg(workspace_root().join("Cargo.toml"))
            .args(["-p", "chorus-server", "--bin", "chorus-server"])
            .arg("--target-dir")
            .arg(&self.target_dir)
            .args(self.profile_args());
        if let Some(triple) = &self.triple {
            command.args(["--target", triple]);
        }
        eprintln!("building chorus-server for this test: {command:?}");
        let (status, _out, err) = crate::run_bounded(&mut command, None, BUILD_LIMIT);
        assert!(status.success(), "{command:?} failed:\n{err}");
    }
}

/// Whether `binary` exists and is newer than every source file it is built
/// from (see [`SOURCES`]).
fn is_fresh(binary: &Path, root: &Path) -> bool {
    let Some(built) = modified(binary) else {
        return false;
    };
    SOURCES
        .iter()
        .filter_map(|source| newest_source(&root.join(source)))
        .all(|newest| newest <= built)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of the Rust sources at or below `path`, or
/// of `path` itself when it is a file (hidden entries are skipped).
fn newest_source(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_file() {
        return meta.modified().ok();
    }
    let mut newest = None;
    for entry in std::fs::read_dir(path).ok()?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let child = entry.path();
        let candidate = if child.is_dir() {
            newest_source(&child)
        } else if name.ends_with(".rs") {
            modified(&child)
        } else {
            None
        };
        newest = newest.max(candidate);
    }
    newest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_dir_of_a_test_an_example_and_a_triple() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let target = tmp.path().join("target");
        std::fs::create_dir_all(target.join("x86_64-unknown-linux-gnu/release/deps"))
            .expect("dirs");
        std::fs::create_dir_all(target.join("debug/deps")).expect("dirs");
        std::fs::write(target.join("CACHEDIR.TAG"), "").expect("tag");

        let test = BuildDir::of_exe(&target.join("debug/deps/e2e-0123")).expect("test");
        assert_eq!(test.target_dir, target);
        assert_eq!(test.triple, None);
        assert!(test.profile_args().is_empty());
        assert_eq!(
            test.binary(),
            target.join(format!(
                "debug/chorus-server{}",
                std::env::consts::EXE_SUFFIX
            ))
        );

        let example = BuildDir::of_exe(&target.join("debug/examples/demo")).expect("example");
        assert_eq!(example.profile_dir, target.join("debug"));

        let cross = BuildDir::of_exe(&target.join("x86_64-unknown-linux-gnu/release/deps/t"))
            .expect("cross");
        assert_eq!(cross.target_dir, target);
        assert_eq!(cross.triple.as_deref(), Some("x86_64-unknown-linux-gnu"));
        assert_eq!(cross.profile_args(), vec!["--release".to_string()]);

        let custom = BuildDir::of_exe(&target.join("profiling/deps/t")).expect("custom");
        assert_eq!(custom.profile_args(), vec!["--profile", "profiling"]);
    }

    #[test]
    fn a_binary_older_than_a_source_is_stale() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path();
        std::fs::create_dir_all(root.join("server/src")).expect("dirs");
        let source = root.join("server/src/main.rs");
        std::fs::write(&source, "fn main() {}").expect("source");
        let binary = root.join("chorus-server");
        assert!(!is_fresh(&binary, root), "a missing binary is stale");

        std::fs::write(&binary, "").expect("binary");
        let now = SystemTime::now();
        let set = |path: &Path, time: SystemTime| {
            std::fs::File::options()
                .write(true)
                .open(path)
                .and_then(|f| f.set_modified(time))
                .expect("set mtime");
        };
        set(&source, now - Duration::from_secs(60));
        set(&binary, now);
        assert!(is_fresh(&binary, root));
        set(&source, now + Duration::from_secs(60));
        assert!(!is_fresh(&binary, root));
    }
}
