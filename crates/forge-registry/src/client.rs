//! The HTTP side of the distribution API: which scheme a registry speaks, its TLS roots,
//! authentication from the `/v2/` challenge, and requests retried with backoff.
//!
//! A [`Client`] holds the configuration, the credentials file and one HTTP agent per
//! (registry, TLS policy). [`Client::endpoint`] pings `/v2/` once per registry to learn
//! the scheme and the authentication it wants; [`Client::session`] opens a [`Session`]
//! on one repository with the token (or basic credentials) for the actions needed, and
//! [`Session::send`] runs requests, retrying 5xx answers and broken connections and
//! re-authenticating once on a 401 (an expired token).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use ureq::http::{self, Response};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::{Agent, Body};

use crate::config::{
    is_loopback, CredentialStore, Credentials, RegistryConfig, DOCKER_HUB_REGISTRY,
};
use crate::error::RegistryError;

/// The system's CA bundle (Debian's `ca-certificates`; other distributions' paths after).
const SYSTEM_CA_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Every manifest type forge reads, for `Accept`.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// How hard to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries per request (the first included).
    pub attempts: u32,
    /// The first pause; each next one doubles.
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            backoff: Duration::from_millis(250),
        }
    }
}

impl RetryPolicy {
    /// The pause before try `attempt` (1-based; the first retry is attempt 2).
    pub fn pause(&self, attempt: u32) -> Duration {
        self.backoff * 2u32.saturating_pow(attempt.saturating_sub(2))
    }
}

/// What a registry's `/v2/` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Nothing: anonymous access.
    None,
    /// `Basic realm=…`: user and password on every request.
    Basic,
    /// `Bearer realm=…,service=…`: a token from `realm` per scope.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The `service` parameter.
        service: Option<String>,
    },
}

/// A registry as reached: scheme, host, TLS policy and its challenge.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `scheme://host[:port]`.
    pub base: String,
    /// `host[:port]` (the credentials key).
    pub host: String,
    /// Whether TLS certificates go unverified (an insecure-declared registry).
    pub skip_verify: bool,
    /// What `/v2/` answered.
    pub challenge: Challenge,
}

/// The body of a request.
pub enum Payload<'a> {
    /// None.
    Empty,
    /// Bytes in memory (manifests).
    Bytes(&'a [u8]),
    /// `len` bytes of a file from `offset` (blobs), counted into `progress` as sent.
    File {
        /// The file.
        path: &'a Path,
        /// Where to start.
        offset: u64,
        /// How many bytes.
        len: u64,
        /// Called with each count of bytes sent.
        progress: &'a (dyn Fn(u64) + Sync),
    },
}

/// Registry access for one command: configuration, credentials, agents and endpoints.
pub struct Client {
    config: RegistryConfig,
    credentials: CredentialStore,
    retry: RetryPolicy,
    agents: Mutex<HashMap<(String, bool), Agent>>,
    endpoints: Mutex<HashMap<String, Endpoint>>,
}

impl Client {
    /// A client with `config` and the credentials in `credentials`.
    pub fn new(config: RegistryConfig, credentials: CredentialStore) -> Client {
        Client {
            config,
            credentials,
            retry: RetryPolicy::default(),
            agents: Mutex::new(HashMap::new()),
            endpoints: Mutex::new(HashMap::new()),
        }
    }

    /// The same with another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Client {
        self.retry = retry;
        self
    }

    /// The configuration in force.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The credentials file.
    pub fn credentials(&self) -> &CredentialStore {
        &self.credentials
    }

    /// The retry policy.
    pub fn retry(&self) -> RetryPolicy {
        self.retry
    }

    /// The API host of a reference's domain (`docker.io` is served by
    /// `registry-1.docker.io`).
    pub fn api_host(domain: &str) -> &str {
        if domain == "docker.io" || domain == "index.docker.io" {
            DOCKER_HUB_REGISTRY
        } else {
            domain
        }
    }

    /// The endpoint of `host` (a reference's domain), pinged once per client: HTTPS, or
    /// plain HTTP for insecure-declared and loopback registries when HTTPS gets no TLS
    /// answer. A TLS certificate that does not verify is an error (not a fallback), so a
    /// missing CA shows as such.
    pub fn endpoint(&self, domain: &str) -> Result<Endpoint, RegistryError> {
        let host = Client::api_host(domain).to_string();
        if let Some(e) = lock(&self.endpoints).get(&host) {
            return Ok(e.clone());
        }
        let declared = self.config.is_declared_insecure(&host);
        let may_use_http = declared || is_loopback(&host);
        // Where plain HTTP is an option, one try tells whether TLS is spoken at all;
        // retrying a plain-HTTP server's non-TLS answer would only add seconds.
        let https_tries = if may_use_http { 1 } else { self.retry.attempts };
        let https = self.ping(&format!("https://{host}"), &host, declared, https_tries);
        let endpoint = match https {
            Ok(e) => e,
            Err(e @ RegistryError::Certificate { .. }) if !declared => return Err(e),
            Err(https) if may_use_http => {
                match self.ping(&format!("http://{host}"), &host, true, self.retry.attempts) {
                    Ok(e) => e,
                    Err(http) => {
                        return Err(RegistryError::Unreachable {
                            host,
                            https: Box::new(https),
                            http: Box::new(http),
                        })
                    }
                }
            }
            Err(e) => return Err(e),
        };
        lock(&self.endpoints).insert(host, endpoint.clone());
        Ok(endpoint)
    }

    /// The endpoint of a mirror given as a base URL (`http://host:port`).
    pub fn mirror_endpoint(&self, base: &str) -> Result<Endpoint, RegistryError> {
        if let Some(e) = lock(&self.endpoints).get(base) {
            return Ok(e.clone());
        }
        let host = base.split_once("://").map_or(base, |(_, h)| h).to_string();
        let skip_verify = self.config.is_declared_insecure(&host);
        let endpoint = self.ping(base, &host, skip_verify, self.retry.attempts)?;
        lock(&self.endpoints).insert(base.to_string(), endpoint.clone());
        Ok(endpoint)
    }

    fn ping(
        &self,
        base: &str,
        host: &str,
        skip_verify: bool,
        tries: u32,
    ) -> Result<Endpoint, RegistryError> {
        let url = format!("{base}/v2/");
        let agent = self.agent(host, skip_verify)?;
        let response =
            self.call_retrying(tries, &agent, host, "GET", &url, &[], &Payload::Empty)?;
        let challenge = match response.status().as_u16() {
            200..=299 => Challenge::None,
            401 => parse_challenge(header(&response, "www-authenticate").unwrap_or_default()),
            status => {
                return Err(RegistryError::Status {
                    method: "GET",
                    url,
                    status,
                    message: error_message(response),
                })
            }
        };
        Ok(Endpoint {
            base: base.to_string(),
            host: host.to_string(),
            skip_verify,
            challenge,
        })
    }

    /// The HTTP agent for `host`: the system roots plus the host's CA files from every
    /// certs.d directory, or no verification for insecure-declared registries.
    fn agent(&self, host: &str, skip_verify: bool) -> Result<Agent, RegistryError> {
        let key = (host.to_string(), skip_verify);
        if let Some(a) = lock(&self.agents).get(&key) {
            return Ok(a.clone());
        }
        let tls = if skip_verify {
            TlsConfig::builder().disable_verification(true).build()
        } else {
            let mut certs = Vec::new();
            if let Some(bundle) = SYSTEM_CA_BUNDLES
                .iter()
                .map(Path::new)
                .find(|p| p.is_file())
            {
                certs.extend(read_certs(bundle)?);
            }
            for dir in &self.config.certs_dirs {
                certs.extend(host_ca_files(&dir.join(host))?);
            }
            let roots = if certs.is_empty() {
                RootCerts::WebPki
            } else {
                RootCerts::new_with_certs(&certs)
            };
            TlsConfig::builder().root_certs(roots).build()
        };
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls)
            .user_agent(concat!("forge/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .max_idle_connections_per_host(16)
            .build()
            .into();
        lock(&self.agents).insert(key, agent.clone());
        Ok(agent)
    }

    /// One request with retries on broken connections and 5xx/429 answers. The last 5xx
    /// answer is returned as it is for the caller to report.
    #[allow(clippy::too_many_arguments)]
    fn call_retrying(
        &self,
        tries: u32,
        agent: &Agent,
        host: &str,
        method: &'static str,
        url: &str,
        headers: &[(&str, String)],
        payload: &Payload<'_>,
    ) -> Result<Response<Body>, RegistryError> {
        let mut attempt = 1;
        loop {
            match call(agent, method, url, headers, payload) {
                Ok(r) if retryable_status(r.status().as_u16()) && attempt < self.retry.attempts => {
                }
                Ok(r) => return Ok(r),
                Err(e) if attempt < tries && retryable_error(&e) => {}
                Err(e) => return Err(self.transport_error(method, url, host, e)),
            }
            attempt += 1;
            std::thread::sleep(self.retry.pause(attempt));
        }
    }

    fn transport_error(
        &self,
        method: &'static str,
        url: &str,
        host: &str,
        e: ureq::Error,
    ) -> RegistryError {
        if is_certificate_error(&e) {
            let hint = self
                .config
                .certs_dirs
                .last()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|| "/etc/docker/certs.d".into());
            return RegistryError::Certificate {
                url: url.to_string(),
                host: host.to_string(),
                hint,
                source: Box::new(e),
            };
        }
        RegistryError::Transport {
            method,
            url: url.to_string(),
            source: Box::new(e),
        }
    }

    /// A session on `repository` at `endpoint`, authenticated for `actions` (`pull`,
    /// `pull,push`) there and `pull` on each of `also_pull` (cross-repository mounts).
    pub fn session(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        actions: &str,
        also_pull: &[String],
    ) -> Result<Session<'_>, RegistryError> {
        let mut scopes = vec![format!("repository:{repository}:{actions}")];
        scopes.extend(also_pull.iter().map(|r| format!("repository:{r}:pull")));
        self.session_scoped(endpoint, repository, scopes)
    }

    /// A session for the registry's `_catalog` (scope `registry:catalog:*`).
    pub fn catalog_session(&self, endpoint: &Endpoint) -> Result<Session<'_>, RegistryError> {
        self.session_scoped(endpoint, "", vec!["registry:catalog:*".to_string()])
    }

    fn session_scoped(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        scopes: Vec<String>,
    ) -> Result<Session<'_>, RegistryError> {
        let creds = self.credentials.get(&endpoint.host)?;
        let agent = self.agent(&endpoint.host, endpoint.skip_verify)?;
        let session = Session {
            client: self,
            agent,
            endpoint: endpoint.clone(),
            repository: repository.to_string(),
            scopes,
            creds,
            authorization: Mutex::new(None),
        };
        session.authenticate(&endpoint.challenge)?;
        Ok(session)
    }

    /// Checks `creds` against the registry of `domain` (`forge login`): the `/v2/`
    /// endpoint must accept them.
    pub fn verify_login(&self, domain: &str, creds: &Credentials) -> Result<(), RegistryError> {
        let endpoint = self.endpoint(domain)?;
        let agent = self.agent(&endpoint.host, endpoint.skip_verify)?;
        let session = Session {
            client: self,
            agent,
            endpoint: endpoint.clone(),
            repository: String::new(),
            scopes: Vec::new(),
            creds: Some(creds.clone()),
            authorization: Mutex::new(None),
        };
        session.authenticate(&endpoint.challenge)?;
        let url = format!("{}/v2/", endpoint.base);
        let response = session.send("GET", &url, &[], &Payload::Empty)?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            status => Err(status_error("GET", url, status, response)),
        }
    }
}

/// An authenticated view of one repository on one endpoint.
pub struct Session<'c> {
    client: &'c Client,
    agent: Agent,
    endpoint: Endpoint,
    repository: String,
    scopes: Vec<String>,
    creds: Option<Credentials>,
    authorization: Mutex<Option<String>>,
}

impl Session<'_> {
    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The repository path.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The retry policy of the client.
    pub fn retry(&self) -> RetryPolicy {
        self.client.retry
    }

    /// `base/v2/<repository>/<rest>`.
    pub fn url(&self, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", self.endpoint.base, self.repository)
    }

    /// An absolute URL for a `Location` header (which may be relative).
    pub fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else if location.starts_with('/') {
            format!("{}{location}", self.endpoint.base)
        } else {
            format!("{}/{location}", self.endpoint.base)
        }
    }

    fn authenticate(&self, challenge: &Challenge) -> Result<(), RegistryError> {
        let value = match challenge {
            Challenge::None => None,
            Challenge::Basic => self.creds.as_ref().map(basic),
            Challenge::Bearer { realm, service } => {
                Some(format!("Bearer {}", self.token(realm, service.as_deref())?))
            }
        };
        *lock(&self.authorization) = value;
        Ok(())
    }

    fn token(&self, realm: &str, service: Option<&str>) -> Result<String, RegistryError> {
        let mut url = realm.to_string();
        let mut sep = if realm.contains('?') { '&' } else { '?' };
        let mut push = |k: &str, v: &str| {
            url.push(sep);
            url.push_str(k);
            url.push('=');
            url.push_str(&percent_encode(v));
            sep = '&';
        };
        if let Some(s) = service {
            push("service", s);
        }
        for s in &self.scopes {
            push("scope", s);
        }
        if let Some(c) = &self.creds {
            push("account", &c.username);
        }
        let token_host = url
            .split_once("://")
            .map_or("", |(_, r)| r.split('/').next().unwrap_or(""));
        let skip = self.client.config.is_declared_insecure(token_host);
        let agent = self.client.agent(token_host, skip)?;
        let headers: Vec<(&str, String)> = self
            .creds
            .as_ref()
            .map(|c| vec![("Authorization", basic(c))])
            .unwrap_or_default();
        let response = self.client.call_retrying(
            self.client.retry.attempts,
            &agent,
            token_host,
            "GET",
            &url,
            &headers,
            &Payload::Empty,
        )?;
        match response.status().as_u16() {
            200 => {}
            status => return Err(status_error("GET", realm.to_string(), status, response)),
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let bytes = read_small(response, &url)?;
        let answer: TokenAnswer =
            serde_json::from_slice(&bytes).map_err(|source| RegistryError::Decode {
                url: realm.to_string(),
                what: "token answer",
                source,
            })?;
        answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Token {
                realm: realm.to_string(),
                reason: "no token in the answer".into(),
            })
    }

    /// Runs a request with the session's authorization; retries broken connections and
    /// 5xx answers; on a 401 re-authenticates from its challenge once and retries.
    pub fn send(
        &self,
        method: &'static str,
        url: &str,
        headers: &[(&str, String)],
        payload: &Payload<'_>,
    ) -> Result<Response<Body>, RegistryError> {
        let mut reauthenticated = false;
        loop {
            let mut all: Vec<(&str, String)> = headers.to_vec();
            if let Some(a) = lock(&self.authorization).clone() {
                all.push(("Authorization", a));
            }
            let response = self.client.call_retrying(
                self.client.retry.attempts,
                &self.agent,
                &self.endpoint.host,
                method,
                url,
                &all,
                payload,
            )?;
            if response.status().as_u16() != 401 || reauthenticated {
                return Ok(response);
            }
            let challenge =
                parse_challenge(header(&response, "www-authenticate").unwrap_or_default());
            let had = lock(&self.authorization).clone();
            self.authenticate(&challenge)?;
            if *lock(&self.authorization) == had && !matches!(challenge, Challenge::Bearer { .. }) {
                return Ok(response);
            }
            reauthenticated = true;
        }
    }
}

fn call(
    agent: &Agent,
    method: &'static str,
    url: &str,
    headers: &[(&str, String)],
    payload: &Payload<'_>,
) -> Result<Response<Body>, ureq::Error> {
    let mut builder = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, v.as_str());
    }
    match payload {
        Payload::Empty => {
            let builder = if matches!(method, "POST" | "PUT" | "PATCH") {
                builder.header("Content-Length", "0")
            } else {
                builder
            };
            agent.run(builder.body(())?)
        }
        Payload::Bytes(b) => {
            let builder = builder.header("Content-Length", b.len().to_string());
            agent.run(builder.body(*b)?)
        }
        Payload::File {
            path,
            offset,
            len,
            progress,
        } => {
            let mut f = File::open(path)?;
            f.seek(SeekFrom::Start(*offset))?;
            let mut reader = Counting {
                inner: f.take(*len),
                progress: *progress,
            };
            let builder = builder.header("Content-Length", len.to_string());
            agent.run(builder.body(ureq::SendBody::from_reader(&mut reader))?)
        }
    }
}

struct Counting<'a, R> {
    inner: R,
    progress: &'a (dyn Fn(u64) + Sync),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}

fn retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

fn retryable_error(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::Timeout(_)
            | ureq::Error::Protocol(_)
            | ureq::Error::HostNotFound
    ) && !is_certificate_error(e)
}

fn is_certificate_error(e: &ureq::Error) -> bool {
    let invalid = |r: &rustls::Error| matches!(r, rustls::Error::InvalidCertificate(_));
    match e {
        ureq::Error::Rustls(r) => invalid(r),
        ureq::Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .is_some_and(invalid),
        _ => false,
    }
}

/// A header's value as text.
pub fn header<'r>(response: &'r Response<Body>, name: &str) -> Option<&'r str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Reads a (small) answer to its end, at most 16 MiB.
pub fn read_small(response: Response<Body>, url: &str) -> Result<Vec<u8>, RegistryError> {
    response
        .into_body()
        .into_with_config()
        .limit(forge_store::MAX_DOCUMENT_SIZE)
        .read_to_vec()
        .map_err(|e| RegistryError::Body {
            url: url.to_string(),
            source: e.into_io(),
        })
}

/// The error for an unexpected answer: `Unauthorized` for 401 and 403, else `Status`,
/// with the registry's message.
pub fn status_error(
    method: &'static str,
    url: String,
    status: u16,
    response: Response<Body>,
) -> RegistryError {
    let message = error_message(response);
    if matches!(status, 401 | 403) {
        RegistryError::Unauthorized {
            method,
            url,
            message,
        }
    } else {
        RegistryError::Status {
            method,
            url,
            status,
            message,
        }
    }
}

/// The message of a registry error answer: its `errors[].message` (the distribution
/// spec's error JSON), else the status text.
pub fn error_message(response: Response<Body>) -> String {
    let status = response.status();
    let body = response
        .into_body()
        .into_with_config()
        .limit(64 * 1024)
        .read_to_vec()
        .unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(&body) {
        let parts: Vec<String> = e
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code.to_lowercase(), e.message),
                (true, false) => e.message.clone(),
                _ => e.code.to_lowercase(),
            })
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    status
        .canonical_reason()
        .unwrap_or("unexpected answer")
        .to_string()
}

/// Parses `WWW-Authenticate`.
pub fn parse_challenge(value: &str) -> Challenge {
    let value = value.trim();
    let (scheme, params) = value.split_once(' ').unwrap_or((value, ""));
    let params = parse_params(params);
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => match params.get("realm") {
            Some(realm) => Challenge::Bearer {
                realm: realm.clone(),
                service: params.get("service").cloned(),
            },
            None => Challenge::None,
        },
        "basic" => Challenge::Basic,
        _ => Challenge::None,
    }
}

/// `k="v",k2=v2` (quoted values may hold commas).
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &q[end.min(q.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.insert(key, value);
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

fn basic(c: &Credentials) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password))
    )
}

/// Query-string encoding of a value (RFC 3986 unreserved kept).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn read_certs(path: &Path) -> Result<Vec<Certificate<'static>>, RegistryError> {
    let bytes = std::fs::read(path).map_err(|e| RegistryError::CaFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&bytes) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(RegistryError::CaFile {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })
            }
        }
    }
    Ok(certs)
}

/// docker's layout: every `*.crt` in `<certs.d>/<host:port>/` is a CA.
fn host_ca_files(dir: &Path) -> Result<Vec<Certificate<'static>>, RegistryError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    files.sort();
    let mut certs = Vec::new();
    for f in files {
        let found = read_certs(&f)?;
        if found.is_empty() {
            return Err(RegistryError::CaFile {
                path: f,
                reason: "no PEM certificate in it".into(),
            });
        }
        certs.extend(found);
    }
    Ok(certs)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="reg,x",scope="repository:a:pull""#
            ),
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("reg,x".into())
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Challenge::Basic
        );
        assert_eq!(parse_challenge(""), Challenge::None);
    }

    #[test]
    fn encoding() {
        assert_eq!(
            percent_encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
