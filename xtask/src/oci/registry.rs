//! The registry client: the distribution API over the one HTTP client, with
//! what a hostile or flaky registry calls for.
//!
//! - Plain HTTP for loopback registries only.
//! - Credentials scoped by host and role ([`super::auth`]); a token realm gets
//!   the registry's own credentials only where it is that registry's realm,
//!   never what was configured for the realm's host; tokens are cached per
//!   scope, for at most an hour whatever the realm says.
//! - Every body read from a registry is bounded (manifests 4 MiB, tokens and
//!   error bodies 64 KiB); blob bodies are bounded by their descriptor.
//! - Every wait is bounded ([`crate::http::timeouts`]): small requests as a
//!   whole, blob transfers by their headers and by an idle limit on the bytes
//!   moving either way; a stall is tried again like a dropped connection, and
//!   all the tries of one blob share a deadline that grows with its size.
//! - Uploads are sessions: the bytes go in a PATCH, the commit (PUT with the
//!   digest) only once the stream proved them, and a failed session is deleted.
//! - Throttling, server errors and dropped connections are tried again with
//!   backoff; a refusal by our own checks never is.
//!
//! oci-client 0.18 did this work before; it sends stored credentials to any
//! token realm, asks `/v2/` before every request to registries that need no
//! credentials, reads manifests unbounded and cannot cancel an upload, so the
//! few requests we need are made here.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use reqwest::{header, RequestBuilder, Response, StatusCode};

use super::auth::{Challenge, CredentialSource, Credentials, Role};
use super::manifest::{check_digest, check_media_type, MANIFEST_TYPES};
use super::reference::ImageRef;
use super::transfer::BlobError;

/// Manifests larger than this are refused (containers/image's own limit).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// Tokens and error bodies larger than this are refused.
const MAX_SMALL_BODY: usize = 64 << 10;
/// How often a transient failure is tried, and the first pause.
pub const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// A blob moves at least this fast, or its tries run out of time (64 KiB/s:
/// a 1 GiB layer may take 4.5 hours per try).
const MIN_BYTES_PER_SECOND: u64 = 64 << 10;
/// A realm's token is kept at most this long, whatever it says.
const MAX_TOKEN_LIFETIME: u64 = 3600;

/// Registries reached over plain HTTP: loopback only.
pub fn is_loopback(registry: &str) -> bool {
    crate::http::is_loopback_host(registry)
}

/// A failure worth another try (throttling, a server error, a dropped
/// connection), as opposed to an answer.
#[derive(Debug)]
pub struct Transient(pub String);

impl std::fmt::Display for Transient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Transient {}

/// Whether another try may help: a [`Transient`] answer, or a connection that
/// failed for reasons other than our own refusal of the bytes.
pub fn is_transient(error: &anyhow::Error) -> bool {
    if error.chain().any(|cause| cause.is::<Transient>()) {
        return true;
    }
    if error.chain().any(|cause| cause.is::<BlobError>()) {
        // Our stream ended the request: a refusal is final, a source that
        // failed to read is worth another try.
        return error
            .chain()
            .any(|cause| matches!(cause.downcast_ref::<BlobError>(), Some(BlobError::Read(_))));
    }
    error.chain().any(|cause| {
        cause
            .downcast_ref::<reqwest::Error>()
            .is_some_and(|e| e.is_connect() || e.is_timeout() || e.is_request() || e.is_body())
    })
}

/// [`retrying`], all tries together bounded by `deadline`.
pub async fn retrying_within<T, F, Fut>(what: &str, deadline: Duration, attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    match tokio::time::timeout(deadline, retrying(what, attempt)).await {
        Ok(result) => result,
        Err(_) => bail!("{what}: stalled: its tries took longer than {deadline:?}, the limit"),
    }
}

/// Run `attempt` up to [`ATTEMPTS`] times, backing off 0.2 s, 0.4 s, … while
/// it fails transiently; the last error is returned as it is.
pub async fn retrying<T, F, Fut>(what: &str, attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    retrying_paced(what, FIRST_BACKOFF, attempt).await
}

/// [`retrying`], pausing `first` after the first failure (tests pause less).
async fn retrying_paced<T, F, Fut>(what: &str, first: Duration, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut delay = first;
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(error) if tries < ATTEMPTS && is_transient(&error) => {
                anstream::eprintln!("  {what}: {error:#}; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other.with_context(|| what.to_string()),
        }
    }
}

/// A client for one registry host, in one role.
pub struct Registry {
    pub host: String,
    base: reqwest::Url,
    credentials: Option<Credentials>,
    challenge: Challenge,
    realm_credentials: Option<Credentials>,
    /// Bearer tokens by scope, with when they stop being good.
    tokens: Mutex<BTreeMap<String, (String, Instant)>>,
    /// How long each request may wait.
    pub timeouts: crate::http::Timeouts,
}

fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

fn push_scope(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

impl Registry {
    /// Ask `/v2/` what the registry at `host` wants, and keep the credentials
    /// that may go to it and to its token realm.
    pub async fn connect(host: &str, role: Role, source: &CredentialSource) -> Result<Registry> {
        crate::http::init_tls();
        let timeouts = crate::http::timeouts()?;
        let scheme = if is_loopback(host) { "http" } else { "https" };
        let base = reqwest::Url::parse(&format!("{scheme}://{host}/"))
            .with_context(|| format!("`{host}` is not a registry host"))?;
        let credentials = source.for_host(host, role)?;
        let url = base.join("v2/")?;
        let response = retrying(&format!("GET {url}"), || async {
            let response = crate::http::client()?
                .get(url.clone())
                .timeout(timeouts.request)
                .send()
                .await?;
            transient_status(response).await
        })
        .await?;
        let challenge = match response.status() {
            StatusCode::OK => Challenge::None,
            StatusCode::UNAUTHORIZED => {
                let header = response
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .context("a 401 from /v2/ without WWW-Authenticate")?;
                super::auth::parse_challenge(header)
                    .with_context(|| format!("GET {url}: WWW-Authenticate"))?
            }
            status => {
                bail!("GET {url} answered HTTP {status}: not a registry (distribution API v2)")
            }
        };
        // The registry chose the realm: it gets this registry's own
        // credentials, and only where it is this registry's realm.
        let realm_credentials = match &challenge {
            Challenge::Bearer { realm, .. } => {
                super::auth::for_realm(host, credentials.as_ref(), realm)
            }
            _ => None,
        };
        Ok(Registry {
            host: host.to_string(),
            base,
            credentials,
            challenge,
            realm_credentials,
            tokens: Mutex::new(BTreeMap::new()),
            timeouts,
        })
    }

    /// A client for the registry of `reference`, with credentials from this
    /// process's environment and docker config.
    pub async fn connect_to(reference: &ImageRef, role: Role) -> Result<Registry> {
        Registry::connect(
            reference.api_host(),
            role,
            &CredentialSource::from_environment(),
        )
        .await
    }

    /// What a child program (cosign) may use to reach this registry for
    /// `repository`: a bearer token minted here, under our realm rules, when
    /// the registry asks for tokens (the child never sees a password, and
    /// never asks a realm itself); this registry's own credentials when it
    /// asks for basic auth; nothing otherwise.
    pub async fn child_auth(&self, repository: &str, push: bool) -> Result<ChildAuth> {
        let scope = if push {
            push_scope(repository)
        } else {
            pull_scope(repository)
        };
        Ok(match &self.challenge {
            Challenge::None => ChildAuth::None,
            Challenge::Basic => match &self.credentials {
                Some(credentials) => ChildAuth::Basic(credentials.clone()),
                None => ChildAuth::None,
            },
            Challenge::Bearer { .. } => match self.token(&[scope]).await? {
                Some(token) => ChildAuth::Token(token),
                None => ChildAuth::None,
            },
        })
    }

    fn url(&self, path: &str) -> Result<reqwest::Url> {
        Ok(self.base.join(path)?)
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (String, Instant)>> {
        self.tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A bearer token for `scopes`, from the cache or the realm.
    async fn token(&self, scopes: &[String]) -> Result<Option<String>> {
        let Challenge::Bearer { realm, service } = &self.challenge else {
            return Ok(None);
        };
        let key = scopes.join(" ");
        if let Some((token, until)) = self.lock_tokens().get(&key) {
            if Instant::now() < *until {
                return Ok(Some(token.clone()));
            }
        }
        let mut url = realm.clone();
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            for scope in scopes {
                query.append_pair("scope", scope);
            }
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let what = format!("GET token at {}", realm);
        let answer = retrying(&what, || async {
            let mut request = crate::http::client()?
                .get(url.clone())
                .timeout(self.timeouts.request);
            if let Some(credentials) = &self.realm_credentials {
                request = request.basic_auth(&credentials.username, Some(&credentials.password));
            }
            let response = transient_status(request.send().await?).await?;
            let status = response.status();
            let body = read_bounded(response, MAX_SMALL_BODY).await?;
            if !status.is_success() {
                bail!("HTTP {status}: {}", snippet(&body));
            }
            Ok(body)
        })
        .await?;
        let answer: TokenAnswer =
            serde_json::from_slice(&answer).with_context(|| format!("{what}: not a token"))?;
        let token = answer
            .token
            .or(answer.access_token)
            .with_context(|| format!("{what}: the answer holds no token"))?;
        let now = Instant::now();
        let until = now
            .checked_add(token_lifetime(answer.expires_in))
            .unwrap_or(now);
        self.lock_tokens().insert(key, (token.clone(), until));
        Ok(Some(token))
    }

    async fn authorize(
        &self,
        request: RequestBuilder,
        scopes: &[String],
    ) -> Result<RequestBuilder> {
        Ok(match &self.challenge {
            Challenge::None => request,
            Challenge::Basic => match &self.credentials {
                Some(c) => request.basic_auth(&c.username, Some(&c.password)),
                None => request,
            },
            Challenge::Bearer { .. } => match self.token(scopes).await? {
                Some(token) => request.bearer_auth(token),
                None => request,
            },
        })
    }

    /// One request without a streamed body: authorised, tried again when it
    /// fails transiently, re-authorised once when a token was refused.
    async fn send(
        &self,
        what: &str,
        scopes: &[String],
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response> {
        retrying(what, || async {
            let mut refreshed = false;
            loop {
                let request = build(crate::http::client()?).timeout(self.timeouts.request);
                let response = self.authorize(request, scopes).await?.send().await?;
                if response.status() == StatusCode::UNAUTHORIZED
                    && !refreshed
                    && matches!(self.challenge, Challenge::Bearer { .. })
                {
                    self.lock_tokens().remove(&scopes.join(" "));
                    refreshed = true;
                    continue;
                }
                return transient_status(response).await;
            }
        })
        .await
    }

    fn manifest_url(&self, reference: &ImageRef) -> Result<reqwest::Url> {
        self.url(&format!(
            "v2/{}/manifests/{}",
            reference.api_repository(),
            reference.api_pin()
        ))
    }

    /// The digest a reference resolves to, or `None` when the registry has no such manifest.
    pub async fn manifest_digest(&self, reference: &ImageRef) -> Result<Option<String>> {
        let url = self.manifest_url(reference)?;
        let scopes = [pull_scope(&reference.api_repository())];
        let response = self
            .send(&format!("HEAD {url}"), &scopes, |http| {
                http.head(url.clone())
                    .header(header::ACCEPT, MANIFEST_TYPES.join(", "))
            })
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            status if !status.is_success() => bail!("HEAD {url}: HTTP {status}"),
            _ => {}
        }
        let header = response
            .headers()
            .get("docker-content-digest")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        match header {
            Some(digest) => {
                check_digest(&digest)
                    .with_context(|| format!("HEAD {url}: Docker-Content-Digest"))?;
                Ok(Some(digest))
            }
            // No digest header: the digest of what a GET serves.
            None => {
                let bytes = self.pull_manifest(reference).await?;
                Ok(Some(format!("sha256:{}", crate::hash::hex_sha256(&bytes))))
            }
        }
    }

    /// The manifest's bytes as served (callers check them against a digest).
    pub async fn pull_manifest(&self, reference: &ImageRef) -> Result<Bytes> {
        let url = self.manifest_url(reference)?;
        let scopes = [pull_scope(&reference.api_repository())];
        let response = self
            .send(&format!("GET {url}"), &scopes, |http| {
                http.get(url.clone())
                    .header(header::ACCEPT, MANIFEST_TYPES.join(", "))
            })
            .await?;
        let response = expect(response, &[StatusCode::OK], &format!("GET {url}")).await?;
        read_bounded(response, MAX_MANIFEST_BYTES).await
    }

    /// Put manifest bytes unchanged under `reference` (a tag or their digest).
    pub async fn push_manifest(
        &self,
        reference: &ImageRef,
        bytes: &Bytes,
        media_type: &str,
    ) -> Result<()> {
        check_media_type(media_type)?;
        let url = self.manifest_url(reference)?;
        let scopes = [push_scope(&reference.api_repository())];
        let response = self
            .send(&format!("PUT {url}"), &scopes, |http| {
                http.put(url.clone())
                    .header(header::CONTENT_TYPE, media_type)
                    .body(bytes.clone())
            })
            .await?;
        expect(
            response,
            &[StatusCode::CREATED, StatusCode::OK],
            &format!("PUT {url}"),
        )
        .await?;
        Ok(())
    }

    pub async fn blob_exists(&self, repository: &str, digest: &str) -> Result<bool> {
        check_digest(digest)?;
        let url = self.url(&format!("v2/{repository}/blobs/{digest}"))?;
        let response = self
            .send(&format!("HEAD {url}"), &[pull_scope(repository)], |http| {
                http.head(url.clone())
            })
            .await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            status => bail!("HEAD {url}: HTTP {status}"),
        }
    }

    /// A blob's bytes as they arrive (unchecked: see [`super::transfer::checked`]).
    pub async fn pull_blob(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + Unpin + 'static> {
        check_digest(digest)?;
        let url = self.url(&format!("v2/{repository}/blobs/{digest}"))?;
        let what = format!("GET {url}");
        let request = crate::http::client()?.get(url.clone());
        // Blob GETs may be redirected to storage elsewhere: the HTTP client
        // drops the Authorization header when a redirect leaves this host.
        let request = self.authorize(request, &[pull_scope(repository)]).await?;
        // The body may take long, so no whole-request timeout: the headers
        // get one, the body an idle limit.
        let headers = async {
            let response = transient_status(request.send().await?).await?;
            expect(response, &[StatusCode::OK], &what).await
        };
        let request_timeout = self.timeouts.request;
        let response = tokio::time::timeout(request_timeout, headers)
            .await
            .unwrap_or_else(|_| {
                Err(Transient(format!(
                    "{what}: stalled: no answer within {request_timeout:?}"
                ))
                .into())
            })?;
        Ok(idle_bounded(
            response.bytes_stream().map_err(std::io::Error::other),
            self.timeouts.idle,
            what,
        ))
    }

    /// How long all the tries of moving a blob of `size` bytes may take
    /// together: per try, the request timeout, the idle limit and the bytes
    /// at [`MIN_BYTES_PER_SECOND`], plus the pauses between tries.
    pub fn transfer_deadline(&self, size: u64) -> Duration {
        let per_try = self.timeouts.request
            + self.timeouts.idle
            + Duration::from_secs(size / MIN_BYTES_PER_SECOND);
        let pauses = FIRST_BACKOFF * (2u32.pow(ATTEMPTS - 1) - 1);
        per_try.saturating_mul(ATTEMPTS) + pauses
    }

    /// Upload one blob from `body` (whose stream proves its bytes): PATCH the
    /// bytes into a session, commit with the digest only when the stream ended
    /// clean, delete the session otherwise.
    pub async fn upload_blob<S>(
        &self,
        repository: &str,
        digest: &str,
        size: u64,
        body: S,
    ) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, BlobError>> + Send + 'static,
    {
        check_digest(digest)?;
        let scopes = [push_scope(repository)];
        let start = self.url(&format!("v2/{repository}/blobs/uploads/"))?;
        let response = self
            .send(&format!("POST {start}"), &scopes, |http| {
                http.post(start.clone())
            })
            .await?;
        let response = expect(response, &[StatusCode::ACCEPTED], &format!("POST {start}")).await?;
        let session = self.location(&response, &start)?;
        let committed = async {
            let location = if size == 0 {
                session.clone()
            } else {
                // The registry must keep taking our bytes, then answer: a
                // watch on the body says since when it has not.
                let waiting = Arc::new(Mutex::new(None));
                let request = crate::http::client()?
                    .patch(session.clone())
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_LENGTH, size)
                    .body(reqwest::Body::wrap_stream(watched(body, waiting.clone())));
                let request = self.authorize(request, &scopes).await?;
                let what = format!("PATCH {session}");
                let patch = async {
                    set_waiting(&waiting, Some(Instant::now()));
                    let response = request.send().await?;
                    // Its answer's body is next, under the same watch.
                    set_waiting(&waiting, Some(Instant::now()));
                    let response = transient_status(response).await?;
                    let response = expect(
                        response,
                        &[StatusCode::ACCEPTED, StatusCode::NO_CONTENT],
                        &what,
                    )
                    .await?;
                    self.location(&response, &session)
                };
                let idle = self.timeouts.idle;
                tokio::select! {
                    location = patch => location?,
                    () = stalled(&waiting, idle) => {
                        return Err(Transient(format!(
                            "{what}: stalled: the registry took no byte and gave no answer for {idle:?}"
                        ))
                        .into());
                    }
                }
            };
            let mut commit = location.clone();
            commit.query_pairs_mut().append_pair("digest", digest);
            let response = self
                .send(&format!("PUT {location}"), &scopes, |http| {
                    http.put(commit.clone()).header(header::CONTENT_LENGTH, 0)
                })
                .await?;
            // A PUT the registry committed but whose answer was lost (a
            // timeout, then a retry) finds its session gone: the commit
            // happened if the blob is there now, under its digest.
            if response.status() == StatusCode::NOT_FOUND {
                if self.blob_exists(repository, digest).await? {
                    return anyhow::Ok(());
                }
                // The registry lost the session (BLOB_UPLOAD_UNKNOWN): the
                // upload starts over in a new one, within its deadline.
                return Err(Transient(format!(
                    "PUT {location}: the registry no longer knows this upload session (HTTP 404)"
                ))
                .into());
            }
            expect(response, &[StatusCode::CREATED], &format!("PUT {location}")).await?;
            anyhow::Ok(())
        }
        .await;
        if committed.is_err() {
            // Best effort: a registry that lost the session forgets it anyway.
            let _ = self.cancel(&session, &scopes).await;
        }
        committed
    }

    async fn cancel(&self, session: &reqwest::Url, scopes: &[String]) -> Result<()> {
        let request = crate::http::client()?
            .delete(session.clone())
            .timeout(self.timeouts.request);
        self.authorize(request, scopes).await?.send().await?;
        Ok(())
    }

    /// Mount a blob another repository of this registry holds: whether it worked.
    pub async fn mount_blob(&self, repository: &str, from: &str, digest: &str) -> Result<bool> {
        check_digest(digest)?;
        let mut url = self.url(&format!("v2/{repository}/blobs/uploads/"))?;
        url.query_pairs_mut()
            .append_pair("mount", digest)
            .append_pair("from", from);
        let scopes = [push_scope(repository), pull_scope(from)];
        let response = self
            .send(&format!("POST {url}"), &scopes, |http| {
                http.post(url.clone())
            })
            .await?;
        match response.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                // The registry opened an upload instead: not wanted.
                if let Ok(session) = self.location(&response, &url) {
                    let _ = self.cancel(&session, &scopes).await;
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// An upload session's `Location`, which must stay on this registry (the
    /// session carries our credentials).
    fn location(&self, response: &Response, base: &reqwest::Url) -> Result<reqwest::Url> {
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .context("an upload session without a Location")?;
        let url = base
            .join(location)
            .with_context(|| format!("upload Location `{location}` is not a URL"))?;
        if url.scheme() != self.base.scheme()
            || super::auth::host_of(&url) != super::auth::host_of(&self.base)
        {
            bail!(
                "the registry {} sent the upload to {url}: not following it elsewhere",
                self.host
            );
        }
        Ok(url)
    }
}

/// `inner`, ended with a "stalled" error once no byte arrived for `idle`
/// (a failed read: tried again).
fn idle_bounded<S>(
    inner: S,
    idle: Duration,
    what: String,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + Unpin + 'static
where
    S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin + 'static,
{
    Box::pin(futures_util::stream::unfold(Some(inner), move |inner| {
        let what = what.clone();
        async move {
            let mut inner = inner?;
            match tokio::time::timeout(idle, inner.next()).await {
                Ok(Some(item)) => Some((item, Some(inner))),
                Ok(None) => None,
                Err(_) => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("{what}: stalled: no byte for {idle:?}"),
                    )),
                    None,
                )),
            }
        }
    }))
}

/// Since when the registry has held our last chunk without asking for the
/// next (or owed its answer); `None` while it waits for our source, whose own
/// idle limit applies.
type Waiting = Arc<Mutex<Option<Instant>>>;

fn set_waiting(waiting: &Waiting, since: Option<Instant>) {
    *waiting
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = since;
}

/// `body`, recording in `waiting` whether the registry is waiting for us or
/// we for it.
fn watched<S>(body: S, waiting: Waiting) -> impl Stream<Item = S::Item> + Send + 'static
where
    S: Stream + Send + 'static,
    S::Item: Send,
{
    futures_util::stream::unfold(
        (Box::pin(body), waiting),
        |(mut body, waiting)| async move {
            set_waiting(&waiting, None);
            let item = body.next().await;
            set_waiting(&waiting, Some(Instant::now()));
            item.map(|item| (item, (body, waiting)))
        },
    )
}

/// Ends once the registry has kept us waiting for `idle`.
async fn stalled(waiting: &Waiting, idle: Duration) {
    loop {
        let since = *waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let pause = match since {
            Some(since) => match idle.checked_sub(since.elapsed()) {
                Some(left) if !left.is_zero() => left,
                _ => return,
            },
            None => idle,
        };
        tokio::time::sleep(pause).await;
    }
}

/// How a child program authenticates to one registry ([`Registry::child_auth`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildAuth {
    None,
    Basic(Credentials),
    /// A bearer token for one repository's scope.
    Token(String),
}

/// How long a token the realm says lives `expires_in` seconds is kept: 60 s
/// unless the realm says otherwise (the spec's default); renewed 10 s early,
/// and kept no longer than an hour: the realm's number is not trusted to be
/// sane (u64::MAX overflows an Instant).
fn token_lifetime(expires_in: Option<u64>) -> Duration {
    Duration::from_secs(expires_in.unwrap_or(60).clamp(20, MAX_TOKEN_LIFETIME) - 10)
}

/// 429 and 5xx answers as [`Transient`] errors; others as they are.
async fn transient_status(response: Response) -> Result<Response> {
    let status = response.status();
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        let url = response.url().clone();
        let body = read_bounded(response, MAX_SMALL_BODY)
            .await
            .unwrap_or_default();
        return Err(Transient(format!("{url}: HTTP {status}: {}", snippet(&body))).into());
    }
    Ok(response)
}

/// The response when its status is one of `wanted`, else an error quoting the
/// start of the registry's answer.
async fn expect(response: Response, wanted: &[StatusCode], what: &str) -> Result<Response> {
    let status = response.status();
    if wanted.contains(&status) {
        return Ok(response);
    }
    let body = read_bounded(response, MAX_SMALL_BODY)
        .await
        .unwrap_or_default();
    bail!("{what}: HTTP {status}: {}", snippet(&body))
}

/// The first line of a body, cut short, for error messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or("").trim();
    line.chars().filter(|c| !c.is_control()).take(300).collect()
}

/// A small file over HTTP (a key, a signature): `None` on 404, throttling
/// and server errors tried again, the body refused past `limit` bytes.
pub async fn get_small_file(
    http: &reqwest::Client,
    url: &str,
    timeout: Duration,
    limit: usize,
) -> Result<Option<Vec<u8>>> {
    retrying(&format!("GET {url}"), || async {
        let response = http.get(url).timeout(timeout).send().await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(Transient(format!("HTTP {status}")).into());
        }
        if !status.is_success() {
            bail!("HTTP {status}");
        }
        Ok(Some(read_bounded(response, limit).await?.to_vec()))
    })
    .await
}

/// A response body, refused once it grows past `limit` bytes.
pub async fn read_bounded(mut response: Response, limit: usize) -> Result<Bytes> {
    let url = response.url().to_string();
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        bail!("{url}: the answer is larger than {limit} bytes");
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("reading {url}"))?
    {
        if body.len() + chunk.len() > limit {
            bail!("{url}: the answer is larger than {limit} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
}

/// One client per registry host and role for a whole run: clients keep their
/// tokens, and making one (the `/v2/` question) is a round trip.
pub struct Registries {
    credentials: CredentialSource,
    // Held across the connect, so that a host is connected to once.
    clients: tokio::sync::Mutex<BTreeMap<(Role, String), Arc<Registry>>>,
}

impl Registries {
    pub fn new(credentials: CredentialSource) -> Registries {
        Registries {
            credentials,
            clients: tokio::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// With credentials from this process's environment and docker config.
    pub fn from_environment() -> Registries {
        Registries::new(CredentialSource::from_environment())
    }

    pub async fn get(&self, reference: &ImageRef, role: Role) -> Result<Arc<Registry>> {
        let host = reference.api_host().to_string();
        let mut clients = self.clients.lock().await;
        let key = (role, host);
        if let Some(registry) = clients.get(&key) {
            return Ok(registry.clone());
        }
        let registry = Arc::new(Registry::connect(&key.1, role, &self.credentials).await?);
        clients.insert(key, registry.clone());
        Ok(registry)
    }
}

/// Run registry work on a current-thread runtime: async stays inside here.
pub fn block_on<F: Future>(future: F) -> Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(future))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The token scopes of the distribution spec: pull to read, pull and
    /// push to write, never more.
    #[test]
    fn scopes_name_the_repository_and_the_access() {
        assert_eq!(
            pull_scope("stagex/core-musl"),
            "repository:stagex/core-musl:pull"
        );
        assert_eq!(
            push_scope("stagex/core-musl"),
            "repository:stagex/core-musl:pull,push"
        );
    }

    #[test]
    fn loopback_registries_use_http() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("registry.example.com"));
        assert!(!is_loopback("127.example.com:443"));
    }

    /// Transient failures are tried again, then the answer is kept; an answer
    /// that is not transient is not tried again.
    #[test]
    fn transient_errors_are_retried_then_the_answer_kept() {
        let tries = std::cell::Cell::new(0);
        let answer = block_on(retrying_paced("GET x", Duration::from_millis(1), || {
            tries.set(tries.get() + 1);
            let result: Result<u32> = match tries.get() {
                1 => Err(Transient("HTTP 503".into()).into()),
                2 => Err(Transient("HTTP 429".into()).into()),
                _ => Ok(42),
            };
            async move { result }
        }))
        .unwrap();
        assert_eq!((answer.unwrap(), tries.get()), (42, 3));

        tries.set(0);
        let refused = block_on(retrying("GET y", || {
            tries.set(tries.get() + 1);
            async { Err::<(), _>(anyhow::anyhow!("HTTP 403")) }
        }))
        .unwrap();
        assert!(refused.is_err());
        assert_eq!(tries.get(), 1, "a 403 is not retried");

        assert_eq!(Transient("HTTP 503".into()).to_string(), "HTTP 503");
        let refusal = anyhow::Error::new(BlobError::Refused("digest".into()));
        assert!(!is_transient(&refusal));
        let read = anyhow::Error::new(BlobError::Read(std::io::Error::other("reset")));
        assert!(is_transient(&read));
    }

    /// A failure that stays transient is tried [`ATTEMPTS`] times, no more,
    /// pausing twice as long each time; the last error is kept, named.
    #[test]
    fn a_failure_that_stays_transient_is_tried_five_times() {
        let tries = std::cell::Cell::new(0);
        let started = Instant::now();
        let result = block_on(retrying_paced("GET z", Duration::from_millis(4), || {
            tries.set(tries.get() + 1);
            let error = Transient(format!("HTTP 503 (try {})", tries.get()));
            async move { Err::<(), _>(error.into()) }
        }))
        .unwrap();
        assert_eq!(tries.get(), ATTEMPTS);
        assert_eq!(
            format!("{:#}", result.unwrap_err()),
            "GET z: HTTP 503 (try 5)"
        );
        // 4 + 8 + 16 + 32 ms at least (sleeps never end early).
        assert!(started.elapsed() >= Duration::from_millis(60));
    }

    /// A refused connection is worth another try (reqwest reports it as a
    /// request error that is also a connect error).
    #[test]
    fn a_refused_connection_is_transient() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = crate::http::client().unwrap();
        let error = block_on(client.get(format!("http://127.0.0.1:{port}/v2/")).send())
            .unwrap()
            .unwrap_err();
        assert!(error.is_connect() && error.is_request(), "{error:?}");
        assert!(is_transient(&anyhow::Error::new(error)));
    }

    /// A try that never ends: all the tries together end at the deadline,
    /// which the error names.
    #[test]
    fn the_tries_of_one_operation_share_a_deadline() {
        let result = block_on(retrying_within(
            "copy blob x",
            Duration::from_millis(50),
            std::future::pending::<Result<()>>,
        ))
        .unwrap();
        let error = format!("{:#}", result.unwrap_err());
        assert!(
            error.contains("copy blob x: stalled: its tries took longer than 50ms, the limit"),
            "{error}"
        );
    }

    /// A body that sends one chunk and then nothing: the chunk, then a
    /// "stalled" error a retry treats as a failed read.
    #[test]
    fn a_body_that_stops_moving_ends_stalled() {
        let one = futures_util::stream::iter([Ok(Bytes::from_static(b"x"))]);
        let stuck = one.chain(futures_util::stream::pending());
        let items: Vec<std::io::Result<Bytes>> = block_on(
            idle_bounded(
                Box::pin(stuck),
                Duration::from_millis(50),
                "GET http://x/blob".into(),
            )
            .collect(),
        )
        .unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].as_ref().unwrap().as_ref(), b"x");
        let error = items[1].as_ref().unwrap_err();
        assert_eq!(
            error.to_string(),
            "GET http://x/blob: stalled: no byte for 50ms"
        );
        let error = anyhow::Error::new(BlobError::Read(std::io::Error::other(error.to_string())));
        assert!(is_transient(&error));
    }

    /// The watch on an upload: while we wait for our source it never fires;
    /// once the registry has held our bytes for the idle limit, it does.
    #[test]
    fn an_upload_stalls_only_when_the_registry_keeps_us_waiting() {
        let waiting: Waiting = Arc::new(Mutex::new(None));
        let idle = Duration::from_millis(50);
        let ours = block_on(async {
            tokio::time::timeout(Duration::from_millis(200), stalled(&waiting, idle)).await
        })
        .unwrap();
        assert!(ours.is_err(), "waiting for our own source is not a stall");
        set_waiting(&waiting, Some(Instant::now()));
        block_on(stalled(&waiting, idle)).unwrap();
    }

    /// Guards the clamp of a realm's `expires_in`: at most an hour (less the
    /// 10 s renewal margin) however long the realm says, at least 10 s, the
    /// spec's 60 s when it says nothing. Raising MAX_TOKEN_LIFETIME or
    /// dropping either bound fails here.
    #[test]
    fn token_lifetimes_are_clamped_to_an_hour() {
        let kept = |expires_in| token_lifetime(expires_in).as_secs();
        assert_eq!(kept(Some(u64::MAX)), 3590);
        assert_eq!(kept(Some(3601)), 3590);
        assert_eq!(kept(Some(86_400)), 3590);
        assert_eq!(kept(Some(3600)), 3590);
        assert_eq!(kept(Some(300)), 290);
        assert_eq!(kept(Some(0)), 10);
        assert_eq!(kept(None), 50);
    }

    #[test]
    fn a_blobs_deadline_grows_with_its_size() {
        let registry = Registry {
            host: "127.0.0.1:5000".into(),
            base: reqwest::Url::parse("http://127.0.0.1:5000/").unwrap(),
            credentials: None,
            challenge: Challenge::None,
            realm_credentials: None,
            tokens: Mutex::new(BTreeMap::new()),
            timeouts: crate::http::Timeouts::default(),
        };
        let small = registry.transfer_deadline(0);
        // Five tries of 60 s + 60 s, and pauses of 0.2 + 0.4 + 0.8 + 1.6 s.
        assert_eq!(small, Duration::from_secs(5 * 120 + 3));
        let big = registry.transfer_deadline(1 << 30);
        assert_eq!(big - small, Duration::from_secs(5 * (1 << 14)));
    }

    use crate::oci::stub::{self, answer, serve, Asked};

    fn reference(host: &str, rest: &str) -> ImageRef {
        ImageRef::parse(&format!("{host}/{rest}")).unwrap()
    }

    fn pusher() -> CredentialSource {
        CredentialSource {
            target: Some(Credentials {
                username: "pusher".into(),
                password: "secret".into(),
            }),
            source: None,
            docker_config: std::path::PathBuf::from("/nonexistent/config.json"),
        }
    }

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// A token registry: `/v2/` challenges for a realm on its own host,
    /// which answers `token`; manifests answer `manifest`.
    fn token_registry(
        token: &'static str,
        manifest: impl Fn(&Asked) -> String + Send + 'static,
    ) -> stub::Stub {
        serve(move |asked, host| match asked.target.as_str() {
            "/v2/" => answer(
                "401 Unauthorized",
                &[(
                    "www-authenticate",
                    &format!(r#"Bearer realm="http://{host}/token",service="stub""#),
                )],
                "",
            ),
            target if target.starts_with("/token?") => answer("200 OK", &[], token),
            _ => manifest(asked),
        })
    }

    /// The realm on the registry's own host gets the registry's
    /// credentials, is asked for the pull scope of the repository, and its
    /// token goes to the registry; while good, it is not asked again.
    #[test]
    fn a_token_is_asked_with_the_registrys_credentials_and_kept() {
        let stub = token_registry(r#"{"token":"T1","expires_in":300}"#, |_| {
            answer("200 OK", &[("docker-content-digest", DIGEST)], "")
        });
        let image = reference(&stub.host, "stagex/core:1");
        let digests = block_on(async {
            let registry = Registry::connect(&stub.host, Role::Target, &pusher()).await?;
            let first = registry.manifest_digest(&image).await?;
            let second = registry.manifest_digest(&image).await?;
            anyhow::Ok((first, second))
        })
        .unwrap()
        .unwrap();
        assert_eq!(digests, (Some(DIGEST.into()), Some(DIGEST.into())));
        assert_eq!(
            stub.lines(),
            [
                "GET /v2/",
                "GET /token?service=stub&scope=repository%3Astagex%2Fcore%3Apull",
                "HEAD /v2/stagex/core/manifests/1",
                "HEAD /v2/stagex/core/manifests/1",
            ]
        );
        let asked = stub.asked();
        let basic =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "pusher:secret");
        assert_eq!(
            asked[1].header("authorization"),
            Some(&*format!("Basic {basic}"))
        );
        assert_eq!(asked[2].header("authorization"), Some("Bearer T1"));
        assert_eq!(asked[3].header("authorization"), Some("Bearer T1"));
    }

    /// A token the registry refuses is asked for again, once; a registry
    /// that refuses the new one too is an error naming the status.
    #[test]
    fn a_refused_token_is_renewed_once() {
        let refusals = std::sync::atomic::AtomicUsize::new(0);
        let stub = token_registry(r#"{"access_token":"T"}"#, move |_| {
            if refusals.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                answer("401 Unauthorized", &[], "")
            } else {
                answer("200 OK", &[("docker-content-digest", DIGEST)], "")
            }
        });
        let image = reference(&stub.host, "stagex/core:1");
        let digest = block_on(async {
            let registry = Registry::connect(&stub.host, Role::Target, &pusher()).await?;
            registry.manifest_digest(&image).await
        })
        .unwrap()
        .unwrap();
        assert_eq!(digest.as_deref(), Some(DIGEST));
        let tokens = stub
            .lines()
            .iter()
            .filter(|l| l.starts_with("GET /token"))
            .count();
        assert_eq!(tokens, 2, "{:?}", stub.lines());

        let stub = token_registry(r#"{"token":"T"}"#, |_| answer("401 Unauthorized", &[], ""));
        let image = reference(&stub.host, "stagex/core:1");
        let error = block_on(async {
            let registry = Registry::connect(&stub.host, Role::Target, &pusher()).await?;
            registry.manifest_digest(&image).await
        })
        .unwrap()
        .unwrap_err();
        assert!(
            error.to_string().ends_with("HTTP 401 Unauthorized"),
            "{error:#}"
        );
        let tokens = stub
            .lines()
            .iter()
            .filter(|l| l.starts_with("GET /token"))
            .count();
        assert_eq!(tokens, 2, "{:?}", stub.lines());
    }

    /// A realm that refuses, or answers without a token: errors that say so.
    #[test]
    fn a_realm_without_a_token_is_an_error() {
        for (token, expected) in [
            (r#"{"expires_in":60}"#, "the answer holds no token"),
            ("<html>", "not a token"),
        ] {
            let stub = token_registry(token, |_| answer("200 OK", &[], ""));
            let image = reference(&stub.host, "stagex/core:1");
            let error = block_on(async {
                let registry = Registry::connect(&stub.host, Role::Target, &pusher()).await?;
                registry.manifest_digest(&image).await
            })
            .unwrap()
            .unwrap_err();
            assert!(format!("{error:#}").contains(expected), "{error:#}");
        }
        let stub = serve(|asked, host| match asked.target.as_str() {
            "/v2/" => answer(
                "401 Unauthorized",
                &[(
                    "www-authenticate",
                    &format!(r#"Bearer realm="http://{host}/token""#),
                )],
                "",
            ),
            _ => answer("403 Forbidden", &[], "denied: not yours\nmore"),
        });
        let error = block_on(async {
            let registry = Registry::connect(&stub.host, Role::Target, &pusher()).await?;
            registry.child_auth("stagex/core", true).await
        })
        .unwrap()
        .err()
        .unwrap();
        assert!(
            format!("{error:#}").ends_with("HTTP 403 Forbidden: denied: not yours"),
            "{error:#}"
        );
        assert_eq!(
            stub.lines()[1],
            "GET /token?scope=repository%3Astagex%2Fcore%3Apull%2Cpush"
        );
    }

    /// What `/v2/` says decides the challenge; a server that is not a
    /// registry is named as such.
    #[test]
    fn connect_reads_the_registrys_challenge() {
        let open = serve(|_, _| answer("200 OK", &[], "{}"));
        let registry = block_on(Registry::connect(&open.host, Role::Target, &pusher()))
            .unwrap()
            .unwrap();
        assert!(matches!(registry.challenge, Challenge::None));
        assert!(matches!(
            block_on(registry.child_auth("x", true)).unwrap().unwrap(),
            ChildAuth::None
        ));
        let basic = serve(|_, _| {
            answer(
                "401 Unauthorized",
                &[("www-authenticate", r#"Basic realm="stub""#)],
                "",
            )
        });
        let registry = block_on(Registry::connect(&basic.host, Role::Target, &pusher()))
            .unwrap()
            .unwrap();
        match block_on(registry.child_auth("x", true)).unwrap().unwrap() {
            ChildAuth::Basic(credentials) => assert_eq!(credentials.username, "pusher"),
            _ => panic!("basic auth hands the credentials on"),
        }
        let web = serve(|_, _| answer("404 Not Found", &[], "no"));
        let error = block_on(Registry::connect(&web.host, Role::Target, &pusher()))
            .unwrap()
            .err()
            .unwrap();
        assert!(
            error
                .to_string()
                .ends_with("not a registry (distribution API v2)"),
            "{error}"
        );
    }

    /// Each answer of a manifest HEAD: 404 is none, another failure an
    /// error, no digest header the digest of what a GET serves.
    #[test]
    fn a_manifests_digest_is_read_from_each_kind_of_answer() {
        let stub = serve(
            |asked, _| match (asked.method.as_str(), asked.target.as_str()) {
                (_, "/v2/") => answer("200 OK", &[], ""),
                ("HEAD", "/v2/x/manifests/missing") => answer("404 Not Found", &[], ""),
                ("HEAD", "/v2/x/manifests/forbidden") => answer("403 Forbidden", &[], ""),
                ("HEAD", _) => answer("200 OK", &[], ""),
                _ => answer("200 OK", &[], "{\"manifest\":1}"),
            },
        );
        let digest = |tag: &str| {
            let image = reference(&stub.host, &format!("x:{tag}"));
            block_on(async {
                let registry = Registry::connect(&stub.host, Role::Source, &pusher()).await?;
                registry.manifest_digest(&image).await
            })
            .unwrap()
        };
        assert_eq!(digest("missing").unwrap(), None);
        let error = digest("forbidden").unwrap_err().to_string();
        assert!(error.ends_with("HTTP 403 Forbidden"), "{error}");
        assert_eq!(
            digest("served").unwrap(),
            Some(format!(
                "sha256:{}",
                crate::hash::hex_sha256(b"{\"manifest\":1}")
            ))
        );
    }

    fn open_registry(
        answer: impl Fn(&Asked, &str) -> String + Send + 'static,
    ) -> (stub::Stub, Registry) {
        let stub = serve(move |asked, host| match asked.target.as_str() {
            "/v2/" => stub::answer("200 OK", &[], ""),
            _ => answer(asked, host),
        });
        let registry = block_on(Registry::connect(&stub.host, Role::Target, &pusher()))
            .unwrap()
            .unwrap();
        (stub, registry)
    }

    /// A manifest goes up as it is, with its media type; an answer other
    /// than 201 or 200 is an error quoting the registry.
    #[test]
    fn a_manifest_is_put_unchanged_and_the_answer_checked() {
        let (stub, registry) = open_registry(|asked, _| match asked.target.as_str() {
            "/v2/x/manifests/good" => answer("201 Created", &[], ""),
            _ => answer("400 Bad Request", &[], "MANIFEST_INVALID: no"),
        });
        let bytes = Bytes::from_static(b"{\"schemaVersion\":2}");
        let put = |tag: &str| {
            block_on(registry.push_manifest(
                &reference(&stub.host, &format!("x:{tag}")),
                &bytes,
                crate::oci::manifest::OCI_MANIFEST,
            ))
            .unwrap()
        };
        put("good").unwrap();
        let error = put("bad").unwrap_err().to_string();
        assert!(
            error.ends_with("HTTP 400 Bad Request: MANIFEST_INVALID: no"),
            "{error}"
        );
        let asked = &stub.asked()[1];
        assert_eq!(asked.line(), "PUT /v2/x/manifests/good");
        assert_eq!(asked.body, bytes.as_ref());
        assert_eq!(
            asked.header("content-type"),
            Some(crate::oci::manifest::OCI_MANIFEST)
        );
    }

    /// 200 is there, 404 is not, anything else an error.
    #[test]
    fn whether_a_blob_exists_is_read_from_the_status() {
        let (_stub, registry) =
            open_registry(
                |asked, _| match asked.target.rsplit('/').next().unwrap_or_default() {
                    d if d.ends_with("def") => answer("200 OK", &[], ""),
                    d if d.ends_with("000") => answer("404 Not Found", &[], ""),
                    _ => answer("403 Forbidden", &[], ""),
                },
            );
        let exists = |digest: String| block_on(registry.blob_exists("x", &digest)).unwrap();
        assert!(exists(DIGEST.into()).unwrap());
        assert!(!exists(format!("sha256:{}", "0".repeat(64))).unwrap());
        assert!(exists(format!("sha256:{}", "1".repeat(64))).is_err());
        assert!(exists("sha256:short".into()).is_err());
    }

    /// A mount asks for the blob from the other repository with both
    /// scopes; 201 is mounted, an upload opened instead is cancelled.
    #[test]
    fn a_mount_is_mounted_only_on_201_and_an_opened_upload_is_cancelled() {
        let (stub, registry) = open_registry(|asked, _| match asked.method.as_str() {
            "POST" if asked.target.contains("from=mounted") => answer("201 Created", &[], ""),
            "POST" => answer(
                "202 Accepted",
                &[("location", "/v2/x/blobs/uploads/session-1")],
                "",
            ),
            _ => answer("204 No Content", &[], ""),
        });
        assert!(block_on(registry.mount_blob("x", "mounted", DIGEST))
            .unwrap()
            .unwrap());
        assert!(!block_on(registry.mount_blob("x", "other", DIGEST))
            .unwrap()
            .unwrap());
        let mount = format!(
            "POST /v2/x/blobs/uploads/?mount=sha256%3A{}&from=mounted",
            &DIGEST[7..]
        );
        assert_eq!(stub.lines()[1], mount);
        assert_eq!(
            stub.lines().last().unwrap(),
            "DELETE /v2/x/blobs/uploads/session-1"
        );
    }

    /// An upload: POST, PATCH the bytes into the session, PUT with the
    /// digest; the session's Location is followed only on this registry.
    #[test]
    fn an_upload_patches_then_commits_and_stays_on_the_registry() {
        let (stub, registry) = open_registry(|asked, host| match asked.method.as_str() {
            "POST" if asked.target.starts_with("/v2/elsewhere/") => answer(
                "202 Accepted",
                &[(
                    "location",
                    "http://registry.example/v2/elsewhere/blobs/uploads/s",
                )],
                "",
            ),
            "POST" => answer(
                "202 Accepted",
                &[(
                    "location",
                    &format!("http://{host}/v2/x/blobs/uploads/s1?state=a"),
                )],
                "",
            ),
            "PATCH" => answer(
                "202 Accepted",
                &[("location", "/v2/x/blobs/uploads/s1?state=b")],
                "",
            ),
            "PUT" => answer("201 Created", &[], ""),
            _ => answer("204 No Content", &[], ""),
        });
        let body = futures_util::stream::iter([Ok::<_, BlobError>(Bytes::from_static(b"layer"))]);
        block_on(registry.upload_blob("x", DIGEST, 5, body))
            .unwrap()
            .unwrap();
        let asked = stub.asked();
        let lines: Vec<String> = asked.iter().map(Asked::line).collect();
        assert_eq!(
            lines,
            [
                "GET /v2/",
                "POST /v2/x/blobs/uploads/",
                "PATCH /v2/x/blobs/uploads/s1?state=a",
                &format!(
                    "PUT /v2/x/blobs/uploads/s1?state=b&digest=sha256%3A{}",
                    &DIGEST[7..]
                ),
            ]
        );
        assert_eq!(asked[2].body, b"layer");

        let body = futures_util::stream::iter([Ok::<_, BlobError>(Bytes::from_static(b"layer"))]);
        let error = block_on(registry.upload_blob("elsewhere", DIGEST, 5, body))
            .unwrap()
            .unwrap_err();
        assert!(
            error.to_string().ends_with(
                "sent the upload to http://registry.example/v2/elsewhere/blobs/uploads/s: not following it elsewhere"
            ),
            "{error}"
        );
        assert_eq!(
            stub.asked().len(),
            5,
            "nothing was sent to the session elsewhere"
        );
    }

    /// An empty blob is committed without a PATCH; a commit whose session
    /// is gone counts when the blob is there, and starts over when not.
    #[test]
    fn an_empty_blob_is_committed_at_once_and_a_lost_session_is_checked() {
        let (stub, registry) = open_registry(|asked, _| match asked.method.as_str() {
            "POST" => answer(
                "202 Accepted",
                &[("location", "/v2/x/blobs/uploads/s1")],
                "",
            ),
            "PUT" => answer("404 Not Found", &[], ""),
            "HEAD" if asked.target.ends_with("def") => answer("200 OK", &[], ""),
            _ => answer("404 Not Found", &[], ""),
        });
        let empty = futures_util::stream::iter(Vec::<Result<Bytes, BlobError>>::new());
        block_on(registry.upload_blob("x", DIGEST, 0, empty))
            .unwrap()
            .unwrap();
        let digest = format!("sha256:{}", "0".repeat(64));
        let empty = futures_util::stream::iter(Vec::<Result<Bytes, BlobError>>::new());
        let error = block_on(registry.upload_blob("x", &digest, 0, empty))
            .unwrap()
            .unwrap_err();
        assert!(is_transient(&error));
        assert_eq!(
            stub.lines(),
            [
                "GET /v2/".to_string(),
                "POST /v2/x/blobs/uploads/".into(),
                format!(
                    "PUT /v2/x/blobs/uploads/s1?digest=sha256%3A{}",
                    &DIGEST[7..]
                ),
                format!("HEAD /v2/x/blobs/{DIGEST}"),
                "POST /v2/x/blobs/uploads/".into(),
                format!(
                    "PUT /v2/x/blobs/uploads/s1?digest=sha256%3A{}",
                    "0".repeat(64)
                ),
                format!("HEAD /v2/x/blobs/{digest}"),
                "DELETE /v2/x/blobs/uploads/s1".into(),
            ]
        );
    }

    /// A body past its limit is refused whether or not its length is
    /// announced; the limit itself is allowed. 429 and 5xx are transient.
    #[test]
    fn bodies_are_bounded_and_throttling_is_transient() {
        let stub = serve(|asked, _| {
            match asked.target.as_str() {
            "/ten" => answer("200 OK", &[], "0123456789"),
            "/chunked" => "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n6\r\n012345\r\n5\r\n6789a\r\n0\r\n\r\n".into(),
            "/missing" => answer("404 Not Found", &[], ""),
            "/throttled" => answer("429 Too Many Requests", &[], "slow down"),
            _ => answer("418 I'm a teapot", &[], ""),
        }
        });
        let get = |path: &str| {
            let url = format!("http://{}{path}", stub.host);
            block_on(async {
                let response = crate::http::client()?.get(&url).send().await?;
                let response = transient_status(response).await?;
                read_bounded(response, 10).await
            })
            .unwrap()
        };
        assert_eq!(get("/ten").unwrap().as_ref(), b"0123456789");
        let error = get("/chunked").unwrap_err().to_string();
        assert!(
            error.ends_with("the answer is larger than 10 bytes"),
            "{error}"
        );
        let error = get("/throttled").unwrap_err();
        assert!(is_transient(&error));
        assert!(
            error
                .to_string()
                .ends_with("HTTP 429 Too Many Requests: slow down"),
            "{error}"
        );

        let small = |path: &str, limit: usize| {
            let url = format!("http://{}{path}", stub.host);
            block_on(get_small_file(
                crate::http::client().unwrap(),
                &url,
                Duration::from_secs(5),
                limit,
            ))
            .unwrap()
        };
        assert_eq!(small("/ten", 10).unwrap().unwrap(), b"0123456789");
        assert!(small("/ten", 9).is_err());
        assert_eq!(small("/missing", 10).unwrap(), None);
        let error = format!("{:#}", small("/teapot", 10).unwrap_err());
        assert!(error.ends_with("HTTP 418 I'm a teapot"), "{error}");
    }

    /// Error messages quote the first line of the registry's answer, cut
    /// at 300 characters, without control characters.
    #[test]
    fn snippets_are_one_clean_short_line() {
        assert_eq!(
            snippet(b"  denied\x1b[31m: no\nsecond line"),
            "denied[31m: no"
        );
        assert_eq!(snippet("x".repeat(400).as_bytes()).len(), 300);
        assert_eq!(snippet(b""), "");
    }

    /// One client per host and role: the second ask for a host is answered
    /// from the first connection.
    #[test]
    fn registries_connect_once_per_host_and_role() {
        let stub = serve(|_, _| answer("200 OK", &[], ""));
        let registries = Registries::new(pusher());
        let image = reference(&stub.host, "x:1");
        block_on(async {
            registries.get(&image, Role::Target).await?;
            registries.get(&image, Role::Target).await?;
            registries.get(&image, Role::Source).await?;
            anyhow::Ok(())
        })
        .unwrap()
        .unwrap();
        assert_eq!(stub.lines(), ["GET /v2/", "GET /v2/"]);
    }
}
