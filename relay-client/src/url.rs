//! [`RelayUrl`]: the relay URLs people type (`https://relay.example.com`, `ws://127.0.0.1:8080`),
//! parsed into what a connection needs, and what a cleartext one risks.

use muxagent_proto::limits::RELAY_WS_PATH;

use crate::error::ClientError;

/// A parsed relay URL: `ws`, `wss`, `http` or `https`, a host, an optional port and path. The
/// WebSocket path defaults to [`RELAY_WS_PATH`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayUrl {
    /// `wss`/`https`.
    pub tls: bool,
    /// Host name or IP (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path of the WebSocket endpoint.
    pub path: String,
}

impl RelayUrl {
    /// Parse a relay URL (`https://relay.example.com`, `ws://127.0.0.1:8080`, …).
    pub fn parse(url: &str) -> Result<RelayUrl, ClientError> {
        let bad = |reason: &str| ClientError::Url(format!("{url}: {reason}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "ws" | "http" => false,
            "wss" | "https" => true,
            _ => return Err(bad("the scheme must be ws, wss, http or https")),
        };
        let rest = rest.split(['#', '?']).next().unwrap_or("");
        let (authority, path) = match rest.find('/') {
            Some(index) => rest.split_at(index),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed IPv6 bracket"))?;
            let port = match after.strip_prefix(':') {
                Some(port) => port.parse().map_err(|_| bad("bad port"))?,
                None if after.is_empty() => default_port,
                None => return Err(bad("junk after the IPv6 address")),
            };
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => {
                    (host.to_string(), port.parse().map_err(|_| bad("bad port"))?)
                }
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let path = if path.is_empty() || path == "/" {
            RELAY_WS_PATH.to_string()
        } else if path.ends_with(RELAY_WS_PATH) {
            path.to_string()
        } else {
            format!("{}{RELAY_WS_PATH}", path.trim_end_matches('/'))
        };
        Ok(RelayUrl {
            tls,
            host,
            port,
            path,
        })
    }

    /// What a person should know before using this URL: `Some` when it is plain `ws`/`http`
    /// to a host other than this one (`localhost`, 127.0.0.0/8, `::1`). The relay then sees,
    /// and anyone on the network path can read, the machines' hostnames, which keys talk to
    /// which and when, and push subscriptions, and can drop or delay frames. What devices and
    /// machines say stays end-to-end encrypted and signed either way.
    pub fn cleartext_risk(&self) -> Option<String> {
        if self.tls || is_loopback(&self.host) {
            return None;
        }
        Some(format!(
            "the relay URL {} is not encrypted (ws/http, not wss/https): anyone on the network path can see this machine's hostname, which devices talk to which machines and when, and can drop or delay messages (what they say stays end-to-end encrypted); use https:// unless every hop is a network you trust",
            self.websocket_url()
        ))
    }

    pub(crate) fn websocket_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}{}", self.host, self.port, self.path)
        } else {
            format!("{scheme}://{}:{}{}", self.host, self.port, self.path)
        }
    }
}

/// Whether `host` names this host only: `localhost` (and `*.localhost`), 127.0.0.0/8, `::1`.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let url = RelayUrl::parse("https://relay.example.com").ok();
        assert_eq!(
            url,
            Some(RelayUrl {
                tls: true,
                host: "relay.example.com".into(),
                port: 443,
                path: "/relay".into()
            })
        );
        let url = RelayUrl::parse("ws://127.0.0.1:8080/").ok();
        assert_eq!(url.map(|u| (u.port, u.path)), Some((8080, "/relay".into())));
        let url = RelayUrl::parse("http://[::1]:9/base/").ok();
        assert_eq!(
            url.map(|u| (u.host, u.path)),
            Some(("::1".into(), "/base/relay".into()))
        );
        assert!(RelayUrl::parse("ftp://x").is_err());
        assert!(RelayUrl::parse("ws://:80").is_err());
        let risk = |url: &str| {
            RelayUrl::parse(url)
                .ok()
                .and_then(|url| url.cleartext_risk())
        };
        for url in [
            "ws://relay.example.net",
            "http://192.168.1.5:8080",
            "ws://0.0.0.0:9",
            "http://[fe80::1]:80",
        ] {
            let warning = risk(url).unwrap_or_default();
            assert!(warning.contains("not encrypted"), "{url}: {warning}");
        }
        for url in [
            "wss://relay.example.net",
            "https://192.168.1.5",
            "ws://127.0.0.1:8080",
            "http://127.9.9.9",
            "http://[::1]:9",
            "ws://localhost:80",
            "http://app.localhost",
        ] {
            assert_eq!(risk(url), None, "{url}");
        }
        assert!(RelayUrl::parse("ws://x:y").is_err());
    }
}
