//! The registry as a running HTTP server: the origin, the CDN in front of its index, the
//! web API, and the request log. Start one with [`Registry::builder`].

use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result};
use sha2::{Digest as _, Sha256};
use tiny_http::{Header, Method, Response};

use crate::api::{self, ApiError};
use crate::cdn::{Cdn, PurgeTiming, Route};
use crate::log::{Counters, Expectation, RequestRecord};
use crate::origin::{IndexDependency, IndexEntry, Origin, hex};

/// What the edges say about each file, for the kinds of registry found in the wild.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeaderSwitches {
    pub etag: bool,
    pub last_modified: LastModified,
}

impl Default for HeaderSwitches {
    fn default() -> Self {
        HeaderSwitches {
            etag: true,
            last_modified: LastModified::HttpDate,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LastModified {
    /// An HTTP-date at one-second resolution, as S3 sends it.
    HttpDate,
    /// No `Last-Modified` header.
    Absent,
    /// Something that is not an HTTP-date (cargo-test-support sends a `SystemTime`
    /// debug string).
    Unparseable,
    /// An HTTP-date an hour later than the response's `Date`.
    AfterDate,
}

pub struct RegistryBuilder {
    edges: usize,
    route: Route,
    purge: PurgeTiming,
    max_age: Duration,
    headers: HeaderSwitches,
    token: String,
    port: u16,
    print_requests: bool,
}

impl RegistryBuilder {
    pub fn edges(mut self, edges: usize) -> Self {
        self.edges = edges;
        self
    }

    pub fn route(mut self, route: Route) -> Self {
        self.route = route;
        self
    }

    pub fn purge(mut self, timing: PurgeTiming) -> Self {
        self.purge = timing;
        self
    }

    /// How long an edge keeps a copy without a purge (`Cache-Control: max-age`).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    pub fn headers(mut self, headers: HeaderSwitches) -> Self {
        self.headers = headers;
        self
    }

    pub fn token(mut self, token: &str) -> Self {
        self.token = token.to_string();
        self
    }

    /// The port on 127.0.0.1 (0, the default, picks a free one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Prints each request to stderr as it is answered.
    pub fn print_requests(mut self, print: bool) -> Self {
        self.print_requests = print;
        self
    }

    pub fn start(self) -> Result<Registry> {
        let server = tiny_http::Server::http(("127.0.0.1", self.port))
            .map_err(|e| anyhow::anyhow!(e))
            .with_context(|| format!("could not listen on 127.0.0.1:{}", self.port))?;
        let addr = server
            .server_addr()
            .to_ip()
            .context("the server has no IP address")?;
        let server = Arc::new(server);
        let state = Arc::new(Mutex::new(State {
            origin: Origin::default(),
            cdn: Cdn::new(self.edges, self.route, self.purge, self.max_age),
            log: Vec::new(),
            headers: self.headers,
            token: self.token,
            base_url: format!("http://{addr}"),
            max_age: self.max_age,
            print_requests: self.print_requests,
        }));
        let thread = {
            let server = server.clone();
            let state = state.clone();
            std::thread::spawn(move || serve(&server, &state))
        };
        Ok(Registry {
            addr,
            server,
            state,
            thread: Some(thread),
            expectations: Mutex::new(Vec::new()),
        })
    }
}

/// A running registry; stops when dropped, then checks the expectations.
pub struct Registry {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    state: Arc<Mutex<State>>,
    thread: Option<JoinHandle<()>>,
    expectations: Mutex<Vec<Expectation>>,
}

struct State {
    origin: Origin,
    cdn: Cdn,
    log: Vec<RequestRecord>,
    headers: HeaderSwitches,
    token: String,
    base_url: String,
    max_age: Duration,
    print_requests: bool,
}

impl Registry {
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder {
            edges: 2,
            route: Route::RoundRobin,
            // A CDN that works: every edge purged at once.
            purge: PurgeTiming::Lagged(vec![Duration::ZERO]),
            max_age: Duration::from_secs(600),
            headers: HeaderSwitches::default(),
            token: "cargo-monotonic-index-token".to_string(),
            port: 0,
            print_requests: false,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `sparse+http://127.0.0.1:PORT/index/`
    pub fn index_url(&self) -> String {
        format!("sparse+http://{}/index/", self.addr)
    }

    /// A URL for a request to the registry, for tests: `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn token(&self) -> String {
        self.state().token.clone()
    }

    /// A cargo configuration that names this registry `name`, with its token.
    pub fn cargo_config(&self, name: &str) -> String {
        format!(
            "[registries.{name}]\nindex = \"{}\"\ntoken = \"{}\"\n",
            self.index_url(),
            self.token()
        )
    }

    /// Publishes at the origin directly, as the API does: a small crate with these
    /// dependencies (`(name, requirement)`) on crates of this registry.
    pub fn publish_crate(&self, name: &str, version: &str, deps: &[(&str, &str)]) -> Result<()> {
        self.publish_crate_at(name, version, deps, SystemTime::now())
    }

    /// [`Registry::publish_crate`] as of `when`, to give the registry a history (the
    /// index file's `Last-Modified` is `when`).
    pub fn publish_crate_at(
        &self,
        name: &str,
        version: &str,
        deps: &[(&str, &str)],
        when: SystemTime,
    ) -> Result<()> {
        let crate_file = minimal_crate_file(name, version)?;
        let entry = IndexEntry {
            name: name.to_string(),
            vers: version.to_string(),
            deps: deps
                .iter()
                .map(|(dep, req)| IndexDependency {
                    name: dep.to_string(),
                    req: req.to_string(),
                    features: vec![],
                    optional: false,
                    default_features: true,
                    target: None,
                    kind: "normal".to_string(),
                    registry: None,
                    package: None,
                })
                .collect(),
            cksum: hex(&Sha256::digest(&crate_file)),
            features: Default::default(),
            features2: None,
            yanked: false,
            links: None,
            rust_version: None,
            v: None,
        };
        let mut state = self.state();
        let path = state.origin.publish(entry, crate_file, when)?;
        state.cdn.changed(&path, Instant::now());
        Ok(())
    }

    /// Makes every edge fetch `path` now (the current file, or a 404 it will remember),
    /// as the traffic of other users does. Not logged.
    pub fn warm(&self, path: &str) {
        let state = &mut *self.state();
        for edge in 0..state.cdn.edge_count() {
            state.cdn.fetch(edge, path, &state.origin, Instant::now());
        }
    }

    /// Yanks (or unyanks) at the origin directly, as the API does.
    pub fn set_yanked(&self, name: &str, version: &str, yanked: bool) -> Result<()> {
        let mut state = self.state();
        let path = state
            .origin
            .set_yanked(name, version, yanked, SystemTime::now())?;
        state.cdn.changed(&path, Instant::now());
        Ok(())
    }

    /// Delivers the pending purges to `edge` now. Returns how many there were.
    pub fn purge(&self, edge: usize) -> usize {
        self.state().cdn.purge(edge)
    }

    /// Delivers every pending purge now.
    pub fn purge_all(&self) -> usize {
        self.state().cdn.purge_all()
    }

    /// Purges not delivered yet, as (edge, index path).
    pub fn pending_purges(&self) -> Vec<(usize, String)> {
        self.state().cdn.pending_purges()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state().log.clone()
    }

    /// Every request so far, then forgets them.
    pub fn take_requests(&self) -> Vec<RequestRecord> {
        std::mem::take(&mut self.state().log)
    }

    pub fn counters(&self) -> Counters {
        Counters::of(&self.state().log)
    }

    /// Checks `expectation` against the log when the registry is dropped (or at
    /// [`Registry::verify`]).
    pub fn expect(&self, expectation: Expectation) {
        self.expectations.lock().unwrap().push(expectation);
    }

    /// Checks the expectations now.
    pub fn verify(&self) -> Result<(), String> {
        let log = self.requests();
        let failures: Vec<String> = self
            .expectations
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| e.check(&log).err())
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("\n"))
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if !std::thread::panicking()
            && let Err(failures) = self.verify()
        {
            panic!("the registry's expectations were not met:\n{failures}");
        }
    }
}

/// A poisoned lock only means a test panicked mid-request; the state is still usable.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn serve(server: &tiny_http::Server, state: &Mutex<State>) {
    while let Ok(mut request) = server.recv() {
        // Read no further than Content-Length: under `Connection: Upgrade` (curl offers
        // h2c on plain HTTP) the reader is the rest of the connection.
        let mut body = Vec::new();
        let length = request.body_length().unwrap_or(0) as u64;
        if request
            .as_reader()
            .take(length)
            .read_to_end(&mut body)
            .is_err()
        {
            continue;
        }
        let (record, response) = handle(&mut lock(state), &request, &body);
        {
            let mut state = lock(state);
            if state.print_requests {
                eprintln!("{record}");
            }
            state.log.push(record);
        }
        let _ = request.respond(response);
    }
}

type HttpResponse = Response<std::io::Cursor<Vec<u8>>>;

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("valid header")
}

fn request_header(request: &tiny_http::Request, name: &str) -> Option<String> {
    request
        .headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str().to_string())
}

fn handle(
    state: &mut State,
    request: &tiny_http::Request,
    body: &[u8],
) -> (RequestRecord, HttpResponse) {
    let method = request.method().as_str().to_string();
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let mut record = RequestRecord {
        edge: None,
        method: method.clone(),
        path: path.clone(),
        if_none_match: request_header(request, "if-none-match"),
        if_modified_since: request_header(request, "if-modified-since"),
        status: 0,
        stale: false,
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let response = match (request.method(), segments.as_slice()) {
        (Method::Get, ["index", "config.json"]) => json(
            200,
            serde_json::json!({
                "dl": format!("{}/api/v1/crates", state.base_url),
                "api": state.base_url,
            })
            .to_string(),
        ),
        (Method::Get, ["index", ..]) => {
            let index_path = path.trim_start_matches("/index/");
            let edge = state
                .cdn
                .route(Some(*request.remote_addr().unwrap_or(&unspecified())));
            let answer = state
                .cdn
                .fetch(edge, index_path, &state.origin, Instant::now());
            record.edge = Some(edge);
            record.stale = answer.stale;
            edge_response(state, index_path, answer.version, &record)
        }
        (Method::Put, ["api", "v1", "crates", "new"]) => api_result(
            authorized(state, request).and_then(|()| publish(state, body)),
            api::publish_ok_body(),
        ),
        (Method::Delete, ["api", "v1", "crates", name, version, "yank"]) => api_result(
            authorized(state, request).and_then(|()| yank(state, name, version, true)),
            r#"{"ok":true}"#.to_string(),
        ),
        (Method::Put, ["api", "v1", "crates", name, version, "unyank"]) => api_result(
            authorized(state, request).and_then(|()| yank(state, name, version, false)),
            r#"{"ok":true}"#.to_string(),
        ),
        (Method::Get, ["api", "v1", "crates", name, version, "download"]) => {
            match state.origin.crate_file(name, version) {
                Some(data) => Response::from_data(data.to_vec()).with_status_code(200),
                None => error(ApiError::not_found(format!("{name} {version} not found"))),
            }
        }
        _ => error(ApiError::not_found("not found")),
    };
    record.status = response.status_code().0;
    (record, response)
}

fn unspecified() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

/// An edge's answer: the copy it holds (or a 404), with validators, dates and
/// `Cache-Control` as an edge in front of S3 sends them, and 304 when the request's
/// validator matches (RFC 9110 13.1).
fn edge_response(
    state: &State,
    path: &str,
    version: Option<usize>,
    record: &RequestRecord,
) -> HttpResponse {
    let now = SystemTime::now();
    let date = httpdate::fmt_http_date(now);
    let cache_control = format!("public,max-age={}", state.max_age.as_secs());
    let Some(file) = version.and_then(|n| state.origin.version(path, n)) else {
        return Response::from_data(b"not found".to_vec())
            .with_status_code(404)
            .with_header(header("Date", &date))
            .with_header(header("Cache-Control", &cache_control));
    };
    let switches = state.headers;
    let etag = switches.etag.then_some(file.etag.as_str());
    let last_modified = match switches.last_modified {
        LastModified::HttpDate => Some(httpdate::fmt_http_date(file.last_modified)),
        LastModified::Absent => None,
        LastModified::Unparseable => Some(format!("{:?}", file.last_modified)),
        LastModified::AfterDate => Some(httpdate::fmt_http_date(now + Duration::from_secs(3600))),
    };
    let not_modified = match (&record.if_none_match, &record.if_modified_since) {
        // RFC 9110 13.1.3: If-Modified-Since is ignored when If-None-Match is present.
        (Some(tags), _) => etag.is_some_and(|etag| none_match_fails(tags, etag)),
        (None, Some(since)) => match (httpdate::parse_http_date(since), &last_modified) {
            (Ok(since), Some(_)) => file.last_modified <= since,
            _ => false,
        },
        (None, None) => false,
    };
    let mut response = if not_modified {
        Response::from_data(Vec::new()).with_status_code(304)
    } else {
        Response::from_data(file.body.clone()).with_status_code(200)
    };
    response = response
        .with_header(header("Date", &date))
        .with_header(header("Cache-Control", &cache_control));
    if let Some(etag) = etag {
        response = response.with_header(header("ETag", etag));
    }
    if let Some(last_modified) = &last_modified {
        response = response.with_header(header("Last-Modified", last_modified));
    }
    response
}

/// Whether `If-None-Match: tags` matches `etag` (weak comparison, RFC 9110 13.1.2),
/// so that the condition fails and the answer is 304.
fn none_match_fails(tags: &str, etag: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_string();
    tags.trim() == "*" || tags.split(',').any(|tag| opaque(tag) == opaque(etag))
}

fn authorized(state: &State, request: &tiny_http::Request) -> Result<(), ApiError> {
    match request_header(request, "authorization") {
        None => Err(ApiError::forbidden("this action requires authentication")),
        Some(token) if token == state.token => Ok(()),
        Some(_) => Err(ApiError::forbidden("authentication failed")),
    }
}

fn publish(state: &mut State, body: &[u8]) -> Result<(), ApiError> {
    let upload = api::decode_upload(body)?;
    let (entry, crate_file) = upload.into_index_entry()?;
    let path = state.origin.publish(entry, crate_file, SystemTime::now())?;
    state.cdn.changed(&path, Instant::now());
    Ok(())
}

fn yank(state: &mut State, name: &str, version: &str, yanked: bool) -> Result<(), ApiError> {
    let path = state
        .origin
        .set_yanked(name, version, yanked, SystemTime::now())?;
    state.cdn.changed(&path, Instant::now());
    Ok(())
}

fn api_result(result: Result<(), ApiError>, ok_body: String) -> HttpResponse {
    match result {
        Ok(()) => json(200, ok_body),
        Err(e) => error(e),
    }
}

fn error(e: ApiError) -> HttpResponse {
    json(e.status, e.body())
}

fn json(status: u16, body: String) -> HttpResponse {
    Response::from_data(body.into_bytes())
        .with_status_code(status)
        .with_header(header("Content-Type", "application/json"))
}

/// A `.crate` with a manifest and an empty library, for [`Registry::publish_crate`].
fn minimal_crate_file(name: &str, version: &str) -> Result<Vec<u8>> {
    let manifest =
        format!("[package]\nname = \"{name}\"\nversion = \"{version}\"\nedition = \"2021\"\n");
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (file, contents) in [("Cargo.toml", manifest.as_str()), ("src/lib.rs", "")] {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(
            &mut header,
            format!("{name}-{version}/{file}"),
            contents.as_bytes(),
        )?;
    }
    Ok(builder.into_inner()?.finish()?)
}
