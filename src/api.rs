//! The registry's web API: the publish body (decoded with the `crates-io` crate's own
//! types), its checks, and errors in crates.io's shape.

use std::collections::BTreeMap;
use std::io::Read as _;

use crates_io::{NewCrate, NewCrateDependency};
use sha2::{Digest as _, Sha256};

use crate::origin::{IndexDependency, IndexEntry, hex};

/// An API error: a status and crates.io's `{"errors":[{"detail":"..."}]}` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub detail: String,
}

impl ApiError {
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            detail: detail.into(),
        }
    }

    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError {
            status: 403,
            detail: detail.into(),
        }
    }

    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError {
            status: 404,
            detail: detail.into(),
        }
    }

    pub fn body(&self) -> String {
        serde_json::json!({ "errors": [{ "detail": self.detail }] }).to_string()
    }
}

impl std::error::Error for ApiError {}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.detail)
    }
}

/// A decoded `PUT /api/v1/crates/new`.
pub struct Upload {
    pub metadata: NewCrate,
    pub crate_file: Vec<u8>,
}

/// The body cargo sends: a little-endian u32 length and the JSON metadata, then a u32
/// length and the `.crate` file.
pub fn decode_upload(body: &[u8]) -> Result<Upload, ApiError> {
    let (json, rest) = length_prefixed(body, "metadata")?;
    let (crate_file, rest) = length_prefixed(rest, "crate file")?;
    if !rest.is_empty() {
        return Err(ApiError::bad_request(format!(
            "invalid upload request: {} bytes after the crate file",
            rest.len()
        )));
    }
    let metadata: NewCrate = serde_json::from_slice(json)
        .map_err(|e| ApiError::bad_request(format!("invalid upload request: {e}")))?;
    Ok(Upload {
        metadata,
        crate_file: crate_file.to_vec(),
    })
}

fn length_prefixed<'a>(data: &'a [u8], what: &str) -> Result<(&'a [u8], &'a [u8]), ApiError> {
    let truncated = || ApiError::bad_request(format!("invalid upload request: truncated {what}"));
    let len_bytes: [u8; 4] = data.get(..4).ok_or_else(truncated)?.try_into().unwrap();
    let len = u32::from_le_bytes(len_bytes) as usize;
    let content = data.get(4..4 + len).ok_or_else(truncated)?;
    Ok((content, &data[4 + len..]))
}

impl Upload {
    /// Checks the upload as crates.io does (a name and a version, a `.crate` that is a
    /// gzip'd tar of `name-version/` holding `Cargo.toml`) and makes its index line.
    pub fn into_index_entry(self) -> Result<(IndexEntry, Vec<u8>), ApiError> {
        let meta = self.metadata;
        if meta.name.is_empty()
            || !meta
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ApiError::bad_request(format!(
                "invalid crate name: `{}`",
                meta.name
            )));
        }
        if meta.vers.is_empty() || meta.vers.contains(char::is_whitespace) {
            return Err(ApiError::bad_request(format!(
                "invalid version: `{}`",
                meta.vers
            )));
        }
        verify_crate_file(&self.crate_file, &meta.name, &meta.vers)?;
        let cksum = hex(&Sha256::digest(&self.crate_file));
        let (features, features2) = split_features(meta.features);
        let entry = IndexEntry {
            deps: meta.deps.into_iter().map(index_dependency).collect(),
            cksum,
            v: features2.as_ref().map(|_| 2),
            features,
            features2,
            yanked: false,
            links: meta.links,
            rust_version: meta.rust_version,
            name: meta.name,
            vers: meta.vers,
        };
        Ok((entry, self.crate_file))
    }
}

/// A `.crate` must unpack to `name-version/...` with a `Cargo.toml` at its top.
fn verify_crate_file(data: &[u8], name: &str, vers: &str) -> Result<(), ApiError> {
    let malformed =
        |why: String| ApiError::bad_request(format!("uploaded tarball is malformed: {why}"));
    let prefix = format!("{name}-{vers}");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(data));
    let mut has_manifest = false;
    for entry in archive.entries().map_err(|e| malformed(e.to_string()))? {
        let mut entry = entry.map_err(|e| malformed(e.to_string()))?;
        let path = entry
            .path()
            .map_err(|e| malformed(e.to_string()))?
            .into_owned();
        if !path.starts_with(&prefix) {
            return Err(malformed(format!(
                "`{}` is outside `{prefix}/`: the tarball does not match the crate name \
                 and version",
                path.display()
            )));
        }
        has_manifest |= path == std::path::Path::new(&prefix).join("Cargo.toml");
        // Read it through, so a corrupt stream is found now.
        std::io::copy(&mut entry, &mut std::io::sink()).map_err(|e| malformed(e.to_string()))?;
    }
    let mut rest = Vec::new();
    archive
        .into_inner()
        .read_to_end(&mut rest)
        .map_err(|e| malformed(e.to_string()))?;
    if !has_manifest {
        return Err(malformed(format!("no `{prefix}/Cargo.toml`")));
    }
    Ok(())
}

type Features = BTreeMap<String, Vec<String>>;

/// crates.io keeps features that use `dep:` or `?/` in `features2`, with `"v": 2`, so
/// that cargo versions which do not understand them skip the line.
fn split_features(features: Features) -> (Features, Option<Features>) {
    let (new, old): (BTreeMap<_, _>, BTreeMap<_, _>) = features
        .into_iter()
        .partition(|(_, v)| v.iter().any(|f| f.starts_with("dep:") || f.contains("?/")));
    (old, (!new.is_empty()).then_some(new))
}

/// A dependency as the index records it: renamed dependencies keep the name used in
/// `Cargo.toml` as `name` and the crate's own name as `package`.
fn index_dependency(dep: NewCrateDependency) -> IndexDependency {
    let (name, package) = match dep.explicit_name_in_toml {
        Some(alias) => (alias, Some(dep.name)),
        None => (dep.name, None),
    };
    IndexDependency {
        name,
        req: dep.version_req,
        features: dep.features,
        optional: dep.optional,
        default_features: dep.default_features,
        target: dep.target,
        kind: dep.kind,
        registry: dep.registry,
        package,
    }
}

/// The body of a successful publish, as crates.io answers.
pub fn publish_ok_body() -> String {
    serde_json::json!({
        "warnings": { "invalid_categories": [], "invalid_badges": [], "other": [] }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `.crate` with `files` under `root/`.
    pub fn crate_file(root: &str, files: &[&str]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for file in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(0);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, format!("{root}/{file}"), &[][..])
                .unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn body(json: &str, krate: &[u8]) -> Vec<u8> {
        let mut body = (json.len() as u32).to_le_bytes().to_vec();
        body.extend(json.as_bytes());
        body.extend((krate.len() as u32).to_le_bytes());
        body.extend(krate);
        body
    }

    const META: &str = r#"{"name":"foo","vers":"0.1.0","deps":[{"optional":false,
        "default_features":true,"name":"bar","features":[],"version_req":"^0.2",
        "target":null,"kind":"normal","explicit_name_in_toml":"baz"}],
        "features":{"x":["dep:bar"],"y":[]},"authors":[],"description":null,
        "documentation":null,"homepage":null,"readme":null,"readme_file":null,
        "keywords":[],"categories":[],"license":"MIT","license_file":null,
        "repository":null,"badges":{},"links":null,"rust_version":"1.70"}"#;

    #[test]
    fn decodes_and_indexes_like_crates_io() {
        let krate = crate_file("foo-0.1.0", &["Cargo.toml", "src/lib.rs"]);
        let upload = decode_upload(&body(META, &krate)).unwrap();
        let (entry, file) = upload.into_index_entry().unwrap();
        assert_eq!(file, krate);
        assert_eq!(entry.cksum, hex(&Sha256::digest(&krate)));
        let line = serde_json::to_value(&entry).unwrap();
        assert_eq!(line["deps"][0]["name"], "baz");
        assert_eq!(line["deps"][0]["package"], "bar");
        assert_eq!(line["deps"][0]["req"], "^0.2");
        assert_eq!(line["features"], serde_json::json!({"y": []}));
        assert_eq!(line["features2"], serde_json::json!({"x": ["dep:bar"]}));
        assert_eq!(line["v"], 2);
        assert_eq!(line["rust_version"], "1.70");
        assert_eq!(line["yanked"], false);
    }

    #[test]
    fn rejects_truncated_bodies() {
        let krate = crate_file("foo-0.1.0", &["Cargo.toml"]);
        let full = body(META, &krate);
        for cut in [0, 3, 10, full.len() - 1] {
            let err = decode_upload(&full[..cut])
                .err()
                .expect("truncated body accepted");
            assert_eq!(err.status, 400, "{err}");
            assert!(err.detail.contains("truncated"), "{err}");
        }
        assert!(decode_upload(&[full.clone(), vec![0]].concat()).is_err());
    }

    #[test]
    fn rejects_bad_json() {
        let krate = crate_file("foo-0.1.0", &["Cargo.toml"]);
        let err = decode_upload(&body("{not json", &krate)).err().unwrap();
        assert_eq!(err.status, 400);
        assert!(
            err.body()
                .starts_with(r#"{"errors":[{"detail":"invalid upload request"#)
        );
    }

    #[test]
    fn rejects_a_crate_file_for_another_crate() {
        for krate in [
            crate_file("other-0.1.0", &["Cargo.toml"]),
            crate_file("foo-0.1.0", &["src/lib.rs"]),
            b"not gzip".to_vec(),
        ] {
            let upload = decode_upload(&body(META, &krate)).unwrap();
            let err = upload.into_index_entry().expect_err("bad crate accepted");
            assert_eq!(err.status, 400);
            assert!(
                err.detail.starts_with("uploaded tarball is malformed"),
                "{err}"
            );
        }
    }
}
