//! Which headers of an unwrapped push are the message's attributes.
//!
//! In the unwrapped form (`noWrapper`) every attribute arrives as a plain header, beside the
//! headers of HTTP, of Pub/Sub, of Cloud Run's front end and of any proxy on the way. The
//! rule, so that a credential never becomes data (a row, an object, a log line):
//!
//! 1. Headers that HTTP and Google's front ends add (`host`, `x-goog-*`, `x-forwarded-*`, …)
//!    are not attributes.
//! 2. Headers that are credentials by name (`authorization`, `cookie`, `x-api-key`, …) are
//!    never attributes.
//! 3. A header whose name *looks like* a credential — one of its words (split at `-`, `_` and
//!    `.`) is `token`, `key`, `secret`, `auth`, `session`, `cookie`, `password`, … or holds
//!    `token`, `secret`, `passw`, `credential`, `apikey`, `cookie`, `session` or `jwt` — is
//!    withheld too, and counted, unless the operator keeps it by name (`--keep-header`):
//!    `X-Auth-Token`, `Api-Key`, `X-Amz-Security-Token`, `Private-Token`, but also an innocent
//!    `Idempotency-Key`, which is why the rule can be relaxed one name at a time, and says
//!    which names it withheld.
//! 4. Every other header is an attribute.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::HeaderMap;

use super::{EnvelopeError, invalid};

/// Headers that HTTP, Google's front end or landfall itself add: never message attributes.
const TRANSPORT_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "connection",
    "content-length",
    "content-type",
    "expect",
    "forwarded",
    "from",
    "host",
    "te",
    "traceparent",
    "tracestate",
    "transfer-encoding",
    "user-agent",
    "via",
];

/// Headers that carry credentials: never an attribute, so never in a row, an object or a log,
/// whatever the operator keeps.
pub const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "proxy-authorization",
    "set-cookie",
    "x-api-key",
    "x-serverless-authorization",
];

/// What Google's front end, Cloud Run and proxies add (`x-goog-iap-jwt-assertion`,
/// `x-cloud-trace-context`, `x-forwarded-for`, …).
const TRANSPORT_PREFIXES: &[&str] = &[
    "x-goog-",
    "x-google-",
    "x-cloud-",
    "x-forwarded-",
    "x-envoy-",
    "x-appengine-",
];

/// Words of a header name that make it look like a credential.
const CREDENTIAL_WORDS: &[&str] = &[
    "assertion",
    "auth",
    "authentication",
    "authn",
    "authorization",
    "authz",
    "bearer",
    "cookie",
    "cookies",
    "credential",
    "credentials",
    "creds",
    "csrf",
    "jwt",
    "key",
    "keys",
    "oauth",
    "otp",
    "passwd",
    "password",
    "pwd",
    "secret",
    "secrets",
    "session",
    "sid",
    "signature",
    "token",
    "tokens",
    "xsrf",
];

/// Parts of a word that make a header name look like a credential (`x-authtoken`, `apikey`).
const CREDENTIAL_FRAGMENTS: &[&str] = &[
    "apikey",
    "cookie",
    "credential",
    "jwt",
    "passw",
    "secret",
    "session",
    "token",
];

/// What becomes of an unwrapped push's headers: the rule above, with the names the operator
/// keeps although they look like credentials (`--keep-header`, lower case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderPolicy {
    pub keep: BTreeSet<String>,
}

/// What one header is to the unwrapped form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Attribute,
    /// Transport, or a credential by name: not an attribute, nothing to report.
    NotAttribute,
    /// Looks like a credential: not an attribute, and reported.
    Withheld,
}

impl HeaderPolicy {
    pub fn new(keep: impl IntoIterator<Item = String>) -> Self {
        Self {
            keep: keep.into_iter().map(|n| n.to_ascii_lowercase()).collect(),
        }
    }

    fn kind(&self, name: &str) -> Kind {
        let transport = TRANSPORT_HEADERS.contains(&name)
            || TRANSPORT_PREFIXES.iter().any(|p| name.starts_with(p));
        if transport || CREDENTIAL_HEADERS.contains(&name) {
            Kind::NotAttribute
        } else if looks_like_a_credential(name) && !self.keep.contains(name) {
            Kind::Withheld
        } else {
            Kind::Attribute
        }
    }

    /// The attributes an unwrapped push's headers carry.
    pub(super) fn attributes(
        &self,
        headers: &HeaderMap,
    ) -> Result<BTreeMap<String, String>, EnvelopeError> {
        headers
            .iter()
            .filter(|(name, _)| self.kind(name.as_str()) == Kind::Attribute)
            .map(|(name, value)| {
                let value = value.to_str().map_err(|_| {
                    invalid(
                        &format!("header {name}"),
                        "is not text (visible ASCII)".into(),
                    )
                })?;
                Ok((name.to_string(), value.to_string()))
            })
            .collect()
    }

    /// The names of the headers withheld from the attributes because they look like
    /// credentials (never their values).
    pub fn withheld<'h>(&self, headers: &'h HeaderMap) -> Vec<&'h str> {
        let mut names: Vec<&str> = headers
            .keys()
            .map(|n| n.as_str())
            .filter(|n| self.kind(n) == Kind::Withheld)
            .collect();
        names.dedup();
        names
    }
}

fn looks_like_a_credential(name: &str) -> bool {
    name.split(['-', '_', '.']).any(|word| {
        CREDENTIAL_WORDS.contains(&word) || CREDENTIAL_FRAGMENTS.iter().any(|f| word.contains(f))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(names: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for name in names {
            headers.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("value"),
            );
        }
        headers
    }

    #[test]
    fn names_that_look_like_credentials_are_withheld_and_reported() {
        let looks = [
            "x-auth-token",
            "api-key",
            "x-access-token",
            "x-amz-security-token",
            "private-token",
            "x-upstream-authorization",
            "x-csrf-token",
            "x-session-id",
            "x-apikey",
            "x-authtoken",
            "client-secret",
            "x-db-password",
            "x-jwt",
            "idempotency-key",
        ];
        let policy = HeaderPolicy::default();
        let all = headers(&looks);
        assert_eq!(policy.attributes(&all).unwrap(), BTreeMap::new());
        let mut withheld = policy.withheld(&all);
        withheld.sort();
        let mut expected = looks.to_vec();
        expected.sort();
        assert_eq!(withheld, expected);
    }

    #[test]
    fn other_names_are_attributes_and_transport_or_known_credentials_are_neither() {
        let policy = HeaderPolicy::default();
        let attributes = [
            "source",
            "event-type",
            "x-author",
            "monkey",
            "keyboard",
            "x-tenant",
        ];
        let others = [
            "authorization",
            "x-serverless-authorization",
            "cookie",
            "host",
            "x-goog-pubsub-message-id",
            "x-forwarded-for",
            "traceparent",
        ];
        let all = headers(&[&attributes[..], &others[..]].concat());
        let kept: Vec<String> = policy.attributes(&all).unwrap().into_keys().collect();
        let mut expected: Vec<String> = attributes.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(kept, expected);
        assert!(policy.withheld(&all).is_empty(), "nothing to report");
    }

    #[test]
    fn the_operator_keeps_a_name_but_never_a_credential_header() {
        let policy =
            HeaderPolicy::new(["Idempotency-Key".to_string(), "authorization".to_string()]);
        let all = headers(&["idempotency-key", "authorization", "x-auth-token"]);
        let kept: Vec<String> = policy.attributes(&all).unwrap().into_keys().collect();
        assert_eq!(kept, ["idempotency-key"]);
        assert_eq!(policy.withheld(&all), ["x-auth-token"]);
    }
}
