//! Keeping passwords out of everything dbkeeper prints, logs, archives or formats with `Debug`.
//!
//! Connection URLs enter the program once, as [`SecretUrl`]; the only ways to see them are
//! [`SecretUrl::expose`] (for drivers) and the redacted forms. A redacted URL replaces the password
//! with `***`, wherever it sits: the userinfo of a URL (also multi-host MongoDB URLs, which the
//! `url` crate cannot parse), a `password=` query parameter, or a libpq `key=value` string.

use std::fmt;

/// A connection URL that may carry a password.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(url.into())
    }

    /// The full URL, for handing to a driver. Never print this.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }

    /// Every password-like secret in the URL, so callers can scrub text that came back from a
    /// driver or a child process (their messages sometimes echo the connection string).
    pub fn secrets(&self) -> Vec<String> {
        secrets_in(&self.0)
    }

    /// Removes this URL's secrets from an arbitrary message.
    pub fn scrub(&self, message: &str) -> String {
        let mut out = message.to_string();
        for secret in self.secrets() {
            if !secret.is_empty() {
                out = out.replace(&secret, "***");
            }
        }
        out
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({:?})", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

const MASK: &str = "***";

/// Redacts a URL (`scheme://user:pass@host/...?password=...`) or a libpq keyword string
/// (`host=h password=p`). Text that is neither is returned unchanged.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    for secret in secrets_in(url) {
        if !secret.is_empty() {
            out = replace_secret(&out, &secret);
        }
    }
    out
}

/// Replaces a secret only where it stands as a value, so a password equal to, say, the user name
/// does not mangle the rest of the URL more than needed.
fn replace_secret(text: &str, secret: &str) -> String {
    text.replace(&format!(":{secret}@"), &format!(":{MASK}@"))
        .replace(&format!("password={secret}"), &format!("password={MASK}"))
        .replace(
            &format!("password='{secret}'"),
            &format!("password='{MASK}'"),
        )
        .replace(
            &format!(":{}@", percent_decode(secret)),
            &format!(":{MASK}@"),
        )
}

fn secrets_in(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        // The authority ends at the first '/' or '?' after the last '@' of the userinfo; a
        // password may itself contain '/', so search for '@' first.
        let authority_end = rest.find(['?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            if let Some(colon) = userinfo.find(':') {
                found.push(userinfo[colon + 1..].to_string());
            }
        }
        if let Some(q) = rest.find('?') {
            for pair in rest[q + 1..].split(['&', ';']) {
                if let Some((key, value)) = pair.split_once('=') {
                    if is_secret_key(key) {
                        found.push(value.to_string());
                    }
                }
            }
        }
    } else {
        // libpq keyword/value form: `host=h password=secret dbname=x` (values may be quoted).
        for token in url.split_whitespace() {
            if let Some((key, value)) = token.split_once('=') {
                if is_secret_key(key.trim()) {
                    found.push(value.trim_matches('\'').to_string());
                }
            }
        }
    }
    found
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "password"
        || key == "pass"
        || key == "pwd"
        || key.ends_with("secret")
        || key == "sslpassword"
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo_password() {
        let url = SecretUrl::new("postgres://app:s3cr%2Ft@db.example:5432/prod?sslmode=require");
        assert_eq!(
            url.redacted(),
            "postgres://app:***@db.example:5432/prod?sslmode=require"
        );
        assert!(!format!("{url:?}").contains("s3cr"));
        assert!(!format!("{url}").contains("s3cr"));
    }

    #[test]
    fn redacts_multi_host_mongo_url_and_query_password() {
        let url = "mongodb://root:p@ss:w0rd@h1:27017,h2:27017/app?replicaSet=rs0";
        let red = redact_url(url);
        assert!(!red.contains("w0rd"), "{red}");
        assert!(red.contains("h1:27017,h2:27017/app"), "{red}");
        let url = "postgres://db/x?user=a&password=hunter2";
        assert_eq!(redact_url(url), "postgres://db/x?user=a&password=***");
    }

    #[test]
    fn redacts_libpq_keyword_form() {
        let red = redact_url("host=db user=app password=hunter2 dbname=x");
        assert_eq!(red, "host=db user=app password=*** dbname=x");
    }

    #[test]
    fn leaves_passwordless_urls_alone() {
        let url = "postgres://app@db:5432/prod";
        assert_eq!(redact_url(url), url);
        assert_eq!(
            redact_url("mongodb://127.0.0.1:27017"),
            "mongodb://127.0.0.1:27017"
        );
    }

    #[test]
    fn scrub_removes_secret_from_driver_messages() {
        let url = SecretUrl::new("postgres://app:hunter2@db/x");
        assert_eq!(url.scrub("auth failed for hunter2"), "auth failed for ***");
    }
}
