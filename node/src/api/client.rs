//! The control API's typed client: one method per route of the [`crate::contract`], each
//! returning the contract's reply type or a [`ClientError`].
//!
//! [`ApiClient::connect`] finds the daemon of a data directory through the files the contract
//! names ([`API_ADDR_FILE`], [`API_TOKEN_FILE`]); it reads them on every connect, since the
//! daemon writes new ones each start.
//!
//! Invariants:
//! - The token is sent only to a loopback address, and the API files are size-checked before
//!   they are read.
//! - Every call is bounded: each route has a timeout fitting what the daemon does before it
//!   answers, and replies are read up to [`MAX_REPLY_BYTES`].
//! - This module builds no path of its own: every path comes from [`routes`].

use std::{
    io::Read as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use licet_proto::{LicenceId, ManifestId, PublicKey};
use reqwest::{Method, StatusCode};
use serde::{Serialize, de::DeserializeOwned};

use crate::contract::{
    AddQuery, ApiError, ApiErrorKind, CatalogInfo, CatalogListReply, ContentInfo, ContentListReply,
    ErrorReply, GetRequest, LicenceEntry, LicenceListReply, LimitsChange, LimitsReply, OpenReply,
    OpenRequest, PeersReply, PublishQuery, RemoveQuery, RemoveReply, StatusReply, TrustAddRequest,
    TrustEntry, TrustReply,
    files::{API_ADDR_FILE, API_TOKEN_FILE},
    routes,
};

/// Connecting to the daemon on loopback.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait for a quick call (status, lists, trust, rm, one poll of a download).
pub const QUICK_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest wait for `POST /v1/downloads`: the daemon finds the manifest in the DHT and
/// checks it before it answers.
pub const START_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// The longest wait for `POST /v1/content` and a check: the daemon hashes all the content
/// before it answers (a terabyte at 200 MB/s takes under 2 hours).
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(6 * 60 * 60);
/// The largest reply read from the daemon (a list of many thousand items is a few MiB).
pub const MAX_REPLY_BYTES: usize = 256 * 1024 * 1024;
/// The largest `api-addr` or `api-token` file read.
const MAX_API_FILE_BYTES: u64 = 4096;

/// Why a call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon runs for the data directory: its API files are missing, or nothing answers
    /// at the address they name (`nothing_answers`).
    #[error(
        "no daemon is running for data directory {dir} (start one with: licet-node run --data-dir {dir})",
        dir = data_dir.display()
    )]
    NoDaemon {
        /// The data directory.
        data_dir: PathBuf,
        /// The address left behind that nothing answers at, if any.
        #[source]
        nothing_answers: Option<NothingAnswers>,
    },
    /// An API file cannot be read or does not hold what the daemon writes.
    #[error("{message}")]
    BadApiFile {
        /// Which file, and what is wrong with it.
        message: String,
        /// The I/O error, if reading failed.
        #[source]
        cause: Option<std::io::Error>,
    },
    /// The daemon answered with an error: its kind and message (and a refusal).
    #[error("{0}")]
    Api(ApiError),
    /// The daemon did not answer within the call's timeout.
    #[error("the daemon at {addr} did not answer within {} s", timeout.as_secs())]
    TimedOut {
        /// The daemon's address.
        addr: SocketAddr,
        /// The call's timeout.
        timeout: Duration,
        /// The HTTP client's error.
        #[source]
        cause: reqwest::Error,
    },
    /// Any other failure to talk to the daemon or to read its reply.
    #[error("{message}")]
    Transport {
        /// What failed.
        message: String,
        /// Why, if known.
        #[source]
        cause: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// An address in `api-addr` that nothing answers at (a daemon that stopped without cleaning up).
#[derive(Debug, thiserror::Error)]
#[error(
    "nothing answers at {addr} (from {file}; a daemon that stopped without cleaning up leaves it behind)",
    file = file.display()
)]
pub struct NothingAnswers {
    /// The address.
    pub addr: SocketAddr,
    /// The file that names it.
    pub file: PathBuf,
    /// The connection error.
    #[source]
    pub cause: reqwest::Error,
}

/// A client of the daemon of one data directory.
pub struct ApiClient {
    http: reqwest::Client,
    addr: SocketAddr,
    token: String,
    data_dir: PathBuf,
}

impl ApiClient {
    /// Reads `api-addr` and `api-token` of `data_dir`; does not contact the daemon yet.
    pub fn connect(data_dir: &Path) -> Result<ApiClient, ClientError> {
        let addr_text = read_api_file(data_dir, API_ADDR_FILE)?;
        let token = read_api_file(data_dir, API_TOKEN_FILE)?;
        let addr_path = data_dir.join(API_ADDR_FILE);
        let addr: SocketAddr = addr_text.parse().map_err(|_| ClientError::BadApiFile {
            message: format!(
                "{} does not hold an address (it holds {:?})",
                addr_path.display(),
                first_chars(&addr_text, 80)
            ),
            cause: None,
        })?;
        if !addr.ip().is_loopback() {
            return Err(ClientError::BadApiFile {
                message: format!(
                    "{} names {addr}, which is not a loopback address; the control API listens \
                     on 127.0.0.1 only, and the token is not sent elsewhere",
                    addr_path.display()
                ),
                cause: None,
            });
        }
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ClientError::BadApiFile {
                message: format!(
                    "{} does not hold an API token",
                    data_dir.join(API_TOKEN_FILE).display()
                ),
                cause: None,
            });
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| ClientError::Transport {
                message: "cannot set up an HTTP client".to_owned(),
                cause: Some(Box::new(e)),
            })?;
        Ok(ApiClient {
            http,
            addr,
            token,
            data_dir: data_dir.to_owned(),
        })
    }

    /// The daemon's address, from `api-addr`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The dashboard's address on this daemon, carrying the token in its fragment
    /// (`http://127.0.0.1:PORT/ui/#token=…`): a browser never sends a fragment, and the page
    /// moves it to the tab's session storage.
    pub fn dashboard_url(&self) -> String {
        format!(
            "http://{}{}#token={}",
            self.addr,
            routes::DASHBOARD,
            self.token
        )
    }

    /// The token file this client read.
    pub fn token_file(&self) -> PathBuf {
        self.data_dir.join(API_TOKEN_FILE)
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<StatusReply, ClientError> {
        self.get_json(routes::STATUS).await
    }

    /// `GET /v1/peers`.
    pub async fn peers(&self) -> Result<PeersReply, ClientError> {
        self.get_json(routes::PEERS).await
    }

    /// `GET /v1/limits`.
    pub async fn limits(&self) -> Result<LimitsReply, ClientError> {
        self.get_json(routes::LIMITS).await
    }

    /// `PUT /v1/limits`.
    pub async fn limits_change(&self, change: &LimitsChange) -> Result<LimitsReply, ClientError> {
        self.send_json(Method::PUT, routes::LIMITS, change, QUICK_CALL_TIMEOUT)
            .await
    }

    /// `GET /v1/trust`.
    pub async fn trust_list(&self) -> Result<TrustReply, ClientError> {
        self.get_json(routes::TRUST).await
    }

    /// `POST /v1/trust`.
    pub async fn trust_add(&self, request: &TrustAddRequest) -> Result<TrustEntry, ClientError> {
        self.send_json(Method::POST, routes::TRUST, request, QUICK_CALL_TIMEOUT)
            .await
    }

    /// `DELETE /v1/trust/{publisher}`.
    pub async fn trust_remove(&self, publisher: &PublicKey) -> Result<(), ClientError> {
        self.delete(&routes::trust_publisher(publisher)).await
    }

    /// `POST /v1/content?content_dir=DIR` with the signed manifest's bytes; returns once the
    /// daemon has verified the content on disk.
    pub async fn content_add(
        &self,
        manifest: Vec<u8>,
        query: &AddQuery,
    ) -> Result<ContentInfo, ClientError> {
        self.post_bytes(routes::CONTENT, query, manifest, VERIFY_TIMEOUT)
            .await
    }

    /// `GET /v1/content`.
    pub async fn content_list(&self) -> Result<ContentListReply, ClientError> {
        self.get_json(routes::CONTENT).await
    }

    /// `GET /v1/content/{id}`.
    pub async fn content_get(&self, id: &ManifestId) -> Result<ContentInfo, ClientError> {
        self.get_json(&routes::content_item(id)).await
    }

    /// `DELETE /v1/content/{id}`, with `delete_files=true` if `query` says so.
    pub async fn content_remove(
        &self,
        id: &ManifestId,
        query: RemoveQuery,
    ) -> Result<RemoveReply, ClientError> {
        let path = routes::content_item(id);
        let mut url = self.url(&path)?;
        if query.delete_files {
            url.query_pairs_mut().append_pair("delete_files", "true");
        }
        let (status, bytes) = self
            .exchange(self.http.delete(url), QUICK_CALL_TIMEOUT)
            .await?;
        decode_reply(status, &bytes, &format!("DELETE {path}"))
    }

    /// `POST /v1/content/{id}/pause`; returns once the download task has ended.
    pub async fn content_pause(&self, id: &ManifestId) -> Result<ContentInfo, ClientError> {
        let path = routes::content_pause(id);
        self.send_json(
            Method::POST,
            &path,
            &serde_json::json!({}),
            QUICK_CALL_TIMEOUT,
        )
        .await
    }

    /// `POST /v1/content/{id}/resume`.
    pub async fn content_resume(&self, id: &ManifestId) -> Result<ContentInfo, ClientError> {
        let path = routes::content_resume(id);
        self.send_json(
            Method::POST,
            &path,
            &serde_json::json!({}),
            QUICK_CALL_TIMEOUT,
        )
        .await
    }

    /// `POST /v1/content/{id}/check`; returns once every file is re-verified.
    pub async fn content_check(&self, id: &ManifestId) -> Result<ContentInfo, ClientError> {
        self.send_json(
            Method::POST,
            &routes::content_check(id),
            &serde_json::json!({}),
            VERIFY_TIMEOUT,
        )
        .await
    }

    /// `POST /v1/downloads`; returns once the manifest is accepted (the fetch goes on).
    pub async fn download_start(&self, request: &GetRequest) -> Result<ContentInfo, ClientError> {
        self.send_json(
            Method::POST,
            routes::DOWNLOADS,
            request,
            START_DOWNLOAD_TIMEOUT,
        )
        .await
    }

    /// `POST /v1/content/{id}/open`; returns once the plaintext is written (it decrypts every
    /// file, so it is given as long as a verification).
    pub async fn content_open(
        &self,
        id: &ManifestId,
        request: &OpenRequest,
    ) -> Result<OpenReply, ClientError> {
        self.send_json(
            Method::POST,
            &routes::content_open(id),
            request,
            VERIFY_TIMEOUT,
        )
        .await
    }

    /// `GET /v1/licences`.
    pub async fn licence_list(&self) -> Result<LicenceListReply, ClientError> {
        self.get_json(routes::LICENCES).await
    }

    /// `POST /v1/licences` with the licence file's bytes.
    pub async fn licence_add(&self, licence: Vec<u8>) -> Result<LicenceEntry, ClientError> {
        self.post_bytes(
            routes::LICENCES,
            &serde_json::json!({}),
            licence,
            QUICK_CALL_TIMEOUT,
        )
        .await
    }

    /// `DELETE /v1/licences/{id}`.
    pub async fn licence_remove(&self, id: &LicenceId) -> Result<(), ClientError> {
        self.delete(&routes::licence_item(id)).await
    }

    /// `POST /v1/catalogs?head=HEX` with the signed catalog's bytes and its signed head.
    pub async fn catalog_publish(
        &self,
        catalog: Vec<u8>,
        head: &[u8],
    ) -> Result<CatalogInfo, ClientError> {
        let query = PublishQuery {
            head: hex::encode(head),
        };
        self.post_bytes(routes::CATALOGS, &query, catalog, QUICK_CALL_TIMEOUT)
            .await
    }

    /// `GET /v1/catalogs`.
    pub async fn catalog_list(&self) -> Result<CatalogListReply, ClientError> {
        self.get_json(routes::CATALOGS).await
    }

    /// `GET /metrics`: the metrics as Prometheus text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let request = self.http.get(self.url(routes::METRICS)?);
        let (status, bytes) = self.exchange(request, QUICK_CALL_TIMEOUT).await?;
        if !status.is_success() {
            return Err(ClientError::Api(error_reply(status, &bytes)));
        }
        String::from_utf8(bytes).map_err(|e| ClientError::Transport {
            message: format!("the daemon's metrics at {} are not UTF-8 text", self.addr),
            cause: Some(Box::new(e)),
        })
    }

    fn url(&self, path: &str) -> Result<reqwest::Url, ClientError> {
        reqwest::Url::parse(&format!("http://{}{path}", self.addr)).map_err(|e| {
            ClientError::Transport {
                message: format!("cannot make a URL of {path}"),
                cause: Some(Box::new(e)),
            }
        })
    }

    /// Sends `request` with the token; returns the status and the body (bounded).
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<(StatusCode, Vec<u8>), ClientError> {
        let mut response = request
            .bearer_auth(&self.token)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| self.transport_error(e, timeout))?;
        let status = response.status();
        if response
            .content_length()
            .is_some_and(|len| len > MAX_REPLY_BYTES as u64)
        {
            return Err(self.reply_too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(e, timeout))?
        {
            if body.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(self.reply_too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }

    fn reply_too_large(&self) -> ClientError {
        ClientError::Transport {
            message: format!(
                "the daemon at {} sent a reply larger than {MAX_REPLY_BYTES} bytes",
                self.addr
            ),
            cause: None,
        }
    }

    fn transport_error(&self, error: reqwest::Error, timeout: Duration) -> ClientError {
        if error.is_connect() {
            ClientError::NoDaemon {
                data_dir: self.data_dir.clone(),
                nothing_answers: Some(NothingAnswers {
                    addr: self.addr,
                    file: self.data_dir.join(API_ADDR_FILE),
                    cause: error,
                }),
            }
        } else if error.is_timeout() {
            ClientError::TimedOut {
                addr: self.addr,
                timeout,
                cause: error,
            }
        } else {
            ClientError::Transport {
                message: format!("cannot talk to the daemon at {}", self.addr),
                cause: Some(Box::new(error)),
            }
        }
    }

    async fn send_json<R: DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<R, ClientError> {
        let request = self
            .http
            .request(method.clone(), self.url(path)?)
            .json(body);
        let (status, bytes) = self.exchange(request, timeout).await?;
        decode_reply(status, &bytes, &format!("{method} {path}"))
    }

    /// POSTs `body` (a signed file's bytes) to `path` with `query` as its query string.
    async fn post_bytes<R: DeserializeOwned, Q: Serialize>(
        &self,
        path: &str,
        query: &Q,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<R, ClientError> {
        let mut url = self.url(path)?;
        for (name, value) in query_pairs(query)? {
            url.query_pairs_mut().append_pair(&name, &value);
        }
        let request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        let (status, bytes) = self.exchange(request, timeout).await?;
        decode_reply(status, &bytes, &format!("POST {path}"))
    }

    async fn get_json<R: DeserializeOwned>(&self, path: &str) -> Result<R, ClientError> {
        let request = self.http.get(self.url(path)?);
        let (status, bytes) = self.exchange(request, QUICK_CALL_TIMEOUT).await?;
        decode_reply(status, &bytes, &format!("GET {path}"))
    }

    async fn delete(&self, path: &str) -> Result<(), ClientError> {
        let request = self.http.delete(self.url(path)?);
        let (status, bytes) = self.exchange(request, QUICK_CALL_TIMEOUT).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(ClientError::Api(error_reply(status, &bytes)))
        }
    }
}

/// The query string's name and value pairs of a contract query type (a struct of text fields).
fn query_pairs<Q: Serialize>(query: &Q) -> Result<Vec<(String, String)>, ClientError> {
    let not_text =
        |cause: Option<Box<dyn std::error::Error + Send + Sync>>| ClientError::Transport {
            message: "cannot write the query string (the control API carries text only)".to_owned(),
            cause,
        };
    let value = serde_json::to_value(query).map_err(|e| not_text(Some(Box::new(e))))?;
    let serde_json::Value::Object(fields) = value else {
        return Err(not_text(None));
    };
    fields
        .into_iter()
        .map(|(name, value)| match value {
            serde_json::Value::String(text) => Ok((name, text)),
            _ => Err(not_text(None)),
        })
        .collect()
}

/// Reads one API file of `data_dir`, size-checked, as trimmed text.
fn read_api_file(data_dir: &Path, name: &str) -> Result<String, ClientError> {
    let path = data_dir.join(name);
    let bad =
        |message: String, cause: Option<std::io::Error>| ClientError::BadApiFile { message, cause };
    let read = || -> std::io::Result<Result<Vec<u8>, u64>> {
        let file = std::fs::File::open(&path)?;
        let len = file.metadata()?.len();
        if len > MAX_API_FILE_BYTES {
            return Ok(Err(len));
        }
        let mut bytes = Vec::new();
        file.take(MAX_API_FILE_BYTES + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_API_FILE_BYTES {
            return Ok(Err(bytes.len() as u64));
        }
        Ok(Ok(bytes))
    };
    match read() {
        Ok(Ok(bytes)) => String::from_utf8(bytes)
            .map(|text| text.trim().to_owned())
            .map_err(|_| bad(format!("{} is not UTF-8 text", path.display()), None)),
        Ok(Err(len)) => Err(bad(
            format!(
                "{} is {len} bytes, not what `licet-node run` writes",
                path.display()
            ),
            None,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ClientError::NoDaemon {
            data_dir: data_dir.to_owned(),
            nothing_answers: None,
        }),
        Err(e) => Err(bad(format!("cannot read {}", path.display()), Some(e))),
    }
}

/// Decodes a reply: the value on success, the [`ApiError`] otherwise.
fn decode_reply<R: DeserializeOwned>(
    status: StatusCode,
    body: &[u8],
    what: &str,
) -> Result<R, ClientError> {
    if !status.is_success() {
        return Err(ClientError::Api(error_reply(status, body)));
    }
    serde_json::from_slice(body).map_err(|e| ClientError::Transport {
        message: format!(
            "the daemon's reply to {what} is not what this client expects (is the daemon \
             another version of licet-node?)"
        ),
        cause: Some(Box::new(e)),
    })
}

/// The error of a non-success reply: its [`ErrorReply`], or one made from the status.
fn error_reply(status: StatusCode, body: &[u8]) -> ApiError {
    if let Ok(reply) = serde_json::from_slice::<ErrorReply>(body) {
        return reply.error;
    }
    let kind = match status.as_u16() {
        400 => ApiErrorKind::BadRequest,
        401 => ApiErrorKind::Unauthorized,
        403 => ApiErrorKind::Refused,
        404 => ApiErrorKind::NotFound,
        409 => ApiErrorKind::Conflict,
        502 => ApiErrorKind::Unavailable,
        _ => ApiErrorKind::Internal,
    };
    let text = String::from_utf8_lossy(body);
    ApiError::new(
        kind,
        format!(
            "the daemon answered {status}: {}",
            first_chars(text.trim(), 200)
        ),
    )
}

/// At most `max` characters of `text`, ending in `…` if cut.
fn first_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        api::server::{
            create_token,
            fake::{Call, FakeNode, TestServer, publisher, within},
            write_api_addr,
        },
        contract::ContentState,
    };

    /// A data directory whose daemon is a fake `NodeApi` on loopback, and a client of it.
    async fn client_of_fake() -> (tempfile::TempDir, TestServer, ApiClient) {
        let dir = tempfile::tempdir().unwrap();
        let token = create_token(dir.path()).unwrap();
        let server = TestServer::start(Arc::new(FakeNode::default()), token).await;
        write_api_addr(dir.path(), server.addr).unwrap();
        let client = ApiClient::connect(dir.path()).unwrap();
        (dir, server, client)
    }

    #[tokio::test]
    async fn each_method_reaches_its_route() {
        let (_dir, server, client) = client_of_fake().await;
        let id = ManifestId([7; 32]);
        let key = publisher();
        within(async {
            assert_eq!(client.status().await.unwrap().peer_id, "12D3KooWFake");
            assert_eq!(client.peers().await.unwrap().peers.len(), 1);
            assert_eq!(client.trust_list().await.unwrap().publishers.len(), 1);
            let request = TrustAddRequest {
                publisher: key,
                name: Some("Acme".to_owned()),
                require_catalog: true,
                mirror: false,
            };
            assert!(client.trust_add(&request).await.unwrap().require_catalog);
            client.trust_remove(&key).await.unwrap();
            let query = AddQuery {
                content_dir: PathBuf::from("/srv/my release"),
            };
            let added = client.content_add(b"m".to_vec(), &query).await.unwrap();
            assert_eq!(added.dir, PathBuf::from("/srv/my release"));
            assert_eq!(client.content_list().await.unwrap().content.len(), 1);
            assert_eq!(client.content_get(&id).await.unwrap().manifest_id, id);
            let removed = client.content_remove(&id, RemoveQuery::default()).await;
            assert!(removed.unwrap().deleted_files.is_empty());
            let deleting = RemoveQuery { delete_files: true };
            let removed = client.content_remove(&id, deleting).await.unwrap();
            assert_eq!(removed.deleted_files.len(), 1);
            assert_eq!(
                client.content_pause(&id).await.unwrap().state,
                ContentState::Paused
            );
            let resumed = client.content_resume(&id).await.unwrap();
            assert_eq!(resumed.state, ContentState::Downloading);
            let checked = client.content_check(&id).await.unwrap();
            assert_eq!(checked.state, ContentState::Complete);
            let get = GetRequest {
                link: format!("licet:{id}"),
                output_dir: PathBuf::from("/out"),
                replace: true,
            };
            client.download_start(&get).await.unwrap();
            let published = client.catalog_publish(b"c".to_vec(), &[0xab, 0x01]);
            assert_eq!(published.await.unwrap().sequence, Some(7));
            assert_eq!(client.catalog_list().await.unwrap().catalogs.len(), 1);
            assert!(
                client
                    .metrics()
                    .await
                    .unwrap()
                    .contains("licet_chunks_served")
            );
        })
        .await;
        let calls = server.node.calls();
        assert!(
            matches!(
                &calls[..],
                [
                    Call::Status,
                    Call::Peers,
                    Call::TrustList,
                    Call::TrustAdd(_),
                    Call::TrustRemove(k),
                    Call::ContentAdd(manifest, _),
                    Call::ContentList,
                    Call::ContentGet(_),
                    Call::ContentRemove(_, false),
                    Call::ContentRemove(_, true),
                    Call::ContentPause(_),
                    Call::ContentResume(_),
                    Call::ContentCheck(_),
                    Call::DownloadStart(get),
                    Call::CatalogPublish(catalog, head),
                    Call::CatalogList,
                    Call::Metrics,
                ] if *k == key && manifest == b"m" && get.replace && catalog == b"c"
                    && head == &[0xab, 0x01]
            ),
            "{calls:?}"
        );
    }

    #[tokio::test]
    async fn an_error_reply_is_the_api_error_with_its_kind() {
        let (_dir, server, client) = client_of_fake().await;
        server
            .node
            .fail(ApiError::new(ApiErrorKind::NotFound, "no content 0707…"));
        match within(client.content_get(&ManifestId([7; 32]))).await {
            Err(ClientError::Api(error)) => {
                assert_eq!(error.kind, ApiErrorKind::NotFound);
                assert_eq!(error.message, "no content 0707…");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn without_a_daemon_the_error_says_so() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            ApiClient::connect(dir.path()),
            Err(ClientError::NoDaemon {
                nothing_answers: None,
                ..
            })
        ));
        // An address left behind that nothing listens on any more.
        create_token(dir.path()).unwrap();
        let listener = within(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        write_api_addr(dir.path(), addr).unwrap();
        let client = ApiClient::connect(dir.path()).unwrap();
        match within(client.status()).await {
            Err(ClientError::NoDaemon {
                data_dir,
                nothing_answers: Some(left),
            }) => {
                assert_eq!(data_dir, dir.path());
                assert_eq!(left.addr, addr);
            }
            other => panic!("{other:?}"),
        }
    }
}
