//! The origin behind the CDN: every version of every index file, and the `.crate` files.
//!
//! Index files are written the way crates.io writes them: one JSON line a version, in
//! publish order, with `cksum` the sha256 of the `.crate`. Each change (publish, yank,
//! unyank) makes a new version of one file, with a strong `ETag` and a `Last-Modified`
//! at one-second resolution, as S3 gives them.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::api::ApiError;

/// One version of an index file.
#[derive(Clone, Debug)]
pub struct FileVersion {
    pub body: Vec<u8>,
    /// A strong entity tag, quoted: `"<hex>"`.
    pub etag: String,
    /// When this version was written, truncated to whole seconds.
    pub last_modified: SystemTime,
}

/// One line of an index file (see cargo's `IndexPackage`).
#[derive(Serialize, Clone, Debug)]
pub struct IndexEntry {
    pub name: String,
    pub vers: String,
    pub deps: Vec<IndexDependency>,
    pub cksum: String,
    pub features: BTreeMap<String, Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features2: Option<BTreeMap<String, Vec<String>>>,
    pub yanked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub links: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rust_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub v: Option<u32>,
}

#[derive(Serialize, Clone, Debug)]
pub struct IndexDependency {
    pub name: String,
    pub req: String,
    pub features: Vec<String>,
    pub optional: bool,
    pub default_features: bool,
    pub target: Option<String>,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
}

#[derive(Default)]
pub struct Origin {
    /// Every version of each index file, oldest first, by index path (`3/b/bar`).
    files: BTreeMap<String, Vec<FileVersion>>,
    /// The lines of each crate's index file, by lowercase name.
    entries: BTreeMap<String, Vec<IndexEntry>>,
    /// `.crate` files by (lowercase name, version).
    crates: HashMap<(String, String), Vec<u8>>,
}

impl Origin {
    /// The newest version of the index file at `path`, and its number.
    pub fn current(&self, path: &str) -> Option<(usize, &FileVersion)> {
        let versions = self.files.get(path)?;
        versions.last().map(|v| (versions.len() - 1, v))
    }

    /// Version `number` of the index file at `path`.
    pub fn version(&self, path: &str, number: usize) -> Option<&FileVersion> {
        self.files.get(path)?.get(number)
    }

    /// How many versions the file at `path` has had.
    pub fn version_count(&self, path: &str) -> usize {
        self.files.get(path).map_or(0, Vec::len)
    }

    pub fn crate_file(&self, name: &str, version: &str) -> Option<&[u8]> {
        self.crates
            .get(&(name.to_lowercase(), version.to_string()))
            .map(Vec::as_slice)
    }

    /// Adds a version; fails, changing nothing, when the crate already has it. Returns the
    /// index path that changed.
    pub fn publish(
        &mut self,
        entry: IndexEntry,
        crate_file: Vec<u8>,
        now: SystemTime,
    ) -> Result<String, ApiError> {
        let key = entry.name.to_lowercase();
        let lines = self.entries.entry(key.clone()).or_default();
        if let Some(first) = lines.first()
            && first.name != entry.name
        {
            return Err(ApiError::bad_request(format!(
                "crate was previously named `{}`",
                first.name
            )));
        }
        if lines.iter().any(|line| line.vers == entry.vers) {
            return Err(ApiError::bad_request(format!(
                "crate version `{}` is already uploaded",
                entry.vers
            )));
        }
        self.crates
            .insert((key.clone(), entry.vers.clone()), crate_file);
        lines.push(entry);
        Ok(self.write_file(&key, now))
    }

    /// Yanks or unyanks a version. Returns the index path that changed.
    pub fn set_yanked(
        &mut self,
        name: &str,
        version: &str,
        yanked: bool,
        now: SystemTime,
    ) -> Result<String, ApiError> {
        let key = name.to_lowercase();
        let line = self
            .entries
            .get_mut(&key)
            .and_then(|lines| lines.iter_mut().find(|l| l.vers == version))
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "crate `{name}` does not have a version `{version}`"
                ))
            })?;
        line.yanked = yanked;
        Ok(self.write_file(&key, now))
    }

    fn write_file(&mut self, key: &str, now: SystemTime) -> String {
        let mut body = Vec::new();
        for line in &self.entries[key] {
            serde_json::to_writer(&mut body, line).expect("index lines serialize");
            body.push(b'\n');
        }
        let path = index_path(key);
        let etag = format!("\"{}\"", &hex(&Sha256::digest(&body))[..32]);
        self.files
            .entry(path.clone())
            .or_default()
            .push(FileVersion {
                body,
                etag,
                last_modified: whole_seconds(now),
            });
        path
    }
}

/// Where a crate's index file lives (cargo's `make_dep_path`).
pub fn index_path(name: &str) -> String {
    let name = name.to_lowercase();
    match name.len() {
        1 => format!("1/{name}"),
        2 => format!("2/{name}"),
        3 => format!("3/{}/{name}", &name[..1]),
        _ => format!("{}/{}/{name}", &name[..2], &name[2..4]),
    }
}

/// `Last-Modified` has one-second resolution (RFC 9110 8.8.2).
pub fn whole_seconds(time: SystemTime) -> SystemTime {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    UNIX_EPOCH + Duration::from_secs(secs)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, vers: &str) -> IndexEntry {
        IndexEntry {
            name: name.into(),
            vers: vers.into(),
            deps: vec![],
            cksum: "00".into(),
            features: BTreeMap::new(),
            features2: None,
            yanked: false,
            links: None,
            rust_version: None,
            v: None,
        }
    }

    #[test]
    fn paths_follow_cargo() {
        assert_eq!(index_path("a"), "1/a");
        assert_eq!(index_path("ab"), "2/ab");
        assert_eq!(index_path("Bar"), "3/b/bar");
        assert_eq!(index_path("serde"), "se/rd/serde");
    }

    #[test]
    fn each_change_is_a_new_version_of_one_file() {
        let mut origin = Origin::default();
        let t0 = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        origin.publish(entry("bar", "0.1.0"), vec![1], t0).unwrap();
        origin.publish(entry("bar", "0.2.0"), vec![2], t0).unwrap();
        origin.set_yanked("bar", "0.1.0", true, t0).unwrap();
        assert_eq!(origin.version_count("3/b/bar"), 3);
        let (n, current) = origin.current("3/b/bar").unwrap();
        assert_eq!(n, 2);
        let text = String::from_utf8(current.body.clone()).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().next().unwrap().contains(r#""yanked":true"#));
        // Same second, other content: equal Last-Modified, different ETag.
        let first = origin.version("3/b/bar", 0).unwrap();
        assert_eq!(first.last_modified, current.last_modified);
        assert_ne!(first.etag, current.etag);
        assert_eq!(
            current.last_modified,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
    }

    #[test]
    fn a_version_is_published_once() {
        let mut origin = Origin::default();
        let now = SystemTime::now();
        origin.publish(entry("bar", "0.1.0"), vec![1], now).unwrap();
        let err = origin
            .publish(entry("bar", "0.1.0"), vec![9], now)
            .unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(origin.version_count("3/b/bar"), 1);
        assert_eq!(origin.crate_file("bar", "0.1.0"), Some(&[1u8][..]));
    }
}
