//! A loopback stand-in for a cloud API. Each request is checked the way the
//! cloud checks it — the signature is recomputed here from what arrived, with
//! an implementation separate from purser's — and then routed by a key (the
//! action, or method and path) to a scripted answer. Anything unexpected is
//! recorded, and every test ends by asserting there was nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    /// The raw query string, as sent.
    pub query: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// Decoded query parameters.
    pub fn param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (decode(k) == name).then(|| decode(v))
        })
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
    /// Never answer (the client's timeout must fire).
    pub hang: bool,
    /// Drop the connection mid-answer: the headers go, the body never does.
    pub reset: bool,
}

pub fn ok(body: impl Into<String>) -> Canned {
    reply(200, body)
}

pub fn reply(status: u16, body: impl Into<String>) -> Canned {
    Canned {
        status,
        body: body.into(),
        headers: vec![],
        hang: false,
        reset: false,
    }
}

pub fn hang() -> Canned {
    Canned {
        hang: true,
        ..ok("")
    }
}

/// The connection drops before the answer's body arrives.
pub fn reset() -> Canned {
    Canned {
        reset: true,
        ..ok("")
    }
}

type Responder = Box<dyn Fn(&Req, usize) -> Canned + Send + Sync>;
/// Checks a request's signature and freshness; `Err` is what the cloud would answer.
pub type Verifier = Box<dyn Fn(&Req, DateTime<Utc>) -> Result<(), Canned> + Send + Sync>;
pub type Keyer = Box<dyn Fn(&Req) -> String + Send + Sync>;

struct Inner {
    routes: Mutex<HashMap<String, Responder>>,
    counts: Mutex<HashMap<String, usize>>,
    problems: Mutex<Vec<String>>,
    seen: Mutex<Vec<Req>>,
    verify: Verifier,
    key: Keyer,
    /// The server's clock; requests are checked for skew against it.
    now: Mutex<DateTime<Utc>>,
    hits: AtomicUsize,
}

#[derive(Clone)]
pub struct Mock {
    pub url: String,
    inner: Arc<Inner>,
}

impl Mock {
    pub async fn start(now: DateTime<Utc>, key: Keyer, verify: Verifier) -> Mock {
        let inner = Arc::new(Inner {
            routes: Mutex::new(HashMap::new()),
            counts: Mutex::new(HashMap::new()),
            problems: Mutex::new(vec![]),
            seen: Mutex::new(vec![]),
            verify,
            key,
            now: Mutex::new(now),
            hits: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Mock {
            url: format!("http://{addr}/"),
            inner,
        }
    }

    /// Answers requests with this key; `n` counts them from 0.
    pub fn on(&self, key: &str, f: impl Fn(&Req, usize) -> Canned + Send + Sync + 'static) {
        self.inner
            .routes
            .lock()
            .unwrap()
            .insert(key.to_owned(), Box::new(f));
    }

    /// Always the same answer.
    pub fn always(&self, key: &str, canned: Canned) {
        self.on(key, move |_, _| canned.clone());
    }

    pub fn set_now(&self, now: DateTime<Utc>) {
        *self.inner.now.lock().unwrap() = now;
    }

    pub fn count(&self, key: &str) -> usize {
        self.inner
            .counts
            .lock()
            .unwrap()
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    pub fn hits(&self) -> usize {
        self.inner.hits.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Req> {
        self.inner.seen.lock().unwrap().clone()
    }

    pub fn problems(&self) -> Vec<String> {
        self.inner.problems.lock().unwrap().clone()
    }

    /// Every request was signed correctly and expected.
    pub fn assert_clean(&self) {
        let p = self.problems();
        assert!(p.is_empty(), "the mock saw problems: {p:#?}");
    }
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    inner.hits.fetch_add(1, Ordering::SeqCst);
    let req = Req {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or("").to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().unwrap_or("").to_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    inner.seen.lock().unwrap().push(req.clone());
    let now = *inner.now.lock().unwrap();
    let key = (inner.key)(&req);
    let canned = match (inner.verify)(&req, now) {
        Err(refusal) => {
            inner
                .problems
                .lock()
                .unwrap()
                .push(format!("{key}: refused: {}", refusal.body));
            refusal
        }
        Ok(()) => {
            let n = {
                let mut counts = inner.counts.lock().unwrap();
                let c = counts.entry(key.clone()).or_insert(0);
                *c += 1;
                *c - 1
            };
            let routes = inner.routes.lock().unwrap();
            match routes.get(&key) {
                Some(f) => f(&req, n),
                None => {
                    inner
                        .problems
                        .lock()
                        .unwrap()
                        .push(format!("unexpected request {key}"));
                    reply(404, "{}")
                }
            }
        }
    };
    if canned.hang {
        std::future::pending::<()>().await;
    }
    if canned.reset {
        let broken = futures_util::stream::once(async {
            Err::<Bytes, _>(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset",
            ))
        });
        return (StatusCode::OK, axum::body::Body::from_stream(broken)).into_response();
    }
    let mut resp = (
        StatusCode::from_u16(canned.status).unwrap(),
        canned.body.clone(),
    )
        .into_response();
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    for (k, v) in &canned.headers {
        resp.headers_mut().insert(*k, v.parse().unwrap());
    }
    resp
}

/// Records a problem on behalf of a test's own check, e.g. a missing parameter.
pub fn expect(cond: bool, what: &str) -> Result<(), Canned> {
    if cond {
        Ok(())
    } else {
        Err(reply(400, format!("expectation failed: {what}")))
    }
}

// ---------------------------------------------------------------- independent signature checks

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// `Name k=v, k=v` or `Name k=v,k=v` → (name, fields).
fn auth_fields(header: &str) -> Option<(String, HashMap<String, String>)> {
    let (scheme, rest) = header.split_once(' ')?;
    let fields = rest
        .split(',')
        .filter_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect();
    Some((scheme.to_owned(), fields))
}

/// Re-sorts and re-encodes the query as it arrived (the canonical form).
fn canonical_query_of(raw: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, KEEP).to_string();
    let mut pairs: Vec<(String, String)> = raw
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (enc(&decode(k)), enc(&decode(v)))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn signed_lines(req: &Req, names: &str) -> String {
    names
        .split(';')
        .map(|n| format!("{n}:{}\n", req.header(n).trim()))
        .collect()
}

fn skew_ok(at: DateTime<Utc>, now: DateTime<Utc>, minutes: i64) -> bool {
    (at - now).num_minutes().abs() < minutes
}

/// Tencent TC3: `Response.Error` bodies, as the API answers a bad request.
pub fn tc3(secret_id: &'static str, secret_key: &'static str) -> Verifier {
    let refuse = |code: &str, msg: &str| {
        ok(format!(
            r#"{{"Response":{{"Error":{{"Code":"{code}","Message":"{msg}"}},"RequestId":"mock"}}}}"#
        ))
    };
    Box::new(move |req, now| {
        let (scheme, f) = auth_fields(req.header("authorization"))
            .ok_or_else(|| refuse("AuthFailure.InvalidAuthorization", "no Authorization"))?;
        let cred = f.get("Credential").cloned().unwrap_or_default();
        let parts: Vec<&str> = cred.split('/').collect();
        if scheme != "TC3-HMAC-SHA256" || parts.len() != 4 || parts[3] != "tc3_request" {
            return Err(refuse(
                "AuthFailure.InvalidAuthorization",
                "bad Authorization",
            ));
        }
        if parts[0] != secret_id {
            return Err(refuse(
                "AuthFailure.SecretIdNotFound",
                "The SecretId is not found",
            ));
        }
        let ts: i64 = req.header("x-tc-timestamp").parse().unwrap_or(0);
        let at = DateTime::from_timestamp(ts, 0).unwrap_or_default();
        if !skew_ok(at, now, 5) {
            return Err(refuse("AuthFailure.SignatureExpire", "Signature expired"));
        }
        let date = at.format("%Y-%m-%d").to_string();
        if parts[1] != date {
            return Err(refuse("AuthFailure.SignatureFailure", "credential date"));
        }
        let names = f.get("SignedHeaders").cloned().unwrap_or_default();
        let mut lines = String::new();
        for n in names.split(';') {
            let v = req.header(n).trim();
            let v = if n == "x-tc-action" {
                v.to_ascii_lowercase()
            } else {
                v.to_owned()
            };
            lines.push_str(&format!("{n}:{v}\n"));
        }
        let canonical = format!(
            "{}\n/\n{}\n{lines}\n{names}\n{}",
            req.method,
            req.query,
            sha_hex(&req.body)
        );
        let service = parts[2];
        let sts = format!(
            "TC3-HMAC-SHA256\n{ts}\n{date}/{service}/tc3_request\n{}",
            sha_hex(canonical.as_bytes())
        );
        let k = hmac(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
        let k = hmac(&k, service.as_bytes());
        let k = hmac(&k, b"tc3_request");
        if f.get("Signature").map(String::as_str) != Some(&hex::encode(hmac(&k, sts.as_bytes()))) {
            return Err(refuse(
                "AuthFailure.SignatureFailure",
                "The provided credentials could not be validated",
            ));
        }
        Ok(())
    })
}

/// Alibaba ACS3: the gateway's error envelope.
pub fn acs3(key_id: &'static str, secret: &'static str) -> Verifier {
    let refuse = |status: u16, code: &str, msg: &str| {
        reply(
            status,
            serde_json::json!({"RequestId": "mock", "HostId": "business.aliyuncs.com", "Code": code, "Message": msg})
                .to_string(),
        )
    };
    Box::new(move |req, now| {
        let (scheme, f) = auth_fields(req.header("authorization"))
            .ok_or_else(|| refuse(400, "IncompleteSignature", "no Authorization"))?;
        if scheme != "ACS3-HMAC-SHA256" {
            return Err(refuse(400, "IncompleteSignature", "scheme"));
        }
        if f.get("Credential").map(String::as_str) != Some(key_id) {
            return Err(refuse(
                404,
                "InvalidAccessKeyId.NotFound",
                "Specified access key is not found.",
            ));
        }
        let at = NaiveDateTime::parse_from_str(req.header("x-acs-date"), "%Y-%m-%dT%H:%M:%SZ")
            .map(|n| n.and_utc())
            .map_err(|_| refuse(400, "InvalidTimeStamp.Format", "x-acs-date"))?;
        if !skew_ok(at, now, 15) {
            return Err(refuse(
                400,
                "InvalidTimeStamp.Expired",
                "Specified time stamp or date value is expired.",
            ));
        }
        if req.header("x-acs-content-sha256") != sha_hex(&req.body) {
            return Err(refuse(400, "SignatureDoesNotMatch", "content hash"));
        }
        let names = f.get("SignedHeaders").cloned().unwrap_or_default();
        for required in [
            "host",
            "x-acs-action",
            "x-acs-version",
            "x-acs-date",
            "x-acs-signature-nonce",
            "x-acs-content-sha256",
        ] {
            if !names.split(';').any(|n| n == required) {
                return Err(refuse(400, "IncompleteSignature", required));
            }
        }
        let canonical = format!(
            "{}\n{}\n{}\n{}\n{names}\n{}",
            req.method,
            req.path,
            canonical_query_of(&req.query),
            signed_lines(req, &names),
            sha_hex(&req.body)
        );
        let sts = format!("ACS3-HMAC-SHA256\n{}", sha_hex(canonical.as_bytes()));
        if f.get("Signature").map(String::as_str)
            != Some(&hex::encode(hmac(secret.as_bytes(), sts.as_bytes())))
        {
            return Err(refuse(
                400,
                "SignatureDoesNotMatch",
                &format!(
                    "Specified signature is not matched with our calculation. server string to sign is:{sts}"
                ),
            ));
        }
        Ok(())
    })
}

/// Huawei SDK-HMAC-SHA256: API Gateway's 401, echoing the canonical request
/// and the AK as the real one does.
pub fn sdk_hmac(ak: &'static str, sk: &'static str) -> Verifier {
    let refuse = |msg: &str| {
        reply(
            401,
            serde_json::json!({"error_code": "APIGW.0301",
                "error_msg": format!("Incorrect IAM authentication information: {msg}"), "request_id": "mock"})
            .to_string(),
        )
    };
    Box::new(move |req, now| {
        let (scheme, f) =
            auth_fields(req.header("authorization")).ok_or_else(|| refuse("no Authorization"))?;
        if scheme != "SDK-HMAC-SHA256" || f.get("Access").map(String::as_str) != Some(ak) {
            return Err(refuse("ak not found"));
        }
        let date = req.header("x-sdk-date");
        let at = NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ")
            .map(|n| n.and_utc())
            .map_err(|_| refuse("x-sdk-date"))?;
        if !skew_ok(at, now, 15) {
            return Err(refuse("the request has expired"));
        }
        let names = f.get("SignedHeaders").cloned().unwrap_or_default();
        let path = if req.path.ends_with('/') {
            req.path.clone()
        } else {
            format!("{}/", req.path)
        };
        let canonical = format!(
            "{}\n{path}\n{}\n{}\n{names}\n{}",
            req.method,
            canonical_query_of(&req.query),
            signed_lines(req, &names),
            sha_hex(&req.body)
        );
        let sts = format!("SDK-HMAC-SHA256\n{date}\n{}", sha_hex(canonical.as_bytes()));
        if f.get("Signature").map(String::as_str)
            != Some(&hex::encode(hmac(sk.as_bytes(), sts.as_bytes())))
        {
            let echoed = canonical.replace('\n', "|");
            return Err(refuse(&format!(
                "verify aksk signature fail, canonicalRequest: {echoed} Access={ak}"
            )));
        }
        Ok(())
    })
}

pub fn by_header(name: &'static str) -> Keyer {
    Box::new(move |req| req.header(name).to_owned())
}

/// `METHOD /path`; an order's details, whose path names the order, are
/// keyed as `GET /v2/orders/customer-orders/details/{order_id}`.
pub fn by_route() -> Keyer {
    Box::new(|req| {
        if req.path.starts_with("/v2/orders/customer-orders/details/") {
            return format!("{} {DETAILS}", req.method);
        }
        format!("{} {}", req.method, req.path)
    })
}

pub const DETAILS: &str = "/v2/orders/customer-orders/details/{order_id}";
