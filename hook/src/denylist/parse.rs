//! The deny-list file format. One destination per line:
//!
//! ```text
//! # comments start with '#' or ';', anywhere on a line (Spamhaus DROP: "1.10.16.0/20 ; SBL256894")
//! 203.0.113.7                 every port and protocol
//! 198.51.100.0/24             a CIDR (host bits are ignored, as `ip route` does)
//! 2001:db8:bad::/48
//! 169.254.169.254 tcp/80      one protocol and port (tcp, udp or sctp)
//! 192.0.2.10 53               one port, tcp and udp
//! {"cidr":"1.10.16.0/20","sblid":"SBL256894","rir":"apnic"}   Spamhaus' JSON-lines feeds
//! ```
//!
//! FireHOL netsets (`#` headers, one CIDR or address per line) and Spamhaus DROP/EDROP (text or
//! JSON lines, whose last line is a `{"type":"metadata",...}` record) parse as they are.
use std::net::IpAddr;

use ipnet::IpNet;

/// A destination a deny list names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListEntry {
    /// The network (host bits cleared).
    pub net: IpNet,
    /// None: every protocol and port.
    pub port: Option<PortSpec>,
    /// 1-based line in the file.
    pub line: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    /// IPPROTO_*; None: TCP and UDP.
    pub proto: Option<u8>,
    pub port: u16,
}

/// The first line of a file that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}: {text:?}")]
pub struct LineError {
    pub line: u32,
    pub reason: String,
    /// The line as written (truncated to 80 characters).
    pub text: String,
}

/// Parses a whole file. One bad line refuses the file: see `crate::denylist` for why.
pub fn parse(text: &str) -> Result<Vec<ListEntry>, LineError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = (i + 1) as u32;
        let err = |reason: String| LineError { line, reason, text: raw.chars().take(80).collect() };
        let t = raw.trim();
        if t.starts_with('{') {
            if let Some(net) = json_line(t).map_err(err)? {
                out.push(ListEntry { net, port: None, line });
            }
            continue;
        }
        let t = t.split(['#', ';']).next().unwrap_or("").trim();
        if t.is_empty() {
            continue;
        }
        let mut words = t.split_whitespace();
        let net = network(words.next().unwrap_or_default()).map_err(err)?;
        let port = words.next().map(port_spec).transpose().map_err(err)?;
        if let Some(extra) = words.next() {
            return Err(err(format!(
                "unexpected {extra:?} after the destination (one address or CIDR, then an optional port)"
            )));
        }
        out.push(ListEntry { net, port, line });
    }
    Ok(out)
}

/// An address (a /32 or /128) or a CIDR.
fn network(w: &str) -> Result<IpNet, String> {
    let net = if w.contains('/') {
        w.parse::<IpNet>().map_err(|_| format!("{w:?} is not an IPv4 or IPv6 address or CIDR"))?
    } else {
        IpNet::from(w.parse::<IpAddr>().map_err(|_| format!("{w:?} is not an IPv4 or IPv6 address or CIDR"))?)
    };
    if net.prefix_len() == 0 {
        // A feed gone wrong should not cut every container off the network: a /0 is a profile's
        // job (leave the destination out of its allow rules), not a deny list's.
        return Err(format!("{w:?} covers every address: a deny list names destinations, not everything"));
    }
    Ok(net.trunc())
}

/// `tcp/443`, `udp/53`, `sctp/9`, or `443` (TCP and UDP).
fn port_spec(w: &str) -> Result<PortSpec, String> {
    let (proto, port) = match w.split_once('/') {
        Some((p, port)) => {
            let proto = match p.to_ascii_lowercase().as_str() {
                "tcp" => 6,
                "udp" => 17,
                "sctp" => 132,
                _ => return Err(format!("protocol {p:?} is not tcp, udp or sctp")),
            };
            (Some(proto), port)
        }
        None => (None, w),
    };
    let port: u16 = port.parse().map_err(|_| format!("port {port:?} is not a number from 1 to 65535"))?;
    if port == 0 {
        return Err("port 0 is not a destination port (leave the port out for every port)".into());
    }
    Ok(PortSpec { proto, port })
}

/// A Spamhaus JSON-lines record: `cidr` is the entry; the metadata record has none.
fn json_line(t: &str) -> Result<Option<IpNet>, String> {
    let v: serde_json::Value = serde_json::from_str(t).map_err(|e| format!("not a JSON record: {e}"))?;
    match v.get("cidr") {
        Some(serde_json::Value::String(c)) => network(c).map(Some),
        Some(_) => Err("\"cidr\" is not a string".into()),
        None if v.get("type").is_some() => Ok(None),
        None => Err("a JSON record without \"cidr\" (nor \"type\", as Spamhaus' metadata record has)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_cidrs_ports_and_comments() {
        let l = parse(
            "# header\n\n203.0.113.7\n198.51.100.9/24 # host bits\n2001:db8:bad::/48\n169.254.169.254 tcp/80\n\
             192.0.2.10 53 ; both\n  ; only a comment\n",
        )
        .unwrap();
        assert_eq!(
            l,
            vec![
                ListEntry { net: net("203.0.113.7/32"), port: None, line: 3 },
                ListEntry { net: net("198.51.100.0/24"), port: None, line: 4 },
                ListEntry { net: net("2001:db8:bad::/48"), port: None, line: 5 },
                ListEntry {
                    net: net("169.254.169.254/32"),
                    port: Some(PortSpec { proto: Some(6), port: 80 }),
                    line: 6
                },
                ListEntry { net: net("192.0.2.10/32"), port: Some(PortSpec { proto: None, port: 53 }), line: 7 },
            ]
        );
    }

    #[test]
    fn spamhaus_drop_text_and_json_and_firehol() {
        let drop = "; Spamhaus DROP List 2026/12/04 - (c) 2026 The Spamhaus Project SLU\n\
                    ; Last-Modified: Fri, 04 Dec 2026 10:00:00 GMT\n1.10.16.0/20 ; SBL256894\n1.19.0.0/16 ; SBL434604\n";
        let l = parse(drop).unwrap();
        assert_eq!(
            l.iter().map(|e| (e.net, e.line)).collect::<Vec<_>>(),
            vec![(net("1.10.16.0/20"), 3), (net("1.19.0.0/16"), 4)]
        );
        let json = "{\"cidr\":\"1.10.16.0/20\",\"sblid\":\"SBL256894\",\"rir\":\"apnic\"}\n\
                    {\"cidr\":\"2a06:e480::/29\",\"sblid\":\"SBL301771\",\"rir\":\"ripencc\"}\n\
                    {\"type\":\"metadata\",\"timestamp\":1733300000,\"size\":2,\"records\":2}\n";
        let l = parse(json).unwrap();
        assert_eq!(l.iter().map(|e| e.net).collect::<Vec<_>>(), vec![net("1.10.16.0/20"), net("2a06:e480::/29")]);
        let firehol = "#\n# firehol_level1\n#\n# Maintainer : FireHOL\n#\n0.0.0.0/8\n1.10.16.0/20\n5.188.10.179\n";
        assert_eq!(parse(firehol).unwrap().len(), 3);
    }

    #[test]
    fn bad_lines_say_where_and_why() {
        for (text, line, why) in [
            ("1.2.3.4\nbogus\n", 2, "not an IPv4 or IPv6"),
            ("1.2.3.4/33\n", 1, "not an IPv4 or IPv6"),
            ("1.2.3.4 icmp/1\n", 1, "not tcp, udp or sctp"),
            ("1.2.3.4 tcp/70000\n", 1, "not a number"),
            ("1.2.3.4 0\n", 1, "port 0"),
            ("1.2.3.4 tcp/80 extra\n", 1, "unexpected \"extra\""),
            ("0.0.0.0/0\n", 1, "covers every address"),
            ("::/0\n", 1, "covers every address"),
            ("{\"cidr\": 5}\n", 1, "not a string"),
            ("{\"ip\": \"1.2.3.4\"}\n", 1, "without \"cidr\""),
            ("{broken\n", 1, "not a JSON record"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(why), "{text:?}: {e}");
        }
    }
}
