//! A failure said once, in landfall's words: what failed, then the cause's last useful link.
//!
//! Library errors repeat themselves: a client error embeds its cause in its own message and
//! also returns it as its source, so `{:#}` of an anyhow chain can say "Connection failure:
//! Hyper error: client error (Connect)" three times before the one fact that matters (a host
//! name that does not resolve). [`said`] keeps each piece of text once, and says the common
//! network causes plainly.

use std::error::Error;

/// The whole chain of `error`, each link once, the root cause in plain words.
pub fn said(error: &anyhow::Error) -> String {
    let links: Vec<&(dyn Error + 'static)> = error.chain().collect();
    let mut texts: Vec<String> = links.iter().map(|e| e.to_string()).collect();
    // Innermost first: an outer message that repeats an inner one loses the repetition.
    for inner in (1..texts.len()).rev() {
        let repeated = texts[inner].clone();
        for outer in texts.iter_mut().take(inner) {
            strip(outer, &repeated);
        }
    }
    if let Some(root) = root_cause(&links) {
        texts.push(root);
    }
    let mut said: Vec<String> = Vec::new();
    for text in texts {
        let text = text.trim().trim_end_matches(':').trim().to_string();
        if !text.is_empty() && !said.iter().any(|s| s.contains(&text)) {
            said.push(text);
        }
    }
    collapse(said)
}

/// Removes `repeated` from `outer` where it stands as a cause: `outer: repeated`,
/// `outer (repeated)`, `outer (error: repeated)`, or all of it.
fn strip(outer: &mut String, repeated: &str) {
    if repeated.is_empty() {
        return;
    }
    if outer == repeated {
        outer.clear();
        return;
    }
    for wrapped in [
        format!(" (error: {repeated})"),
        format!(" ({repeated})"),
        format!(": {repeated}"),
    ] {
        if let Some(at) = outer.find(&wrapped) {
            outer.replace_range(at..at + wrapped.len(), "");
            return;
        }
    }
}

/// The root cause, when it is one a reader should see in plain words.
fn root_cause(links: &[&(dyn Error + 'static)]) -> Option<String> {
    let host = links.iter().find_map(|e| {
        e.downcast_ref::<reqwest::Error>()
            .and_then(|r| r.url())
            .and_then(|u| {
                u.host_str().map(|h| match u.port() {
                    Some(port) => format!("{h}:{port}"),
                    None => h.to_string(),
                })
            })
    });
    let all: String = links
        .iter()
        .map(|e| e.to_string().to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(" | ");
    let io_kind = links
        .iter()
        .find_map(|e| e.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind);
    let what = if all.contains("dns error")
        || all.contains("failed to lookup address")
        || all.contains("name or service not known")
        || all.contains("no address associated")
    {
        "the host name does not resolve (DNS)"
    } else if io_kind == Some(std::io::ErrorKind::ConnectionRefused)
        || all.contains("connection refused")
    {
        "the connection was refused (nothing listens there)"
    } else if io_kind == Some(std::io::ErrorKind::ConnectionReset)
        || all.contains("connection reset")
    {
        "the connection was reset"
    } else if io_kind == Some(std::io::ErrorKind::TimedOut)
        || all.contains("timed out")
        || all.contains("deadline has elapsed")
    {
        "no answer in time"
    } else if all.contains("certificate") || all.contains("tls") {
        "the TLS handshake failed"
    } else {
        return None;
    };
    Some(match host {
        Some(host) => format!("cannot reach {host}: {what}"),
        None => what.to_string(),
    })
}

/// Joins what is said; where the plain root cause is said, the library's own words for the
/// same failure (between the last of landfall's and it) are dropped.
fn collapse(said: Vec<String>) -> String {
    let plain = said
        .last()
        .is_some_and(|l| PLAIN.iter().any(|p| l.ends_with(p)));
    if !plain || said.len() < 2 {
        return said.join(": ");
    }
    let root = said.last().cloned().unwrap_or_default();
    let ours: Vec<String> = said[..said.len() - 1]
        .iter()
        .filter(|s| !looks_like_a_library(s))
        .cloned()
        .collect();
    ours.into_iter()
        .chain([root])
        .collect::<Vec<_>>()
        .join(": ")
}

const PLAIN: &[&str] = &[
    "(DNS)",
    "(nothing listens there)",
    "the connection was reset",
    "no answer in time",
    "the TLS handshake failed",
];

/// Text that is a library's description of a connection failure, not landfall's.
fn looks_like_a_library(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    [
        "hyper",
        "client error",
        "error sending request",
        "connection failure",
        "tcp connect error",
        "dns error",
        "cannot connect to endpoint",
        "error trying to connect",
        "io error",
        "os error",
        "connection refused",
        "connection reset",
        "timed out",
        "deadline has elapsed",
    ]
    .iter()
    .any(|l| lower.contains(l))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error whose message repeats its source's, as client libraries do.
    #[derive(Debug)]
    struct Wrapping(String, Box<dyn Error + Send + Sync>);

    impl std::fmt::Display for Wrapping {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}", self.0)
        }
    }

    impl Error for Wrapping {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(self.1.as_ref())
        }
    }

    #[test]
    fn a_dns_failure_is_said_once_after_what_failed() {
        let dns = std::io::Error::other(
            "dns error: failed to lookup address information: Name or service not known",
        );
        let hyper = Wrapping("Hyper error: client error (Connect)".into(), Box::new(dns));
        let connection = Wrapping(
            "Connection failure: Hyper error: client error (Connect)".into(),
            Box::new(hyper),
        );
        let auth = Wrapping(
            "Authentication error (error: Connection failure: Hyper error: client error (Connect))"
                .into(),
            Box::new(connection),
        );
        let error = anyhow::Error::new(auth).context("failed to read dataset shop-data.raw");
        assert_eq!(
            said(&error),
            "failed to read dataset shop-data.raw: Authentication error: the host name does not resolve (DNS)"
        );
    }

    #[test]
    fn a_refused_connection_is_said_plainly_and_repetition_goes() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let send = Wrapping(
            "cannot connect to endpoint: error sending request for url (http://127.0.0.1:1/b)"
                .into(),
            Box::new(refused),
        );
        let error = anyhow::Error::new(send).context("failed to upload gs://b/o");
        assert_eq!(
            said(&error),
            "failed to upload gs://b/o: the connection was refused (nothing listens there)"
        );
    }

    #[test]
    fn what_is_not_a_network_failure_keeps_every_link_once() {
        let error = anyhow::anyhow!("disk I/O error")
            .context("failed to commit the batch")
            .context("warehouse");
        assert_eq!(
            said(&error),
            "warehouse: failed to commit the batch: disk I/O error"
        );
        let repeated = anyhow::anyhow!("locked").context("database is locked");
        assert_eq!(said(&repeated), "database is locked");
    }
}
