//! The stale-replica CDN registry, over real HTTP: conditional requests, edges that
//! serve their old copy (or a remembered 404) until purged, routing, header switches,
//! and the publish API.

use std::collections::BTreeMap;
use std::time::Duration;

use cargo_monotonic_index::{
    Expectation, HeaderSwitches, LastModified, PurgeTiming, Registry, Route,
};
use crates_io::{NewCrate, NewCrateDependency};

/// An HTTP client that reads 4xx and 5xx answers instead of failing on them.
fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

fn get(registry: &Registry, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = client().get(registry.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    answer(request.call().unwrap())
}

fn answer(mut response: ureq::http::Response<ureq::Body>) -> Answer {
    Answer {
        status: response.status().as_u16(),
        headers: response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string()))
            .collect(),
        body: response.body_mut().read_to_string().unwrap(),
    }
}

fn versions_in(body: &str) -> Vec<String> {
    body.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            v["vers"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Two edges, each request to the next one in `edges`; purges only when told.
fn two_edges(edges: &[usize]) -> Registry {
    Registry::builder()
        .edges(2)
        .route(Route::Scripted(edges.to_vec()))
        .purge(PurgeTiming::Manual)
        .start()
        .unwrap()
}

#[test]
fn answers_like_an_edge_in_front_of_s3() {
    let registry = two_edges(&[0]);
    registry.publish_crate("bar", "0.1.0", &[]).unwrap();

    let first = get(&registry, "/index/3/b/bar", &[]);
    assert_eq!(first.status, 200);
    assert_eq!(versions_in(&first.body), ["0.1.0"]);
    let etag = first.headers["etag"].clone();
    let last_modified = first.headers["last-modified"].clone();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong ETag: {etag}"
    );
    assert!(
        last_modified.ends_with(" GMT"),
        "HTTP-date: {last_modified}"
    );
    assert!(
        httpdate::parse_http_date(&last_modified).unwrap()
            <= httpdate::parse_http_date(&first.headers["date"]).unwrap()
    );
    assert_eq!(first.headers["cache-control"], "public,max-age=600");

    // A matching If-None-Match, alone or in a list: 304 without a body.
    for tags in [
        etag.clone(),
        format!("\"other\", {etag}"),
        format!("W/{etag}"),
        "*".into(),
    ] {
        let revalidated = get(&registry, "/index/3/b/bar", &[("If-None-Match", &tags)]);
        assert_eq!(revalidated.status, 304, "If-None-Match: {tags}");
        assert_eq!(revalidated.body, "");
        assert_eq!(revalidated.headers["etag"], etag);
    }
    // If-None-Match takes precedence over If-Modified-Since (RFC 9110 13.1.3).
    let both = get(
        &registry,
        "/index/3/b/bar",
        &[
            ("If-None-Match", "\"other\""),
            ("If-Modified-Since", &last_modified),
        ],
    );
    assert_eq!(both.status, 200);
    // If-Modified-Since alone compares dates.
    let since = get(
        &registry,
        "/index/3/b/bar",
        &[("If-Modified-Since", &last_modified)],
    );
    assert_eq!(since.status, 304);
    let earlier = get(
        &registry,
        "/index/3/b/bar",
        &[("If-Modified-Since", "Mon, 02 Dec 2024 10:00:00 GMT")],
    );
    assert_eq!(earlier.status, 200);
}

#[test]
fn an_edge_serves_its_old_copy_until_purged() {
    // Edge 1 then edge 0 cache bar 0.1.0; 0.2.0 is published; edge 0 is purged, edge 1 is
    // not; then each edge answers in turn.
    let registry = two_edges(&[1, 0, 0, 1, 1]);
    registry.publish_crate("bar", "0.1.0", &[]).unwrap();
    registry.purge_all();
    let old = get(&registry, "/index/3/b/bar", &[]);
    get(&registry, "/index/3/b/bar", &[]);
    registry.publish_crate("bar", "0.2.0", &[]).unwrap();
    assert_eq!(
        registry.pending_purges(),
        [(0, "3/b/bar".to_string()), (1, "3/b/bar".to_string())]
    );
    assert_eq!(registry.purge(0), 1);

    let fresh = get(
        &registry,
        "/index/3/b/bar",
        &[("If-None-Match", &old.headers["etag"])],
    );
    assert_eq!(fresh.status, 200);
    assert_eq!(versions_in(&fresh.body), ["0.1.0", "0.2.0"]);
    // The user's failure: asked with the new ETag, the lagging edge answers 200 with the
    // old file and the old ETag.
    let stale = get(
        &registry,
        "/index/3/b/bar",
        &[("If-None-Match", &fresh.headers["etag"])],
    );
    assert_eq!(stale.status, 200);
    assert_eq!(versions_in(&stale.body), ["0.1.0"]);
    assert_eq!(stale.headers["etag"], old.headers["etag"]);
    assert!(
        httpdate::parse_http_date(&stale.headers["last-modified"]).unwrap()
            <= httpdate::parse_http_date(&fresh.headers["last-modified"]).unwrap()
    );

    assert_eq!(registry.purge(1), 1);
    let purged = get(&registry, "/index/3/b/bar", &[]);
    assert_eq!(versions_in(&purged.body), ["0.1.0", "0.2.0"]);

    let log: Vec<String> = registry.requests().iter().map(|r| r.to_string()).collect();
    let stale_flags: Vec<bool> = registry.requests().iter().map(|r| r.stale).collect();
    assert_eq!(stale_flags, [false, false, false, true, false], "{log:#?}");
    assert_eq!(registry.counters().stale, 1);
}

#[test]
fn an_edge_remembers_a_404_until_purged() {
    let registry = two_edges(&[1, 0, 1]);
    assert_eq!(get(&registry, "/index/3/n/new", &[]).status, 404);
    registry.publish_crate("new", "1.0.0", &[]).unwrap();
    registry.purge(0);
    assert_eq!(get(&registry, "/index/3/n/new", &[]).status, 200);
    let remembered = get(&registry, "/index/3/n/new", &[]);
    assert_eq!(remembered.status, 404);
    assert!(remembered.headers.contains_key("date"));
    let records = registry.requests();
    assert!(records[2].stale, "{}", records[2]);
    assert!(!records[0].stale, "a 404 before the publish is not stale");
}

#[test]
fn purges_reach_edges_in_any_order() {
    let registry = two_edges(&[0, 1, 0, 1, 0, 1]);
    registry.publish_crate("bar", "0.1.0", &[]).unwrap();
    registry.purge_all();
    get(&registry, "/index/3/b/bar", &[]);
    get(&registry, "/index/3/b/bar", &[]);
    registry.publish_crate("bar", "0.2.0", &[]).unwrap();
    // Edge 1 first: now edge 0 is the stale one.
    registry.purge(1);
    assert_eq!(
        versions_in(&get(&registry, "/index/3/b/bar", &[]).body),
        ["0.1.0"]
    );
    assert_eq!(
        versions_in(&get(&registry, "/index/3/b/bar", &[]).body),
        ["0.1.0", "0.2.0"]
    );
    // Two changes before edge 0 hears of either: it still has the first copy.
    registry.publish_crate("bar", "0.3.0", &[]).unwrap();
    registry.purge(1);
    assert_eq!(
        versions_in(&get(&registry, "/index/3/b/bar", &[]).body),
        ["0.1.0"]
    );
    assert_eq!(registry.purge(0), 2);
    assert_eq!(
        versions_in(&get(&registry, "/index/3/b/bar", &[]).body),
        ["0.1.0", "0.2.0", "0.3.0"]
    );
    assert!(registry.pending_purges().is_empty());
}

#[test]
fn copies_expire_after_max_age_without_a_purge() {
    let registry = Registry::builder()
        .edges(1)
        .purge(PurgeTiming::Manual)
        .max_age(Duration::ZERO)
        .start()
        .unwrap();
    registry.publish_crate("bar", "0.1.0", &[]).unwrap();
    get(&registry, "/index/3/b/bar", &[]);
    registry.publish_crate("bar", "0.2.0", &[]).unwrap();
    let answer = get(&registry, "/index/3/b/bar", &[]);
    assert_eq!(versions_in(&answer.body), ["0.1.0", "0.2.0"]);
    assert_eq!(answer.headers["cache-control"], "public,max-age=0");
}

#[test]
fn lagged_purges_reach_the_first_edge_at_once() {
    let registry = Registry::builder()
        .edges(2)
        .route(Route::Scripted(vec![0, 1, 0, 1]))
        .purge(PurgeTiming::Lagged(vec![
            Duration::ZERO,
            Duration::from_secs(3600),
        ]))
        .start()
        .unwrap();
    registry.publish_crate("bar", "0.1.0", &[]).unwrap();
    registry.purge_all();
    get(&registry, "/index/3/b/bar", &[]);
    get(&registry, "/index/3/b/bar", &[]);
    registry.publish_crate("bar", "0.2.0", &[]).unwrap();
    assert_eq!(registry.pending_purges(), [(1, "3/b/bar".to_string())]);
    assert_eq!(
        versions_in(&get(&registry, "/index/3/b/bar", &[]).body),
        ["0.1.0", "0.2.0"]
    );
    assert_eq!(
        versions_in(&get(&registry, "/index/3/b/bar", &[]).body),
        ["0.1.0"]
    );
}

#[test]
fn header_switches() {
    let start = |headers| {
        let registry = Registry::builder()
            .edges(1)
            .headers(headers)
            .start()
            .unwrap();
        registry.publish_crate("bar", "0.1.0", &[]).unwrap();
        let answer = get(&registry, "/index/3/b/bar", &[]);
        assert_eq!(answer.status, 200);
        answer.headers
    };
    let etag_only = start(HeaderSwitches {
        etag: true,
        last_modified: LastModified::Absent,
    });
    assert!(etag_only.contains_key("etag") && !etag_only.contains_key("last-modified"));

    let last_modified_only = start(HeaderSwitches {
        etag: false,
        last_modified: LastModified::HttpDate,
    });
    assert!(!last_modified_only.contains_key("etag"));
    assert!(httpdate::parse_http_date(&last_modified_only["last-modified"]).is_ok());

    let neither = start(HeaderSwitches {
        etag: false,
        last_modified: LastModified::Absent,
    });
    assert!(!neither.contains_key("etag") && !neither.contains_key("last-modified"));

    let unparseable = start(HeaderSwitches {
        etag: true,
        last_modified: LastModified::Unparseable,
    });
    assert!(unparseable["last-modified"].starts_with("SystemTime {"));
    assert!(httpdate::parse_http_date(&unparseable["last-modified"]).is_err());

    let after_date = start(HeaderSwitches {
        etag: true,
        last_modified: LastModified::AfterDate,
    });
    assert!(
        httpdate::parse_http_date(&after_date["last-modified"]).unwrap()
            > httpdate::parse_http_date(&after_date["date"]).unwrap()
    );
}

#[test]
fn random_routing_is_reproducible_from_its_seed() {
    let edges_seen = |seed| {
        let registry = Registry::builder()
            .edges(3)
            .route(Route::Random { seed })
            .start()
            .unwrap();
        registry.publish_crate("bar", "0.1.0", &[]).unwrap();
        for _ in 0..20 {
            get(&registry, "/index/3/b/bar", &[]);
        }
        registry
            .requests()
            .iter()
            .map(|r| r.edge.unwrap())
            .collect::<Vec<_>>()
    };
    let first = edges_seen(7);
    assert_eq!(first, edges_seen(7));
    assert_ne!(first, edges_seen(8));
    assert!((0..3).all(|edge| first.contains(&edge)), "{first:?}");
}

#[test]
fn sticky_routing_keeps_a_connection_on_its_edge() {
    let registry = Registry::builder()
        .edges(2)
        .route(Route::Sticky)
        .start()
        .unwrap();
    registry.publish_crate("bar", "0.1.0", &[]).unwrap();
    let (a, b) = (client(), client());
    for _ in 0..3 {
        a.get(registry.url("/index/3/b/bar")).call().unwrap();
        b.get(registry.url("/index/3/b/bar")).call().unwrap();
    }
    let edges: Vec<usize> = registry
        .requests()
        .iter()
        .map(|r| r.edge.unwrap())
        .collect();
    assert_eq!(edges, [0, 1, 0, 1, 0, 1]);
}

/// The body `cargo publish` sends, made with the `crates-io` crate's own types.
fn publish_body(name: &str, vers: &str, crate_file: &[u8]) -> Vec<u8> {
    let metadata = NewCrate {
        name: name.into(),
        vers: vers.into(),
        deps: vec![NewCrateDependency {
            optional: false,
            default_features: true,
            name: "dep".into(),
            features: vec![],
            version_req: "^1.0".into(),
            target: None,
            kind: "normal".into(),
            registry: None,
            explicit_name_in_toml: None,
            artifact: None,
            bindep_target: None,
            lib: false,
        }],
        features: BTreeMap::new(),
        authors: vec![],
        description: Some("test".into()),
        documentation: None,
        homepage: None,
        readme: None,
        readme_file: None,
        keywords: vec![],
        categories: vec![],
        license: Some("MIT".into()),
        license_file: None,
        repository: None,
        badges: BTreeMap::new(),
        links: None,
        rust_version: None,
    };
    let json = serde_json::to_vec(&metadata).unwrap();
    let mut body = (json.len() as u32).to_le_bytes().to_vec();
    body.extend(json);
    body.extend((crate_file.len() as u32).to_le_bytes());
    body.extend(crate_file);
    body
}

fn crate_file(root: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let manifest = b"[package]\nname = \"foo\"\nversion = \"0.1.0\"\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(manifest.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, format!("{root}/Cargo.toml"), &manifest[..])
        .unwrap();
    builder.into_inner().unwrap().finish().unwrap()
}

fn put(registry: &Registry, path: &str, token: Option<&str>, body: &[u8]) -> Answer {
    let mut request = client().put(registry.url(path));
    if let Some(token) = token {
        request = request.header("Authorization", token);
    }
    answer(request.send(body).unwrap())
}

#[test]
fn publish_writes_the_index_line_as_crates_io() {
    let registry = two_edges(&[0]);
    let token = registry.token();
    let krate = crate_file("foo-0.1.0");
    let published = put(
        &registry,
        "/api/v1/crates/new",
        Some(&token),
        &publish_body("foo", "0.1.0", &krate),
    );
    assert_eq!(published.status, 200, "{}", published.body);
    assert!(published.body.contains("\"warnings\""));

    let index = get(&registry, "/index/3/f/foo", &[]);
    let line: serde_json::Value = serde_json::from_str(index.body.trim()).unwrap();
    use sha2::Digest as _;
    let cksum: String = sha2::Sha256::digest(&krate)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(line["name"], "foo");
    assert_eq!(line["vers"], "0.1.0");
    assert_eq!(line["cksum"], cksum);
    assert_eq!(line["deps"][0]["name"], "dep");
    assert_eq!(line["deps"][0]["req"], "^1.0");
    assert_eq!(line["yanked"], false);

    let download = client()
        .get(registry.url("/api/v1/crates/foo/0.1.0/download"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_vec()
        .unwrap();
    assert_eq!(download, krate);
}

#[test]
fn bad_publishes_get_crates_io_errors_and_change_nothing() {
    let registry = two_edges(&[0]);
    let token = registry.token();
    let good = publish_body("foo", "0.1.0", &crate_file("foo-0.1.0"));
    // (what is wrong, token, body, expected status, expected message)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "no token",
            None,
            good.clone(),
            403,
            "requires authentication",
        ),
        (
            "wrong token",
            Some("nope"),
            good.clone(),
            403,
            "authentication failed",
        ),
        (
            "truncated",
            Some(&token),
            good[..good.len() - 10].to_vec(),
            400,
            "truncated",
        ),
        (
            "bad JSON",
            Some(&token),
            {
                let mut b = good.clone();
                b[4] = b'!';
                b
            },
            400,
            "invalid upload request",
        ),
        (
            "tarball of another crate",
            Some(&token),
            publish_body("foo", "0.1.0", &crate_file("bar-0.1.0")),
            400,
            "uploaded tarball is malformed",
        ),
    ];
    for (what, token, body, status, detail) in cases {
        let answer = put(&registry, "/api/v1/crates/new", token, &body);
        assert_eq!(answer.status, status, "{what}: {}", answer.body);
        let errors: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        let message = errors["errors"][0]["detail"].as_str().unwrap();
        assert!(message.contains(detail), "{what}: {message}");
        assert_eq!(get(&registry, "/index/3/f/foo", &[]).status, 404, "{what}");
        assert!(registry.pending_purges().is_empty(), "{what}");
    }

    assert_eq!(
        put(&registry, "/api/v1/crates/new", Some(&token), &good).status,
        200
    );
    let again = put(&registry, "/api/v1/crates/new", Some(&token), &good);
    assert_eq!(again.status, 400);
    assert!(again.body.contains("is already uploaded"), "{}", again.body);
}

#[test]
fn concurrent_publishes_of_one_version_have_one_winner() {
    let registry = Registry::builder().edges(1).start().unwrap();
    let token = registry.token();
    let body = publish_body("foo", "0.1.0", &crate_file("foo-0.1.0"));
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| put(&registry, "/api/v1/crates/new", Some(&token), &body).status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        7,
        "{statuses:?}"
    );
    let index = get(&registry, "/index/3/f/foo", &[]);
    assert_eq!(versions_in(&index.body), ["0.1.0"]);
}

#[test]
fn yank_and_unyank_make_new_versions_of_the_file() {
    let registry = two_edges(&[0]);
    let token = registry.token();
    registry.publish_crate("bar", "0.1.0", &[]).unwrap();
    let before = get(&registry, "/index/3/b/bar", &[]);

    let yank = client()
        .delete(registry.url("/api/v1/crates/bar/0.1.0/yank"))
        .header("Authorization", &token)
        .call()
        .unwrap();
    assert_eq!(yank.status().as_u16(), 200);
    registry.purge_all();
    let yanked = get(&registry, "/index/3/b/bar", &[]);
    assert!(yanked.body.contains(r#""yanked":true"#));
    assert_ne!(yanked.headers["etag"], before.headers["etag"]);

    assert_eq!(
        put(
            &registry,
            "/api/v1/crates/bar/0.1.0/unyank",
            Some(&token),
            b""
        )
        .status,
        200
    );
    registry.purge_all();
    assert!(
        get(&registry, "/index/3/b/bar", &[])
            .body
            .contains(r#""yanked":false"#)
    );

    let unknown = put(
        &registry,
        "/api/v1/crates/bar/9.9.9/unyank",
        Some(&token),
        b"",
    );
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("does not have a version"));
}

#[test]
fn expectations_are_checked_against_the_log() {
    let registry = two_edges(&[0]);
    registry.publish_crate("bar", "0.1.0", &[]).unwrap();
    registry.expect(Expectation::request("GET", "/index/3/b/bar").times(2));
    get(&registry, "/index/3/b/bar", &[]);
    let err = registry.verify().unwrap_err();
    assert!(
        err.contains("expected 2 of `GET /index/3/b/bar`, got 1"),
        "{err}"
    );
    assert!(err.contains("edge 0 GET /index/3/b/bar -> 200"), "{err}");
    get(&registry, "/index/3/b/bar", &[]);
    registry.verify().unwrap();
}

#[test]
fn unmet_expectations_fail_when_the_registry_is_dropped() {
    let dropped = std::panic::catch_unwind(|| {
        let registry = two_edges(&[0]);
        registry.expect(Expectation::request("GET", "/index/3/b/bar").status(200));
    });
    let message = dropped.unwrap_err();
    let message = message.downcast_ref::<String>().unwrap();
    assert!(message.contains("expectations were not met"), "{message}");
}
