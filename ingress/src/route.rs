//! Declarative routing: the fast path from a request to a namespace and script when no dispatch
//! Worker is configured. The first route in declaration order that matches wins; an index finds
//! it in time independent of the number of routes ([`Router`]).
//!
//! A route matches on host, path prefix and one header, all optional, and names its target script
//! directly or takes it from the request: the first label of the host (`alice.example.test` →
//! `alice`) or a header's value.

use std::collections::HashMap;

use bytes::Bytes;
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

    /// Whether `host` (without its port) matches: the rule [`Router`]'s index implements.
    pub fn matches(&self, host: &[u8]) -> bool {
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

/// An ordered list of routes, indexed so that matching costs the same whatever their number.
///
/// What an operator observes is "the first route in declaration order that matches"; the index
/// finds that route without trying the others. Each route is filed under its host pattern (exact
/// hosts in a hash map, `*.suffix` wildcards in a trie of reversed suffixes, `*` apart), then
/// under its path prefix (a trie), then under its header condition (a hash map per header name);
/// every entry keeps the route's declaration index. A request walks its host and path through
/// the tries once, and the lowest index among the entries it meets is the route. Matching 1000
/// routes costs what matching one does (`cargo bench -p tenantry-benches --bench route`).
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
    /// Routes whose host is `*`.
    any: PathTable,
    /// Exact hosts, lower case.
    exact: HashMap<Box<[u8]>, PathTable>,
    /// Wildcard suffixes, lower case, reversed: `*.example.com` is filed under `moc.elpmaxe.`.
    wildcard: ByteTrie<PathTable>,
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Router {
        let mut router = Router {
            routes: Vec::new(),
            any: PathTable::default(),
            exact: HashMap::new(),
            wildcard: ByteTrie::default(),
        };
        for (index, route) in routes.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            let table = match &route.host {
                HostPattern::Any => &mut router.any,
                HostPattern::Exact(host) => router
                    .exact
                    .entry(host.as_bytes().to_ascii_lowercase().into())
                    .or_default(),
                HostPattern::Wildcard(suffix) => router
                    .wildcard
                    .entry(suffix.bytes().rev().map(|b| b.to_ascii_lowercase())),
            };
            let prefix = route.path_prefix.as_deref().unwrap_or_default();
            table
                .entry(prefix.bytes())
                .add(index, route.header.as_ref());
        }
        router.routes = routes;
        router
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The first route that matches `req`, with the script it selects. `None` when no route matches
    /// or the selected script name would be empty or not valid UTF-8.
    pub fn route<'a>(&'a self, req: &'a Request) -> Option<Target<'a>> {
        let host = strip_port(&req.host);
        let path = path_of(&req.target);
        let mut best = u32::MAX;
        self.any.first_match(path, &req.headers, &mut best);
        let lower: std::borrow::Cow<[u8]> = if host.iter().any(u8::is_ascii_uppercase) {
            host.to_ascii_lowercase().into()
        } else {
            host.into()
        };
        if let Some(table) = self.exact.get(&*lower) {
            table.first_match(path, &req.headers, &mut best);
        }
        // A wildcard matches when at least one byte of the host is left before its suffix.
        self.wildcard
            .walk(lower.iter().rev().copied(), |depth, table| {
                if depth < lower.len() {
                    table.first_match(path, &req.headers, &mut best);
                }
            });
        let route = self.routes.get(usize::try_from(best).ok()?)?;
        target(route, host, req)
    }
}

/// The target `route` selects for `req`, whose host without its port is `host`.
fn target<'a>(route: &'a Route, host: &'a [u8], req: &'a Request) -> Option<Target<'a>> {
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
    Some(Target {
        namespace: &route.namespace,
        script,
    })
}

/// The routes of one host pattern, by path prefix.
type PathTable = ByteTrie<Conditions>;

impl PathTable {
    /// Lowers `best` to the declaration index of the first route here whose path prefix and
    /// header match.
    fn first_match(&self, path: &[u8], headers: &[(Bytes, Bytes)], best: &mut u32) {
        self.walk(path.iter().copied(), |_, conditions| {
            conditions.first_match(headers, best)
        });
    }
}

/// The routes of one host pattern and path prefix, by header condition.
#[derive(Debug, Clone)]
struct Conditions {
    /// The lowest declaration index here, to skip the headers when it cannot win.
    lowest: u32,
    /// The first route without a header condition.
    unconditional: Option<u32>,
    /// By header name (lower case): the first route for each value.
    headers: Vec<(Box<[u8]>, ByValue)>,
}

/// Header value → the first route requiring it.
type ByValue = HashMap<Box<[u8]>, u32>;

impl Default for Conditions {
    fn default() -> Self {
        Conditions {
            lowest: u32::MAX,
            unconditional: None,
            headers: Vec::new(),
        }
    }
}

impl Conditions {
    /// Files route `index`; routes are added in declaration order, so the first one kept for a
    /// condition is the one that wins it.
    fn add(&mut self, index: u32, header: Option<&(String, String)>) {
        self.lowest = self.lowest.min(index);
        let Some((name, value)) = header else {
            self.unconditional.get_or_insert(index);
            return;
        };
        let name = name.as_bytes().to_ascii_lowercase();
        let values = match self.headers.iter().position(|(n, _)| **n == *name) {
            Some(i) => &mut self.headers[i].1,
            None => {
                self.headers.push((name.into(), HashMap::new()));
                &mut self.headers.last_mut().expect("just pushed").1
            }
        };
        values.entry(value.as_bytes().into()).or_insert(index);
    }

    fn first_match(&self, headers: &[(Bytes, Bytes)], best: &mut u32) {
        if self.lowest >= *best {
            return;
        }
        if let Some(index) = self.unconditional {
            *best = (*best).min(index);
        }
        for (name, values) in &self.headers {
            for (n, v) in headers {
                if n.eq_ignore_ascii_case(name)
                    && let Some(&index) = values.get(&v[..])
                {
                    *best = (*best).min(index);
                }
            }
        }
    }
}

/// A trie over bytes whose nodes may hold a value; walking a key visits the values of all its
/// prefixes. Children are kept sorted and found by binary search.
#[derive(Debug, Clone)]
struct ByteTrie<T> {
    nodes: Vec<TrieNode<T>>,
}

#[derive(Debug, Clone)]
struct TrieNode<T> {
    children: Vec<(u8, u32)>,
    value: Option<T>,
}

impl<T> Default for ByteTrie<T> {
    fn default() -> Self {
        ByteTrie {
            nodes: vec![TrieNode {
                children: Vec::new(),
                value: None,
            }],
        }
    }
}

impl<T: Default> ByteTrie<T> {
    /// The value at `key`, made if absent.
    fn entry(&mut self, key: impl Iterator<Item = u8>) -> &mut T {
        let mut node = 0;
        for byte in key {
            let children = &self.nodes[node].children;
            node = match children.binary_search_by_key(&byte, |&(b, _)| b) {
                Ok(i) => children[i].1 as usize,
                Err(i) => {
                    let child = self.nodes.len();
                    self.nodes.push(TrieNode {
                        children: Vec::new(),
                        value: None,
                    });
                    // Routes come from a config file; u32 nodes are far beyond any.
                    self.nodes[node].children.insert(i, (byte, child as u32));
                    child
                }
            };
        }
        self.nodes[node].value.get_or_insert_with(T::default)
    }
}

impl<T> ByteTrie<T> {
    /// Calls `visit(depth, value)` for each value whose key is a prefix of `key`, shortest first.
    fn walk(&self, key: impl Iterator<Item = u8>, mut visit: impl FnMut(usize, &T)) {
        let mut node = &self.nodes[0];
        let mut depth = 0;
        let mut key = key;
        loop {
            if let Some(value) = &node.value {
                visit(depth, value);
            }
            let Some(byte) = key.next() else { return };
            match node.children.binary_search_by_key(&byte, |&(b, _)| b) {
                Ok(i) => node = &self.nodes[node.children[i].1 as usize],
                Err(_) => return,
            }
            depth += 1;
        }
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

    fn fixed(host: &str, prefix: Option<&str>, header: Option<(&str, &str)>, n: &str) -> Route {
        route(host, prefix, header, ScriptSource::Fixed(n.into()))
    }

    fn script(router: &Router, r: &Request) -> Option<String> {
        router.route(r).map(|t| t.script.into_owned())
    }

    #[test]
    fn declaration_order_beats_specificity() {
        // A catch-all declared first shadows everything after it, however specific.
        let router = Router::new(vec![
            fixed("*", None, None, "all"),
            fixed("api.example.com", Some("/v2/"), None, "v2"),
        ]);
        assert_eq!(
            script(&router, &req("api.example.com", "/v2/x", &[])),
            Some("all".into())
        );
        // A wildcard declared before an exact host wins it; a shorter path prefix declared
        // before a longer one wins its paths.
        let router = Router::new(vec![
            fixed("*.example.com", None, None, "wild"),
            fixed("api.example.com", None, None, "exact"),
            fixed("other.test", Some("/a"), None, "short"),
            fixed("other.test", Some("/a/b"), None, "long"),
        ]);
        assert_eq!(
            script(&router, &req("api.example.com", "/", &[])),
            Some("wild".into())
        );
        assert_eq!(
            script(&router, &req("other.test", "/a/b/c", &[])),
            Some("short".into())
        );
        // Declared the other way round, the specific ones win.
        let router = Router::new(vec![
            fixed("other.test", Some("/a/b"), None, "long"),
            fixed("api.example.com", None, None, "exact"),
            fixed("*.example.com", None, None, "wild"),
            fixed("other.test", Some("/a"), None, "short"),
            fixed("*", None, None, "all"),
        ]);
        let s = |host, path| script(&router, &req(host, path, &[]));
        assert_eq!(s("api.example.com", "/"), Some("exact".into()));
        assert_eq!(s("www.example.com", "/"), Some("wild".into()));
        assert_eq!(s("other.test", "/a/b/c"), Some("long".into()));
        assert_eq!(s("other.test", "/a/c"), Some("short".into()));
        assert_eq!(s("other.test", "/"), Some("all".into()));
    }

    #[test]
    fn a_duplicate_route_never_wins() {
        let router = Router::new(vec![
            fixed("a.test", Some("/p"), Some(("x-t", "1")), "first"),
            fixed("a.test", Some("/p"), Some(("X-T", "1")), "second"),
            fixed("A.TEST", Some("/p"), None, "third"),
            fixed("a.test", Some("/p"), None, "fourth"),
        ]);
        let s = |headers| script(&router, &req("a.test", "/p", headers));
        assert_eq!(s(&[("x-t", "1")]), Some("first".into()));
        assert_eq!(s(&[("x-t", "2")]), Some("third".into()));
        assert_eq!(s(&[]), Some("third".into()));
    }

    #[test]
    fn headers_match_by_name_in_any_case_and_by_exact_value() {
        let router = Router::new(vec![
            fixed("*", None, Some(("X-Tenant", "bob")), "bob"),
            fixed("*", None, Some(("x-plan", "pro")), "pro"),
            fixed("*", None, Some(("x-tenant", "carol")), "carol"),
        ]);
        let s = |headers| script(&router, &req("h", "/", headers));
        assert_eq!(s(&[("x-TENANT", "bob")]), Some("bob".into()));
        assert_eq!(s(&[("x-tenant", "Bob")]), None);
        // Any of several fields of one name may match; the first route among those matching wins.
        assert_eq!(
            s(&[("x-tenant", "carol"), ("x-tenant", "bob")]),
            Some("bob".into())
        );
        assert_eq!(
            s(&[("x-tenant", "carol"), ("x-plan", "pro")]),
            Some("pro".into())
        );
    }

    #[test]
    fn hosts_ignore_case_paths_do_not() {
        let router = Router::new(vec![
            fixed("API.example.com", Some("/V1"), None, "v1"),
            fixed("*.Example.ORG", None, None, "org"),
        ]);
        let s = |host, path| script(&router, &req(host, path, &[]));
        assert_eq!(s("api.EXAMPLE.com:8443", "/V1/x"), Some("v1".into()));
        assert_eq!(s("api.example.com", "/v1/x"), None);
        assert_eq!(s("A.example.org", "/"), Some("org".into()));
        assert_eq!(s("example.org", "/"), None);
        assert_eq!(s(".example.org", "/"), None);
    }

    #[test]
    fn wildcards_are_suffixes_of_any_length() {
        // `*foo.test` (no dot) matches any longer host ending in `foo.test`, as it always did.
        let router = Router::new(vec![
            fixed("*.b.test", None, None, "b"),
            fixed("*.a.b.test", None, None, "ab"),
            fixed("*foo.test", None, None, "foo"),
        ]);
        let s = |host| script(&router, &req(host, "/", &[]));
        assert_eq!(s("x.a.b.test"), Some("b".into()));
        assert_eq!(s("a.b.test"), Some("b".into()));
        assert_eq!(s("barfoo.test"), Some("foo".into()));
        assert_eq!(s("foo.test"), None);
        assert_eq!(s("b.test"), None);
    }

    #[test]
    fn the_first_match_decides_even_when_it_selects_no_script() {
        // As before the index: a matching route whose script header is missing answers no route,
        // rather than falling through to a later one.
        let router = Router::new(vec![
            route(
                "*",
                Some("/t/"),
                None,
                ScriptSource::Header("x-worker".into()),
            ),
            fixed("*", None, None, "fallback"),
        ]);
        assert_eq!(script(&router, &req("h", "/t/x", &[])), None);
        assert_eq!(
            script(&router, &req("h", "/u", &[])),
            Some("fallback".into())
        );
    }

    /// The routing rule as it was written before the index: try each route in order.
    fn route_in_order<'a>(router: &'a Router, req: &'a Request) -> Option<Target<'a>> {
        let host = strip_port(&req.host);
        let path = path_of(&req.target);
        let found = router.routes().iter().find(|route| {
            route.host.matches(host)
                && route
                    .path_prefix
                    .as_ref()
                    .is_none_or(|p| path.starts_with(p.as_bytes()))
                && route.header.as_ref().is_none_or(|(name, value)| {
                    req.headers.iter().any(|(n, v)| {
                        n.eq_ignore_ascii_case(name.as_bytes()) && v == value.as_bytes()
                    })
                })
        })?;
        target(found, host, req)
    }

    #[test]
    fn the_index_agrees_with_trying_routes_in_order() {
        const HOSTS: [&str; 9] = [
            "*", "a.b", "A.b", "x.a.b", "*.a.b", "*.b", "*b", "*x.A.B", "b",
        ];
        const PREFIXES: [Option<&str>; 6] = [
            None,
            Some(""),
            Some("/"),
            Some("/a"),
            Some("/a/"),
            Some("/ab"),
        ];
        const HEADERS: [Option<(&str, &str)>; 5] = [
            None,
            Some(("x-t", "1")),
            Some(("X-T", "2")),
            Some(("y", "1")),
            Some(("x-t", "")),
        ];
        const REQ_HOSTS: [&str; 10] = [
            "a.b", "A.B:80", "x.a.b", "yx.a.b", "b", "ab", ".b", "", "c", "q.x.a.b",
        ];
        const PATHS: [&str; 6] = ["/", "/a", "/a/", "/ab?q", "/b", ""];
        const REQ_HEADERS: [&[(&str, &str)]; 5] = [
            &[],
            &[("X-t", "1")],
            &[("x-t", "2"), ("y", "1")],
            &[("x-t", "")],
            &[("x-t", "3"), ("x-T", "1")],
        ];
        // xorshift: the same routes on every run, many shapes.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let (mut routed, mut compared) = (0, 0);
        for _ in 0..300 {
            let count = 1 + next(12);
            let routes = (0..count)
                .map(|i| {
                    let script = match next(4) {
                        0 => ScriptSource::HostLabel,
                        1 => ScriptSource::Header("x-t".into()),
                        _ => ScriptSource::Fixed(format!("r{i}")),
                    };
                    route(
                        HOSTS[next(HOSTS.len())],
                        PREFIXES[next(PREFIXES.len())],
                        HEADERS[next(HEADERS.len())],
                        script,
                    )
                })
                .collect();
            let router = Router::new(routes);
            for host in REQ_HOSTS {
                for path in PATHS {
                    for headers in REQ_HEADERS {
                        let r = req(host, path, headers);
                        routed += usize::from(router.route(&r).is_some());
                        compared += 1;
                        assert_eq!(
                            router.route(&r),
                            route_in_order(&router, &r),
                            "{host} {path} {headers:?} over {:?}",
                            router.routes()
                        );
                    }
                }
            }
        }
        // Both outcomes are well represented, so agreement says something.
        assert!(
            routed > compared / 5 && routed < compared * 4 / 5,
            "{routed} of {compared}"
        );
    }
    #[test]
    fn ports_and_ipv6_literals() {
        assert_eq!(strip_port(b"a.b:80"), b"a.b");
        assert_eq!(strip_port(b"[::1]:80"), b"[::1]");
        assert_eq!(strip_port(b"[::1]"), b"[::1]");
        assert_eq!(path_of(b"/a/b?c=d"), b"/a/b");
    }
}
