//! HTTP transport: timeouts, error envelopes and bounded, jittered retries.
//!
//! A request is described by a [`Prepared`] value that a caller-supplied closure builds afresh
//! for every attempt (a retried request needs a new nonce and timestamp). Only throttling,
//! 5xx and network failures are retried, at most `max_attempts` times in total; a throttled
//! answer's `x-acs-retry-after` (milliseconds, as Alibaba's SDKs read it) is honoured when it
//! is not longer than `max_retry_after`, otherwise the error is returned for the caller to
//! reschedule. Nothing here logs headers or bodies, so no secret can leak through it: a network
//! failure is described without the request URL (which, signed with V2, holds the
//! SecurityToken, AccessKeyId and Signature), an error body has every credential value the
//! request carried scrubbed out, and a [`Prepared`] request prints only its method, host and
//! path. The `Date` of the latest answer gives [`Transport::cloud_now`], the cloud's clock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use url::Url;

use super::error::{CloudDetail, CloudError};

/// Transport settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub connect_timeout: Duration,
    /// Whole-request timeout for cloud APIs.
    pub request_timeout: Duration,
    /// Total attempts per call, including the first.
    pub max_attempts: u32,
    /// First backoff; doubles per attempt, jittered to 50–100 %.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// The longest `x-acs-retry-after` we wait out inline.
    pub max_retry_after: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            max_attempts: 3,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

/// A fully built request, signed if it needs to be. Its `Debug` shows the method, host and
/// path only: the query, headers and body hold the signature and credentials.
#[derive(Clone)]
pub struct Prepared {
    pub method: reqwest::Method,
    pub url: Url,
    /// Headers besides `Host` (which follows from the URL).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Overrides the transport's request timeout (the metadata service uses 1 s).
    pub timeout: Option<Duration>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Prepared")
            .field("method", &self.method)
            .field(
                "url",
                &format!(
                    "{}://{}{}",
                    self.url.scheme(),
                    super::endpoints::host_header(&self.url),
                    self.url.path()
                ),
            )
            .field("headers", &headers)
            .field("body_bytes", &self.body.len())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A successful (2xx) answer. Its `Debug` shows the body's length only: it holds tokens and
/// credentials.
#[derive(Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("status", &self.status)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// Reads the cloud's JSON error envelope (`Code`/`code`, `Message`/`message`, `RequestId`/`requestId`).
pub fn error_from_answer(
    api: &'static str,
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
) -> CloudError {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
    let field = |upper: &str, lower: &str| {
        json.get(upper)
            .or_else(|| json.get(lower))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let code = field("Code", "code").unwrap_or_else(|| format!("HTTP{status}"));
    let message = field("Message", "message").unwrap_or_else(|| {
        String::from_utf8_lossy(body)
            .chars()
            .take(200)
            .collect::<String>()
    });
    let message = safe_message(&message);
    let retry_after = retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis);
    let detail = CloudDetail {
        api,
        status,
        code,
        message,
        request_id: field("RequestId", "requestId"),
    };
    CloudError::from_answer(detail, retry_after)
}

/// Cuts a cloud message to its first line and drops an echoed string to sign or canonical
/// request: they contain every parameter or header, including the SecurityToken, so they
/// must never reach a status, an Event or a log line.
pub fn safe_message(message: &str) -> String {
    let first = message.lines().next().unwrap_or_default();
    let lower = first.to_ascii_lowercase();
    let echo = ["string to sign", "canonical request"]
        .iter()
        .filter_map(|m| lower.find(m))
        .min();
    let cut = echo.map_or(first.len(), |i| {
        // Also drop a preceding "server " and trailing separators.
        let head = &first[..i];
        head.strip_suffix("server ").unwrap_or(head).len()
    });
    first[..cut]
        .trim_end_matches([' ', ':', ',', '.'])
        .chars()
        .take(500)
        .collect()
}

/// Request parameters whose values are secret or replayable: an error may not repeat them.
const SECRET_PARAMS: [&str; 4] = ["SecurityToken", "Signature", "OIDCToken", "AccessKeyId"];

/// The credential values a request carries (SecurityToken, Signature, OIDCToken and AccessKeyId
/// in the query or form body; the security token, key id and signature in headers): an error
/// body may echo them in a wording [`safe_message`] does not know.
fn sent_secrets(req: &Prepared) -> Vec<String> {
    let mut out: Vec<String> = req
        .url
        .query_pairs()
        .chain(url::form_urlencoded::parse(&req.body))
        .filter(|(k, _)| SECRET_PARAMS.contains(&k.as_ref()))
        .map(|(_, v)| v.into_owned())
        .collect();
    for (k, v) in &req.headers {
        let name = k.to_ascii_lowercase();
        if name == "x-acs-security-token" || name == "x-acs-accesskey-id" {
            out.push(v.clone());
        } else if name == "authorization" {
            out.extend(authorization_secrets(v));
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// The key id and signature of an `Authorization` header: V3
/// (`ACS3-HMAC-SHA256 Credential=ID,SignedHeaders=..,Signature=SIG`) or ROA (`acs ID:SIG`).
fn authorization_secrets(value: &str) -> Vec<String> {
    let field = |name: &str| {
        value
            .split([',', ' '])
            .find_map(|f| f.strip_prefix(name))
            .map(str::to_string)
    };
    match (field("Credential="), field("Signature=")) {
        (None, None) => value
            .strip_prefix("acs ")
            .and_then(|rest| rest.split_once(':'))
            .map(|(id, sig)| vec![id.to_string(), sig.to_string()])
            .unwrap_or_default(),
        (id, sig) => id.into_iter().chain(sig).collect(),
    }
}

/// `body` with every value of `secrets` replaced by `<redacted>`: as sent, percent-encoded and
/// JSON-escaped.
pub fn scrub(body: &[u8], secrets: &[String]) -> Vec<u8> {
    if secrets.is_empty() {
        return body.to_vec();
    }
    scrub_text(&String::from_utf8_lossy(body), secrets).into_bytes()
}

/// `text` with every value of `secrets` replaced by `<redacted>` (see [`scrub`]).
pub fn scrub_text(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_owned();
    for secret in secrets {
        for form in [
            secret.clone(),
            super::percent::encode(secret),
            secret.replace('/', "\\/"),
        ] {
            text = text.replace(&form, "<redacted>");
        }
    }
    text
}

/// How long to wait before attempt `attempt + 1` after `err`, or `None` to give up.
/// `jitter` is a random number in `[0, 1)`.
pub fn retry_delay(
    config: &HttpConfig,
    attempt: u32,
    err: &CloudError,
    jitter: f64,
) -> Option<Duration> {
    if attempt >= config.max_attempts || !err.is_retryable() {
        return None;
    }
    if let CloudError::Throttled {
        retry_after: Some(after),
        ..
    } = err
    {
        return (*after <= config.max_retry_after).then_some(*after);
    }
    let exp = config
        .base_backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let capped = exp.min(config.max_backoff);
    Some(capped.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0)))
}

/// The HTTP client shared by every cloud call.
#[derive(Debug, Clone)]
pub struct Transport {
    client: reqwest::Client,
    config: HttpConfig,
    /// The `Date` of the latest answer and when it arrived (shared by clones).
    cloud_time: Arc<Mutex<Option<(jiff::Timestamp, Instant)>>>,
}

impl Transport {
    pub fn new(config: HttpConfig) -> Result<Self, CloudError> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "acr-credential-controller/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| CloudError::Config {
                message: format!("HTTP client: {e}"),
            })?;
        Ok(Self {
            client,
            config,
            cloud_time: Arc::default(),
        })
    }

    /// The cloud's current time as its latest answer's `Date` header tells (whole seconds,
    /// rounded down), advanced by the monotonic time since; `None` before any dated answer.
    pub fn cloud_now(&self) -> Option<jiff::Timestamp> {
        let (date, at) = (*self.cloud_time.lock().ok()?)?;
        let elapsed = jiff::SignedDuration::try_from(at.elapsed()).ok()?;
        date.checked_add(elapsed).ok()
    }

    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// Sends one request; non-2xx answers become errors.
    pub async fn send_once(&self, api: &'static str, req: Prepared) -> Result<Answer, CloudError> {
        let started = std::time::Instant::now();
        let result = self.send_uncounted(api, req).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.reason(),
        };
        crate::metrics::cloud_request(api, outcome, started.elapsed());
        result
    }

    async fn send_uncounted(&self, api: &'static str, req: Prepared) -> Result<Answer, CloudError> {
        let host = super::endpoints::host_header(&req.url);
        let sent = sent_secrets(&req);
        let timeout = req.timeout.unwrap_or(self.config.request_timeout);
        let mut builder = self
            .client
            .request(req.method, req.url)
            .timeout(timeout)
            .body(req.body);
        for (k, v) in &req.headers {
            builder = builder.header(k, v);
        }
        // reqwest's errors name the URL; the message is built without it, and scrubbed of
        // anything the request carried in case a lower layer repeats it.
        let classify = |e: reqwest::Error| {
            if e.is_timeout() {
                CloudError::Timeout {
                    api,
                    host: host.clone(),
                    timeout,
                }
            } else {
                CloudError::Network {
                    api,
                    host: host.clone(),
                    message: scrub_text(&error_chain(&e.without_url()), &sent),
                }
            }
        };
        let response = builder.send().await.map_err(classify)?;
        let status = response.status().as_u16();
        let date = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(super::sign::roa::parse_http_date);
        if let (Some(date), Ok(mut latest)) = (date, self.cloud_time.lock()) {
            *latest = Some((date, Instant::now()));
        }
        let retry_after = response
            .headers()
            .get("x-acs-retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.bytes().await.map_err(classify)?.to_vec();
        if (200..300).contains(&status) {
            Ok(Answer { status, body })
        } else {
            Err(error_from_answer(
                api,
                status,
                retry_after.as_deref(),
                &scrub(&body, &sent),
            ))
        }
    }

    /// Sends a request built by `build`, retrying within the configured bounds.
    pub async fn call<F>(&self, api: &'static str, mut build: F) -> Result<Answer, CloudError>
    where
        F: FnMut() -> Result<Prepared, CloudError>,
    {
        let mut attempt = 1;
        let started = std::time::Instant::now();
        loop {
            let result = self.send_once(api, build()?).await;
            match result {
                Ok(answer) => {
                    tracing::debug!(api, attempt, status = answer.status, elapsed = ?started.elapsed(), "cloud call succeeded");
                    return Ok(answer);
                }
                Err(err) => {
                    let Some(delay) =
                        retry_delay(&self.config, attempt, &err, rand::random::<f64>())
                    else {
                        return Err(err);
                    };
                    tracing::debug!(
                        api,
                        attempt,
                        reason = err.reason(),
                        code = err.code(),
                        ?delay,
                        "retrying cloud call"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echoed_security_token_is_scrubbed_in_every_form() {
        let token = "CAIS+tok/en=";
        let req = Prepared {
            method: reqwest::Method::POST,
            url: Url::parse("http://x/?SecurityToken=CAIS%2Btok%2Fen%3D&Action=A").unwrap(),
            headers: vec![("x-acs-security-token".into(), "CAIShead".into())],
            body: Vec::new(),
            timeout: None,
        };
        let sent = sent_secrets(&req);
        assert_eq!(sent, vec![token.to_owned(), "CAIShead".to_owned()]);
        let body = br#"{"Code":"InvalidSecurityToken.Malformed","Message":"bad: CAIS+tok/en= CAIS%2Btok%2Fen%3D CAIS+tok\/en= CAIShead","RequestId":"R"}"#;
        let err = error_from_answer("cr:GetAuthorizationToken", 400, None, &scrub(body, &sent));
        let text = err.to_string();
        assert!(
            !text.contains("CAIS+") && !text.contains("CAIS%") && !text.contains("CAIShead"),
            "{text}"
        );
        assert_eq!(text.matches("<redacted>").count(), 4, "{text}");
    }

    #[test]
    fn echoed_signatures_key_ids_and_oidc_tokens_are_scrubbed() {
        let req = Prepared {
            method: reqwest::Method::POST,
            url: Url::parse(
                "http://x/?AccessKeyId=STS.keyid&Signature=sig%2Bnature%3D&SignatureNonce=n&Action=A",
            )
            .unwrap(),
            headers: vec![
                ("x-acs-accesskey-id".into(), "STS.headerid".into()),
                (
                    "authorization".into(),
                    "ACS3-HMAC-SHA256 Credential=STS.headerid,SignedHeaders=host,Signature=abc123def".into(),
                ),
            ],
            body: b"OIDCToken=eyJhb.eyJzd.sig&RoleArn=r".to_vec(),
            timeout: None,
        };
        let body = br#"{"Code":"InvalidParameter","Message":"echo AccessKeyId=STS.keyid Signature=sig+nature= OIDCToken=eyJhb.eyJzd.sig STS.headerid abc123def"}"#;
        let err = error_from_answer(
            "sts:AssumeRoleWithOIDC",
            400,
            None,
            &scrub(body, &sent_secrets(&req)),
        );
        let text = err.to_string();
        for secret in [
            "STS.keyid",
            "sig+nature=",
            "eyJhb",
            "STS.headerid",
            "abc123def",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("Signature=<redacted>"), "{text}");
    }

    #[test]
    fn a_prepared_request_debug_names_only_the_host_and_path() {
        let req = Prepared {
            method: reqwest::Method::POST,
            url: Url::parse("http://cr.example/?SecurityToken=CAIStok&Signature=s1g").unwrap(),
            headers: vec![("x-acs-security-token".into(), "CAIShead".into())],
            body: b"OIDCToken=eyJtok".to_vec(),
            timeout: None,
        };
        let text = format!("{req:?}");
        for secret in ["CAIStok", "s1g", "CAIShead", "eyJtok"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("cr.example"), "{text}");
        let answer = Answer {
            status: 200,
            body: br#"{"AuthorizationToken":"registrypassword"}"#.to_vec(),
        };
        let text = format!("{answer:?}");
        assert!(!text.contains("registrypassword"), "{text}");
    }

    fn throttled(after_ms: Option<u64>) -> CloudError {
        error_from_answer(
            "sts:AssumeRole",
            400,
            after_ms.map(|m| m.to_string()).as_deref(),
            br#"{"Code":"Throttling.User","Message":"Request was denied due to user flow control.","RequestId":"R"}"#,
        )
    }

    #[test]
    fn envelope_is_parsed_in_either_case() {
        let e = error_from_answer(
            "cr:GetAuthorizationToken",
            400,
            None,
            br#"{"RequestId":"A","HostId":"h","Code":"SignatureDoesNotMatch","Message":"Specified signature is not matched with our calculation.\nserver string to sign is: X","Recommend":"u"}"#,
        );
        assert_eq!(e.code(), Some("SignatureDoesNotMatch"));
        assert_eq!(e.request_id(), Some("A"));
        assert_eq!(
            e.detail().unwrap().message,
            "Specified signature is not matched with our calculation"
        );
        let echoed = error_from_answer(
            "x:y",
            400,
            None,
            br#"{"Code":"SignatureDoesNotMatch","Message":"Specified signature is not matched with our calculation. server string to sign is:POST&%2F&SecurityToken%3Dsecret"}"#,
        );
        assert_eq!(
            echoed.detail().unwrap().message,
            "Specified signature is not matched with our calculation"
        );
        let lower = error_from_answer(
            "x:y",
            404,
            None,
            br#"{"code":"NotFound","message":"gone","requestId":"B"}"#,
        );
        assert_eq!(lower.reason(), "NotFound");
        assert_eq!(lower.request_id(), Some("B"));
        let html = error_from_answer("x:y", 502, None, b"<html>bad gateway</html>");
        assert_eq!(html.code(), Some("HTTP502"));
        assert!(html.is_retryable());
    }

    #[test]
    fn throttling_honours_retry_after_within_bounds() {
        let cfg = HttpConfig::default();
        assert_eq!(
            retry_delay(&cfg, 1, &throttled(Some(1500)), 0.3),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(retry_delay(&cfg, 1, &throttled(Some(60_000)), 0.3), None);
        assert_eq!(retry_delay(&cfg, 3, &throttled(Some(10)), 0.3), None);
        let backoff = retry_delay(&cfg, 1, &throttled(None), 0.0).unwrap();
        assert_eq!(backoff, Duration::from_millis(100));
    }

    #[test]
    fn server_errors_back_off_exponentially_and_stop() {
        let cfg = HttpConfig {
            max_attempts: 5,
            ..HttpConfig::default()
        };
        let e = error_from_answer("x:y", 503, None, br#"{"Code":"ServiceUnavailable"}"#);
        assert_eq!(
            retry_delay(&cfg, 1, &e, 0.999_999).unwrap().as_millis(),
            199
        );
        assert_eq!(
            retry_delay(&cfg, 2, &e, 0.0).unwrap(),
            Duration::from_millis(200)
        );
        assert_eq!(
            retry_delay(&cfg, 4, &e, 0.0).unwrap(),
            Duration::from_millis(800)
        );
        assert_eq!(retry_delay(&cfg, 5, &e, 0.0), None);
    }

    #[test]
    fn client_errors_are_not_retried() {
        let cfg = HttpConfig::default();
        let e = error_from_answer("x:y", 400, None, br#"{"Code":"InvalidParameter"}"#);
        assert_eq!(retry_delay(&cfg, 1, &e, 0.5), None);
        let e = error_from_answer("x:y", 403, None, br#"{"Code":"NoPermission"}"#);
        assert_eq!(retry_delay(&cfg, 1, &e, 0.5), None);
    }
}
