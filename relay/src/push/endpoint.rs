//! Which push endpoints the relay will POST to: a strict parser for the few URLs push services
//! hand out, and the origin allowlist that keeps the relay from being aimed at anything else
//! (SSRF: a device chooses the endpoint, so without it any account could make the relay POST to
//! the relay's own network).
//!
//! A small parser rather than the `url` crate (which brings IDNA and ~20 crates of Unicode
//! tables): endpoints are `https://host[:port]/path` with an ASCII DNS name, and anything else
//! is refused rather than normalized — no user info, IP literals only for an origin the
//! operator named, no fragment, the path printable ASCII (it goes into the request line as it
//! is, so it can never carry a space or a line break).
//!
//! Allowed by default: `https` on port 443 to `fcm.googleapis.com` (Chrome, Edge's Chromium),
//! `updates.push.services.mozilla.com` (Firefox), any host under `.push.apple.com` (Safari) and
//! under `.notify.windows.com` (legacy Edge). `--push-origin scheme://host:port` adds exact
//! origins, and is the only way to allow plain `http`. A default origin must also resolve to
//! public addresses only (a poisoned resolver cannot point it at the relay's network); an
//! origin the operator named may resolve anywhere.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Services every relay pushes to (exact hosts).
const DEFAULT_HOSTS: [&str; 2] = ["fcm.googleapis.com", "updates.push.services.mozilla.com"];

/// Services every relay pushes to (any host under these).
const DEFAULT_SUFFIXES: [&str; 2] = [".push.apple.com", ".notify.windows.com"];

/// Where a push goes: an endpoint that passed the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub tls: bool,
    /// Lowercase DNS name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Path and query: the request target.
    pub path: String,
    /// Named with `--push-origin` (not held to public addresses).
    pub explicit: bool,
}

impl Target {
    /// `scheme://host[:port]`, the port only when not the scheme's default: the JWT's `aud`
    /// (RFC 8292 §2) and what the relay logs of an endpoint.
    pub(crate) fn origin(&self) -> String {
        origin_text(self.tls, &self.host, self.port)
    }

    /// The `Host` header's value.
    pub(crate) fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default_port(self.tls) {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

fn default_port(tls: bool) -> u16 {
    if tls { 443 } else { 80 }
}

fn origin_text(tls: bool, host: &str, port: u16) -> String {
    let scheme = if tls { "https" } else { "http" };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    if port == default_port(tls) {
        format!("{scheme}://{host}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}

/// An origin named with `--push-origin`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    tls: bool,
    host: String,
    port: u16,
}

/// The push origin allowlist.
#[derive(Clone, Debug, Default)]
pub(crate) struct Policy {
    extra: Vec<Origin>,
}

/// A URL split into its parts (not yet checked against the policy).
struct Parts {
    tls: bool,
    host: String,
    /// The host is an IP literal.
    literal: bool,
    port: u16,
    path: String,
}

fn parse(url: &str) -> Result<Parts, &'static str> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err("a push endpoint must be an https URL");
    };
    let (authority, path) = match rest.find('/') {
        Some(index) => rest.split_at(index),
        None => (rest, ""),
    };
    if authority.contains(['@', '?', '#']) {
        return Err("a push endpoint is https://host/path, without user info");
    }
    let (host, port, literal) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or("the endpoint's host is not valid")?;
        let host: Ipv6Addr = host
            .parse()
            .map_err(|_| "the endpoint's host is not valid")?;
        (host.to_string(), after, true)
    } else {
        let (host, after) = match authority.find(':') {
            Some(index) => authority.split_at(index),
            None => (authority, ""),
        };
        let literal = host.parse::<Ipv4Addr>().is_ok();
        if !literal && !is_dns_name(host) {
            return Err("the endpoint's host is not a DNS name");
        }
        (host.to_ascii_lowercase(), after, literal)
    };
    let port = match port.strip_prefix(':') {
        None if port.is_empty() => default_port(tls),
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            match digits.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err("the endpoint's port is not valid"),
            }
        }
        _ => return Err("the endpoint's port is not valid"),
    };
    if path.contains('#') || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the endpoint's path must be printable ASCII without a fragment");
    }
    Ok(Parts {
        tls,
        host,
        literal,
        port,
        path: path.to_string(),
    })
}

/// Letters, digits and hyphens in dot-separated labels of 1 to 63 bytes, no trailing dot.
fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl Policy {
    /// The default allowlist plus `extra` origins (`scheme://host[:port]`, from
    /// `--push-origin`).
    pub(crate) fn new(extra: &[String]) -> Result<Policy, String> {
        let mut origins = Vec::new();
        for text in extra {
            let parts = parse(text.trim_end_matches('/'))
                .map_err(|reason| format!("--push-origin {text}: {reason}"))?;
            if !parts.path.is_empty() {
                return Err(format!(
                    "--push-origin {text}: an origin is scheme://host:port, without a path"
                ));
            }
            origins.push(Origin {
                tls: parts.tls,
                host: parts.host,
                port: parts.port,
            });
        }
        Ok(Policy { extra: origins })
    }

    /// The origins `--push-origin` added, for the startup log.
    pub(crate) fn extra_origins(&self) -> Vec<String> {
        self.extra
            .iter()
            .map(|o| origin_text(o.tls, &o.host, o.port))
            .collect()
    }

    /// Whether the relay will push to `endpoint`; the reason is for the person whose device
    /// sent it.
    pub(crate) fn check(&self, endpoint: &str) -> Result<Target, &'static str> {
        let parts = parse(endpoint)?;
        if parts.path.is_empty() {
            return Err("a push endpoint has a path");
        }
        let explicit = self
            .extra
            .iter()
            .any(|o| o.tls == parts.tls && o.host == parts.host && o.port == parts.port);
        if !explicit {
            if !parts.tls {
                return Err("a push endpoint must be an https URL");
            }
            let known = !parts.literal
                && parts.port == 443
                && (DEFAULT_HOSTS.contains(&parts.host.as_str())
                    || DEFAULT_SUFFIXES.iter().any(|suffix| {
                        parts.host.len() > suffix.len() && parts.host.ends_with(suffix)
                    }));
            if !known {
                return Err(
                    "this relay does not push to that service: it pushes to the browsers' push \
                     services (FCM, Mozilla, Apple, Windows) and the origins its operator added",
                );
            }
        }
        Ok(Target {
            tls: parts.tls,
            host: parts.host,
            port: parts.port,
            path: parts.path,
            explicit,
        })
    }
}

/// Whether `ip` is a public unicast address: what a default push service must resolve to.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => {
                let first = v6.segments()[0];
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (first & 0xfe00) == 0xfc00 // unique local
                    || (first & 0xffc0) == 0xfe80 // link local
                    || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                    || first == 0x0064 && v6.segments()[1] == 0xff9b) // NAT64 to anywhere
            }
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && ip.octets()[2] == 0)) // IETF protocol assignments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(extra: &[&str]) -> Policy {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Policy::new(&extra).expect("valid origins")
    }

    #[test]
    fn the_browsers_push_services_are_allowed() {
        let p = policy(&[]);
        let fcm = p
            .check("https://fcm.googleapis.com/fcm/send/dXk:APA91b-x_y")
            .expect("fcm");
        assert_eq!(fcm.origin(), "https://fcm.googleapis.com");
        assert_eq!(fcm.path, "/fcm/send/dXk:APA91b-x_y");
        assert_eq!(fcm.host_header(), "fcm.googleapis.com");
        assert!(!fcm.explicit);
        assert!(
            p.check("https://updates.push.services.mozilla.com/wpush/v2/gAAA")
                .is_ok()
        );
        assert!(p.check("https://web.push.apple.com/QGx?x=1").is_ok());
        assert!(
            p.check("https://wns2-par02p.notify.windows.com/w/?token=AwY")
                .is_ok()
        );
        // Upper case in the host is the same host.
        assert!(p.check("https://FCM.googleapis.com/fcm/send/x").is_ok());
    }

    #[test]
    fn everything_else_is_refused() {
        let p = policy(&[]);
        for refused in [
            "http://fcm.googleapis.com/fcm/send/x",
            "https://fcm.googleapis.com:8443/fcm/send/x",
            "https://fcm.googleapis.com.evil.example/x",
            "https://evil.example/",
            "https://push.apple.com/x",
            "https://evilpush.apple.com/x",
            "https://notify.windows.com/x",
            "http://10.0.0.1/",
            "https://10.0.0.1/x",
            "https://[::1]/x",
            "https://user@fcm.googleapis.com/x",
            "https://fcm.googleapis.com",
            "https://fcm.googleapis.com/x#frag",
            "https://fcm.googleapis.com/a\u{e9}",
            "https://fcm.googleapis.com./x",
            "https://fcm.googleapis.com:/x",
            "https://fcm.googleapis.com:0/x",
            "https://fcm.googleapis.com:99999/x",
            "ftp://fcm.googleapis.com/x",
            "fcm.googleapis.com/x",
            "",
        ] {
            assert!(p.check(refused).is_err(), "{refused} was allowed");
        }
    }

    #[test]
    fn the_operator_adds_exact_origins() {
        let p = policy(&["http://127.0.0.1:9000", "https://push.example.net/"]);
        let local = p.check("http://127.0.0.1:9000/push/abc").expect("added");
        assert!(local.explicit);
        assert_eq!(local.origin(), "http://127.0.0.1:9000");
        assert_eq!(local.host_header(), "127.0.0.1:9000");
        assert!(p.check("https://push.example.net/x").is_ok());
        assert!(p.check("http://127.0.0.1:9001/push/abc").is_err());
        assert!(p.check("https://127.0.0.1:9000/push/abc").is_err());
        assert!(p.check("http://push.example.net/x").is_err());
        assert_eq!(
            p.extra_origins(),
            ["http://127.0.0.1:9000", "https://push.example.net"]
        );
        let v6 = policy(&["http://[::1]:8080"]);
        let target = v6.check("http://[::1]:8080/x").expect("added");
        assert_eq!(target.origin(), "http://[::1]:8080");
        assert!(Policy::new(&["https://a.example/path".to_string()]).is_err());
        assert!(Policy::new(&["a.example".to_string()]).is_err());
    }

    #[test]
    fn public_addresses() {
        for public in ["142.250.0.1", "2a00:1450::1", "::ffff:142.250.0.1"] {
            assert!(is_public(public.parse().expect("ip")), "{public}");
        }
        for private in [
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(private.parse().expect("ip")), "{private}");
        }
    }
}
