//! Declarative routing: the fast path from a request to a namespace and script when no dispatch
//! Worker is configured. Routes are tried in order; the first that matches wins.
//!
//! A route matches on host, path prefix and one header, all optional, and names its target script
//! directly or takes it from the request: the first label of the host (`alice.example.test` →
//! `alice`) or a header's value.

use tenantry_core::Request;

/// Which hosts a route matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Every host.
    Any,
    /// Exactly this host (lower case, port ignored).
    Exact(String),
    /// `*.suffix`: any host with at least one more label before `.suffix` (stored as `.suffix`).
    Wildcard(String),
}

impl HostPattern {
    /// Parses `*`, `*.example.com` or `example.com`.
    pub fn parse(s: &str) -> HostPattern {
        let s = s.to_ascii_lowercase();
        if s == "*" || s.is_empty() {
            HostPattern::Any
        } else if let Some(suffix) = s.strip_prefix('*') {
            HostPattern::Wildcard(suffix.to_string())
        } else {
            HostPattern::Exact(s)
        }
    }

    fn matches(&self, host: &[u8]) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Exact(h) => host.eq_ignore_ascii_case(h.as_bytes()),
            HostPattern::Wildcard(suffix) => {
                host.len() > suffix.len()
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
            }
        }
    }
}

/// Where the script name comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptSource {
    /// Always this script.
    Fixed(String),
    /// The host's first label: `alice.example.test` → `alice`.
    HostLabel,
    /// The value of this request header.
    Header(String),
}

/// One route: a match and a target.
#[derive(Debug, Clone)]
pub struct Route {
    pub host: HostPattern,
    pub path_prefix: Option<String>,
    /// `(name, value)`: the header must be present with exactly this value (name case-insensitive).
    pub header: Option<(String, String)>,
    pub namespace: String,
    pub script: ScriptSource,
}

/// The outcome of routing a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    pub namespace: &'a str,
    /// Borrowed from the route or the request.
    pub script: std::borrow::Cow<'a, str>,
}

/// An ordered list of routes.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Router {
        Router { routes }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The first route that matches `req`, with the script it selects. `None` when no route matches
    /// or the selected script name would be empty or not valid UTF-8.
    pub fn route<'a>(&'a self, req: &'a Request) -> Option<Target<'a>> {
        let host = strip_port(&req.host);
        let path = path_of(&req.target);
        for route in &self.routes {
            if !route.host.matches(host) {
                continue;
            }
            if let Some(prefix) = &route.path_prefix
                && !path.starts_with(prefix.as_bytes())
            {
                continue;
            }
            if let Some((name, value)) = &route.header {
                let found = req
                    .headers
                    .iter()
                    .any(|(n, v)| n.eq_ignore_ascii_case(name.as_bytes()) && v == value.as_bytes());
                if !found {
                    continue;
                }
            }
            let script = match &route.script {
                ScriptSource::Fixed(name) => std::borrow::Cow::Borrowed(name.as_str()),
                ScriptSource::HostLabel => {
                    let label = host.split(|&b| b == b'.').next().unwrap_or_default();
                    let label = std::str::from_utf8(label).ok()?;
                    if label.bytes().any(|b| b.is_ascii_uppercase()) {
                        std::borrow::Cow::Owned(label.to_ascii_lowercase())
                    } else {
                        std::borrow::Cow::Borrowed(label)
                    }
                }
                ScriptSource::Header(name) => {
                    let value = req
                        .headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
                        .map(|(_, v)| &v[..])?;
                    std::borrow::Cow::Borrowed(std::str::from_utf8(value).ok()?)
                }
            };
            if script.is_empty() {
                return None;
            }
            return Some(Target {
                namespace: &route.namespace,
                script,
            });
        }
        None
    }
}

/// The host without a `:port` suffix (IPv6 literals in brackets keep their colons).
fn strip_port(host: &[u8]) -> &[u8] {
    match host.iter().rposition(|&b| b == b':') {
        Some(i) if !host[i..].contains(&b']') => &host[..i],
        _ => host,
    }
}

/// The path of an origin-form target, without the query.
fn path_of(target: &[u8]) -> &[u8] {
    match target.iter().position(|&b| b == b'?') {
        Some(i) => &target[..i],
        None => target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn req(host: &str, target: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: Bytes::from_static(b"GET"),
            host: Bytes::copy_from_slice(host.as_bytes()),
            target: Bytes::copy_from_slice(target.as_bytes()),
            headers: headers
                .iter()
                .map(|(n, v)| {
                    (
                        Bytes::copy_from_slice(n.as_bytes()),
                        Bytes::copy_from_slice(v.as_bytes()),
                    )
                })
                .collect(),
            ..Request::default()
        }
    }

    fn route(
        host: &str,
        prefix: Option<&str>,
        header: Option<(&str, &str)>,
        script: ScriptSource,
    ) -> Route {
        Route {
            host: HostPattern::parse(host),
            path_prefix: prefix.map(str::to_string),
            header: header.map(|(n, v)| (n.to_string(), v.to_string())),
            namespace: "production".into(),
            script,
        }
    }

    #[test]
    fn host_label_selects_the_script() {
        let router = Router::new(vec![route(
            "*.example.test",
            None,
            None,
            ScriptSource::HostLabel,
        )]);
        let r = req("Alice.Example.Test:8080", "/hello", &[]);
        let t = router.route(&r).unwrap();
        assert_eq!((t.namespace, &*t.script), ("production", "alice"));
        assert!(router.route(&req("example.test", "/", &[])).is_none());
        assert!(router.route(&req("alice.example.org", "/", &[])).is_none());
    }

    #[test]
    fn first_matching_route_wins_in_order() {
        let router = Router::new(vec![
            route(
                "api.example.com",
                Some("/v2/"),
                None,
                ScriptSource::Fixed("v2".into()),
            ),
            route(
                "api.example.com",
                None,
                Some(("x-tenant", "bob")),
                ScriptSource::Fixed("bob".into()),
            ),
            route("*", None, None, ScriptSource::Header("x-worker".into())),
        ]);
        let t = |r: &Request| router.route(r).map(|t| t.script.into_owned());
        assert_eq!(
            t(&req("api.example.com", "/v2/x?q", &[])),
            Some("v2".into())
        );
        assert_eq!(
            t(&req("api.example.com", "/v1", &[("X-Tenant", "bob")])),
            Some("bob".into())
        );
        assert_eq!(
            t(&req("other", "/", &[("x-worker", "carol")])),
            Some("carol".into())
        );
        assert_eq!(t(&req("other", "/", &[])), None);
    }

    #[test]
    fn ports_and_ipv6_literals() {
        assert_eq!(strip_port(b"a.b:80"), b"a.b");
        assert_eq!(strip_port(b"[::1]:80"), b"[::1]");
        assert_eq!(strip_port(b"[::1]"), b"[::1]");
        assert_eq!(path_of(b"/a/b?c=d"), b"/a/b");
    }
}
