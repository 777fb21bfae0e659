//! `cargo xtask vendor`: the `cargo` crate at the pinned version and the
//! `cargo-test-support` its lockfile names, downloaded through cargo (so the user's
//! registry configuration, mirrors and `--offline` apply), checked against the
//! registry's checksums, unpacked into `vendor/cargo` laid out like cargo's repository,
//! and committed with pinned git settings:
//!
//! * `pristine`: both crates exactly as published;
//! * `base`: the setup commit, a `[patch]` that makes the testsuite use the vendored
//!   `crates/cargo-test-support` (and the lockfile change it needs). The series applies
//!   here.

use std::fs;
use std::io::Read as _;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::git::{self, Git};
use crate::project::{CARGO_VERSION, Project};
use crate::shell;

/// Bump when the layout of the vendored tree or the setup commit changes, so that
/// existing trees are rebuilt.
const LAYOUT_VERSION: u32 = 1;

#[derive(Default, Clone, Copy)]
pub struct VendorOptions {
    pub offline: bool,
}

/// What a vendored tree was made from; kept in its `.git` directory.
#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Stamp {
    layout: u32,
    cargo: VerifiedCrate,
    cargo_test_support: VerifiedCrate,
    base_commit: String,
}

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
struct VerifiedCrate {
    name: String,
    version: String,
    sha256: String,
}

/// Makes sure `vendor/cargo` holds the pinned cargo; does nothing when it already does.
pub fn ensure(project: &Project, options: VendorOptions) -> Result<()> {
    let dir = project.vendored_cargo();
    if let Some(stamp) = current_stamp(&dir) {
        shell::status(
            "Fresh",
            format!(
                "{} {} with {} {} in {} (nothing to vendor)",
                stamp.cargo.name,
                stamp.cargo.version,
                stamp.cargo_test_support.name,
                stamp.cargo_test_support.version,
                project.display(&dir)
            ),
        );
        return Ok(());
    }
    if dir.exists() {
        // The tree is from another pin or layout: replacing it must not lose work.
        crate::apply::check_no_unsaved_work(project).with_context(|| {
            format!(
                "vendor/cargo must be replaced (it is not an intact cargo {CARGO_VERSION} \
                 vendored by this xtask), but it may hold work that patches/ does not have"
            )
        })?;
    }

    // Staged next to its destination: inside `vendor/`, which our workspace excludes, so
    // cargo treats the staged tree as the workspace of its own that it is.
    let vendor_dir = project.root().join("vendor");
    let vendor_existed = vendor_dir.exists();
    let staging = vendor_dir.join(".staging");
    let stamp = match vendor_into(project, options, &staging) {
        Ok(stamp) => stamp,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            if !vendor_existed {
                let _ = fs::remove_dir(&vendor_dir);
            }
            return Err(e.context("nothing was changed in vendor/"));
        }
    };

    // Only now, with everything verified and committed, replace the old tree.
    crate::checkout::remove(project)?;
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("could not remove {}", dir.display()))?;
    }
    fs::create_dir_all(dir.parent().unwrap())?;
    fs::rename(&staging, &dir)
        .with_context(|| format!("could not move the new tree to {}", dir.display()))?;
    write_stamp(&dir, &stamp)?;
    shell::status(
        "Vendored",
        format!(
            "cargo {} in {} (base commit {})",
            stamp.cargo.version,
            project.display(&dir),
            &stamp.base_commit[..12]
        ),
    );
    Ok(())
}

/// The stamp of the tree in `dir` when it matches the pin and is intact.
fn current_stamp(dir: &Path) -> Option<Stamp> {
    let text = fs::read_to_string(stamp_path(dir)).ok()?;
    let stamp: Stamp = serde_json::from_str(&text).ok()?;
    let fresh = stamp.layout == LAYOUT_VERSION
        && stamp.cargo.version == CARGO_VERSION
        && Git::new(dir).rev_parse(git::BASE_TAG).as_deref() == Some(&stamp.base_commit);
    fresh.then_some(stamp)
}

fn stamp_path(dir: &Path) -> PathBuf {
    dir.join(".git").join("xtask-vendor.json")
}

fn write_stamp(dir: &Path, stamp: &Stamp) -> Result<()> {
    let text = serde_json::to_string_pretty(stamp)?;
    fs::write(stamp_path(dir), text + "\n").context("could not write the vendor stamp")
}

fn vendor_into(project: &Project, options: VendorOptions, staging: &Path) -> Result<Stamp> {
    if staging.exists() {
        fs::remove_dir_all(staging)
            .with_context(|| format!("could not clear {}", staging.display()))?;
    }
    fs::create_dir_all(staging)?;

    shell::status(
        "Vendoring",
        format!("cargo {CARGO_VERSION} from its registry"),
    );
    let cargo = fetch_verified(project, options, "cargo", CARGO_VERSION).with_context(|| {
        format!(
            "could not get the `cargo` crate {CARGO_VERSION} (pinned as CARGO_VERSION in \
             xtask/src/project.rs): check that this version exists and that the registry \
             is reachable, or run with --offline when it is already in cargo's cache"
        )
    })?;
    unpack(&cargo.archive, &cargo.krate, staging)?;

    // The testsuite's support crate, at the version cargo's own lockfile was made with.
    let lock = fs::read_to_string(staging.join("Cargo.lock"))
        .context("the cargo crate has no Cargo.lock")?;
    let support_version = locked_version(&lock, "cargo-test-support")
        .context("cargo's Cargo.lock does not name cargo-test-support")?;
    shell::status(
        "Vendoring",
        format!("cargo-test-support {support_version} (as cargo's Cargo.lock asks)"),
    );
    let support = fetch_verified(project, options, "cargo-test-support", &support_version)
        .context("could not get the `cargo-test-support` crate")?;
    let support_dir = staging.join("crates").join("cargo-test-support");
    unpack(&support.archive, &support.krate, &support_dir)?;

    let repo = Git::new(staging);
    repo.run(["init", "--quiet"])?;
    for (key, value) in git::local_settings() {
        repo.run(["config", "--local", key, value])?;
    }
    repo.commit_all_fixed(&format!(
        "Import cargo {} and cargo-test-support {} from crates.io\n\n\
         Both crates exactly as published.\n\n\
         cargo-{}.crate sha256 {}\n\
         cargo-test-support-{}.crate sha256 {}\n",
        cargo.krate.version,
        support.krate.version,
        cargo.krate.version,
        cargo.krate.sha256,
        support.krate.version,
        support.krate.sha256,
    ))?;
    repo.run(["tag", git::PRISTINE_TAG])?;
    shell::status("Committed", "the pristine tree (tag `pristine`)");

    setup_commit(staging, options)?;
    repo.run(["tag", git::BASE_TAG])?;
    let base_commit = repo
        .rev_parse("HEAD")
        .context("no HEAD after the setup commit")?;
    shell::status("Committed", "the testsuite setup (tag `base`)");

    Ok(Stamp {
        layout: LAYOUT_VERSION,
        cargo: cargo.krate,
        cargo_test_support: support.krate,
        base_commit,
    })
}

/// Wires `crates/cargo-test-support` into the testsuite, as in cargo's repository, so
/// that the series can change it the way an upstream pull request would.
fn setup_commit(tree: &Path, options: VendorOptions) -> Result<()> {
    let manifest = tree.join("Cargo.toml");
    let mut text = fs::read_to_string(&manifest)?;
    text.push_str(
        "\n# Added by `cargo xtask vendor`: the testsuite uses the vendored support crate,\n\
         # as it does in cargo's repository.\n\
         [patch.crates-io]\n\
         cargo-test-support = { path = \"crates/cargo-test-support\" }\n",
    );
    fs::write(&manifest, text)?;
    // `cargo metadata` rewrites the lockfile with the smallest change that the patch
    // needs: the source of cargo-test-support, nothing else.
    let mut metadata = shell::cargo();
    metadata
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(&manifest);
    if options.offline {
        metadata.arg("--offline");
    }
    shell::output(&mut metadata).context("could not update Cargo.lock for the [patch]")?;
    Git::new(tree).commit_all_fixed(
        "Use the vendored cargo-test-support in the testsuite\n\n\
         Setup, not part of the series: cargo's repository builds its testsuite\n\
         against crates/cargo-test-support; this `[patch]` does the same here so\n\
         that the series can change the support crate.\n",
    )
}

struct Fetched {
    krate: VerifiedCrate,
    archive: PathBuf,
}

/// Downloads `name = "=version"` through cargo, then checks the `.crate` in cargo's
/// cache against the checksum that the registry index gave (as recorded in the
/// lockfile cargo wrote).
fn fetch_verified(
    project: &Project,
    options: VendorOptions,
    name: &str,
    version: &str,
) -> Result<Fetched> {
    let dir = project.scratch_dir().join(format!("fetch-{name}"));
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"xtask-fetch\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
             publish = false\n\n[lib]\npath = \"lib.rs\"\n\n\
             [dependencies]\n{name} = \"={version}\"\n\n[workspace]\n"
        ),
    )?;
    fs::write(dir.join("lib.rs"), "")?;
    let manifest = dir.join("Cargo.toml");

    let mut fetch = shell::cargo();
    fetch
        .args(["fetch", "--quiet", "--manifest-path"])
        .arg(&manifest);
    if options.offline {
        fetch.arg("--offline");
    }
    shell::output(&mut fetch)?;

    let mut metadata = shell::cargo();
    metadata
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--manifest-path",
        ])
        .arg(&manifest);
    let metadata: Metadata = serde_json::from_str(&shell::stdout(&mut metadata)?)
        .context("could not read `cargo metadata` output")?;
    let lock = fs::read_to_string(dir.join("Cargo.lock"))?;
    let _ = fs::remove_dir_all(&dir);

    let package = metadata
        .packages
        .iter()
        .find(|p| p.name == name && p.version == version)
        .with_context(|| format!("cargo metadata does not list {name} {version}"))?;
    let expected = locked_checksum(&lock, name, version).with_context(|| {
        format!("the lockfile has no checksum for {name} {version}: is it from a registry?")
    })?;
    let archive = crate_archive_path(&package.manifest_path, name, version).with_context(|| {
        format!(
            "{name} {version} came from {}, which keeps no .crate archive to verify; \
             vendoring needs a registry source (crates.io or a registry mirror)",
            package.source.as_deref().unwrap_or("a local path")
        )
    })?;
    let bytes =
        fs::read(&archive).with_context(|| format!("could not read {}", archive.display()))?;
    let actual = hex(&Sha256::digest(&bytes));
    if actual != expected {
        bail!(
            "checksum mismatch for {}:\n  expected sha256 {expected} (from the registry index)\n  \
             found    sha256 {actual}\n\
             The cached archive is damaged or was tampered with: delete it and run \
             `cargo xtask vendor` again to download it anew.",
            archive.display()
        );
    }
    shell::status(
        "Verified",
        format!("{name}-{version}.crate sha256 {actual}"),
    );
    Ok(Fetched {
        krate: VerifiedCrate {
            name: name.to_string(),
            version: version.to_string(),
            sha256: actual,
        },
        archive,
    })
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<MetadataPackage>,
}

#[derive(Deserialize)]
struct MetadataPackage {
    name: String,
    version: String,
    source: Option<String>,
    manifest_path: PathBuf,
}

#[derive(Deserialize)]
struct Lockfile {
    #[serde(default)]
    package: Vec<LockedPackage>,
}

#[derive(Deserialize)]
struct LockedPackage {
    name: String,
    version: String,
    checksum: Option<String>,
}

fn parse_lock(lock: &str) -> Option<Lockfile> {
    toml::from_str(lock).ok()
}

fn locked_version(lock: &str, name: &str) -> Option<String> {
    let lock = parse_lock(lock)?;
    let mut versions = lock.package.into_iter().filter(|p| p.name == name);
    let first = versions.next()?;
    // Two versions of the support crate would leave the choice ambiguous.
    versions.next().is_none().then_some(first.version)
}

fn locked_checksum(lock: &str, name: &str, version: &str) -> Option<String> {
    parse_lock(lock)?
        .package
        .into_iter()
        .find(|p| p.name == name && p.version == version)?
        .checksum
}

/// Cargo unpacks `<registry>/cache/<index>/<name>-<version>.crate` into
/// `<registry>/src/<index>/<name>-<version>/`; go back from the second to the first.
fn crate_archive_path(manifest_path: &Path, name: &str, version: &str) -> Option<PathBuf> {
    let unpacked = manifest_path.parent()?;
    let index_dir = unpacked.parent()?;
    let src_dir = index_dir.parent()?;
    if src_dir.file_name()? != "src" {
        return None;
    }
    let archive = src_dir
        .parent()?
        .join("cache")
        .join(index_dir.file_name()?)
        .join(format!("{name}-{version}.crate"));
    archive.is_file().then_some(archive)
}

/// Unpacks a `.crate` (gzip'd tar whose entries all sit under `<name>-<version>/`)
/// into `dest`, refusing entries that would land outside it.
fn unpack(archive: &Path, krate: &VerifiedCrate, dest: &Path) -> Result<()> {
    let prefix = format!("{}-{}", krate.name, krate.version);
    let file = fs::File::open(archive)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    tar.set_preserve_mtime(false);
    let mut count = 0;
    for entry in tar
        .entries()
        .with_context(|| format!("{} is not a .crate", archive.display()))?
    {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let relative = path.strip_prefix(&prefix).with_context(|| {
            format!(
                "{} holds {} outside {prefix}/",
                archive.display(),
                path.display()
            )
        })?;
        if relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            bail!(
                "{} holds an unsafe path {}",
                archive.display(),
                path.display()
            );
        }
        if relative.as_os_str().is_empty() {
            continue;
        }
        let target = dest.join(relative);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        entry
            .unpack(&target)
            .with_context(|| format!("could not unpack {}", path.display()))?;
        count += 1;
    }
    // Fail loudly rather than commit a half-empty tree.
    let mut rest = Vec::new();
    tar.into_inner().read_to_end(&mut rest)?;
    if count == 0 {
        bail!("{} is empty", archive.display());
    }
    shell::status("Unpacked", format!("{prefix} ({count} files)"));
    Ok(())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_path_mirrors_cargos_cache_layout() {
        let dir = std::env::temp_dir().join("xtask-archive-path-test");
        let cache = dir.join("registry/cache/index.example-1234");
        fs::create_dir_all(&cache).unwrap();
        fs::write(cache.join("foo-1.2.3.crate"), b"").unwrap();
        let manifest = dir.join("registry/src/index.example-1234/foo-1.2.3/Cargo.toml");
        assert_eq!(
            crate_archive_path(&manifest, "foo", "1.2.3"),
            Some(cache.join("foo-1.2.3.crate"))
        );
        // A directory source (vendored sources) has no archive.
        let vendored = dir.join("vendor/foo/Cargo.toml");
        assert_eq!(crate_archive_path(&vendored, "foo", "1.2.3"), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn support_version_comes_from_the_lockfile() {
        let lock = r#"
version = 4
[[package]]
name = "cargo-test-support"
version = "0.11.3"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "abcd"
"#;
        assert_eq!(
            locked_version(lock, "cargo-test-support").as_deref(),
            Some("0.11.3")
        );
        assert_eq!(
            locked_checksum(lock, "cargo-test-support", "0.11.3").as_deref(),
            Some("abcd")
        );
        assert_eq!(locked_version(lock, "missing"), None);
    }
}
