//! A URL that may carry a secret. Partners put tokens in an http sink's query or user info
//! because their endpoint asks for them there; logs, the admin API and dead letters must never
//! show them. So the raw form is only reachable through `expose`, for the request itself, and
//! every way of printing the URL shows `scheme://host[:port]/path`.

use std::borrow::Cow;
use std::fmt;

use awc::http::Uri;

/// Pieces shorter than this are left in `scrub`bed text: a user `u` or `format=json` are no
/// secrets worth the name, and replacing them wherever they occur would garble the message.
const SHORTEST_SECRET: usize = 6;

#[derive(Clone)]
pub struct RedactedUrl {
    raw: String,
    /// Worked out once: it names the sink in every message and in its delivery-progress key.
    shown: String,
}

impl RedactedUrl {
    pub fn new(raw: impl Into<String>) -> RedactedUrl {
        let raw = raw.into();
        let shown = match raw.parse::<Uri>() {
            Ok(uri) => format!(
                "{}://{}{}{}",
                uri.scheme_str().unwrap_or("http"),
                uri.host().unwrap_or(""),
                uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default(),
                uri.path()
            ),
            Err(_) => "(unparsable url)".to_string(),
        };
        RedactedUrl { raw, shown }
    }

    /// The URL as configured, secrets included: only for making the request.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// `text` with this URL's secrets replaced by `[redacted]`, for text that may repeat the
    /// request: a receiver's error page, a client library's error message.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut secrets = self.secrets();
        // Longest first, so a secret that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let mut text = Cow::Borrowed(text);
        for secret in secrets {
            if text.contains(&secret) {
                text = Cow::Owned(text.replace(&secret, "[redacted]"));
            }
        }
        text
    }

    /// User name, password and query values; all of it if the URL cannot be parsed.
    fn secrets(&self) -> Vec<String> {
        let Ok(uri) = self.raw.parse::<Uri>() else {
            return vec![self.raw.clone()];
        };
        let authority = uri.authority().map_or("", |a| a.as_str());
        let user_info = authority
            .rsplit_once('@')
            .map_or("", |(user_info, _)| user_info);
        let query_values = uri
            .query()
            .unwrap_or("")
            .split('&')
            .map(|pair| pair.split_once('=').map_or(pair, |(_, value)| value));
        user_info
            .split(':')
            .chain(query_values)
            .filter(|piece| piece.len() >= SHORTEST_SECRET)
            .map(String::from)
            .collect()
    }
}

impl fmt::Display for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// The redacted form, quoted like a string: a struct that derives `Debug` shows it as its URL.
impl fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.shown, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &str = "https://user-x:pa55word@crm.example:8443/in/hook?v=2&token=s3cret-token";

    #[test]
    fn shows_neither_user_info_nor_query() {
        let url = RedactedUrl::new(RAW);
        assert_eq!(url.to_string(), "https://crm.example:8443/in/hook");
        assert_eq!(format!("{url:?}"), "\"https://crm.example:8443/in/hook\"");
        assert_eq!(format!("{url:#?}"), "\"https://crm.example:8443/in/hook\"");
        assert_eq!(url.expose(), RAW);
        assert_eq!(
            RedactedUrl::new("http://127.0.0.1/").to_string(),
            "http://127.0.0.1/"
        );
    }

    #[test]
    fn an_unparsable_url_shows_nothing_of_itself() {
        let url = RedactedUrl::new("http://exa mple/?token=s3cret-token");
        assert_eq!(url.to_string(), "(unparsable url)");
        assert_eq!(format!("{url:?}"), "\"(unparsable url)\"");
        assert_eq!(
            url.scrub("bad url http://exa mple/?token=s3cret-token"),
            "bad url [redacted]"
        );
    }

    #[test]
    fn scrubs_its_secrets_from_text_that_repeats_them() {
        let url = RedactedUrl::new(RAW);
        let echoed = "no access for user-x with pa55word to /in/hook?v=2&token=s3cret-token";
        assert_eq!(
            url.scrub(echoed),
            "no access for [redacted] with [redacted] to /in/hook?v=2&token=[redacted]"
        );
        let short = RedactedUrl::new("https://u:pw@crm.example/in?format=json");
        assert_eq!(short.scrub("unknown user u"), "unknown user u");
        assert!(matches!(url.scrub("404 Not Found"), Cow::Borrowed(_)));
    }
}
