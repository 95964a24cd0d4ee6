//! Locations and targets, in upstream rawstor's syntax.
//!
//! * A *location* is where objects live: `file:///abs/dir`,
//!   `ost://host:port` or `mdt://host:port`. A comma list of locations
//!   means mirroring (`ost://a:7777,ost://b:7777`); `\,` escapes a comma
//!   inside an element.
//! * A *target* is one object: every element of a location followed by
//!   `/<uuid>`, the same UUID in each.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::uuid::Uuid;

/// Most elements in one comma list (a limit on replicas).
pub const MAX_ELEMENTS: usize = 16;

/// One element of a location.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A directory on a local filesystem (absolute, normalised).
    File(PathBuf),
    /// An object storage target server, `host:port`.
    Ost(String),
    /// A metadata target server, `host:port`.
    Mdt(String),
}

/// A location: one or more endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    endpoints: Vec<Endpoint>,
}

/// A target: a location and an object UUID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Where the object lives.
    pub location: Location,
    /// The object.
    pub uuid: Uuid,
}

impl Location {
    /// The endpoints, in the order given.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The target naming `uuid` at this location.
    pub fn target(&self, uuid: Uuid) -> Target {
        Target {
            location: self.clone(),
            uuid,
        }
    }

    fn from_endpoints(text: &str, endpoints: Vec<Endpoint>) -> Result<Self> {
        if endpoints.len() > MAX_ELEMENTS {
            return Err(Error::invalid(format!(
                "bad location '{text}': more than {MAX_ELEMENTS} elements"
            )));
        }
        for (i, endpoint) in endpoints.iter().enumerate() {
            if endpoints[..i].contains(endpoint) {
                return Err(Error::invalid(format!(
                    "bad location '{text}': '{endpoint}' appears twice"
                )));
            }
        }
        if endpoints.len() > 1 && endpoints.iter().any(|e| matches!(e, Endpoint::Mdt(_))) {
            return Err(Error::invalid(format!(
                "bad location '{text}': an mdt:// location cannot be part of a list \
                 (the MDT records the object's layout)"
            )));
        }
        Ok(Self { endpoints })
    }
}

impl FromStr for Location {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let endpoints = split_list(text)?
            .iter()
            .map(|element| parse_endpoint(text, element))
            .collect::<Result<Vec<_>>>()?;
        Self::from_endpoints(text, endpoints)
    }
}

impl FromStr for Target {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let mut uuid: Option<Uuid> = None;
        let mut endpoints = Vec::new();
        for element in split_list(text)? {
            let Some(slash) = element.rfind('/') else {
                return Err(bad_target(text));
            };
            let (base, id) = (&element[..slash], &element[slash + 1..]);
            let id = crate::uuid::parse(id).map_err(|_| bad_target(text))?;
            if uuid.is_some_and(|u| u != id) {
                return Err(Error::invalid(format!(
                    "bad target '{text}': every element must name the same UUID"
                )));
            }
            uuid = Some(id);
            endpoints.push(parse_endpoint(text, base)?);
        }
        let uuid = uuid.ok_or_else(|| bad_target(text))?;
        Ok(Self {
            location: Location::from_endpoints(text, endpoints)?,
            uuid,
        })
    }
}

fn bad_target(text: &str) -> Error {
    Error::invalid(format!(
        "bad target '{text}': expected LOCATION/UUID, e.g. file:///var/lib/rawstor/0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b"
    ))
}

/// Splits on unescaped commas; `\,` becomes `,` and `\\` becomes `\`.
fn split_list(text: &str) -> Result<Vec<String>> {
    let mut elements = vec![String::new()];
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ (',' | '\\')) => {
                    elements.last_mut().expect("non-empty").push(escaped)
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "bad address '{text}': '\\' must be followed by ',' or '\\'"
                    )));
                }
            },
            ',' => elements.push(String::new()),
            c => elements.last_mut().expect("non-empty").push(c),
        }
    }
    if elements.iter().any(|e| e.is_empty()) {
        return Err(Error::invalid(format!(
            "bad address '{text}': empty element"
        )));
    }
    Ok(elements)
}

fn parse_endpoint(text: &str, element: &str) -> Result<Endpoint> {
    let Some((scheme, rest)) = element.split_once("://") else {
        return Err(Error::invalid(format!(
            "bad address '{text}': '{element}' has no scheme (use file://, ost:// or mdt://)"
        )));
    };
    match scheme {
        "file" => parse_file_path(text, rest).map(Endpoint::File),
        "ost" => parse_host_port(text, rest).map(Endpoint::Ost),
        "mdt" => parse_host_port(text, rest).map(Endpoint::Mdt),
        _ => Err(Error::invalid(format!(
            "bad address '{text}': unknown scheme '{scheme}://' (use file://, ost:// or mdt://)"
        ))),
    }
}

fn parse_file_path(text: &str, path: &str) -> Result<PathBuf> {
    let path = Path::new(path);
    if !path.is_absolute() {
        return Err(Error::invalid(format!(
            "bad address '{text}': file:// needs an absolute path (file:///dir), got '{}'",
            path.display()
        )));
    }
    let mut normal = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => normal.push(part),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::invalid(format!(
                    "bad address '{text}': '..' is not allowed in a file:// path"
                )));
            }
        }
    }
    Ok(normal)
}

fn parse_host_port(text: &str, rest: &str) -> Result<String> {
    let bad = |why: &str| Error::invalid(format!("bad address '{text}': {why}"));
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.starts_with('[') && !rest.contains(']') {
        return Err(bad("an IPv6 address needs a closing ']'"));
    }
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err(bad("expected host:port"));
    };
    if host.is_empty() || host.contains('/') {
        return Err(bad("expected host:port"));
    }
    check_host(host).map_err(|why| bad(&why))?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(format!("{host}:{p}")),
        _ => Err(bad(&format!("bad port '{port}'"))),
    }
}

/// A host is a name or IPv4 address (letters, digits, `-`, `_`, `.`) or
/// an IPv6 address in brackets; anything else (`[::1` with no closing
/// bracket, `::1` without brackets) is refused here rather than looked up
/// as a host name.
fn check_host(host: &str) -> std::result::Result<(), String> {
    if let Some(inner) = host.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return Err(format!("'{host}': an IPv6 address needs a closing ']'"));
        };
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(drop)
            .map_err(|_| format!("'{inner}' is not an IPv6 address"));
    }
    if host.contains(':') {
        return Err(format!(
            "'{host}': an IPv6 address goes in brackets ([{host}])"
        ));
    }
    match host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        Some(c) => Err(format!("'{host}': '{c}' cannot be part of a host name")),
        None => Ok(()),
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::File(path) => write!(f, "file://{}", path.display()),
            Endpoint::Ost(addr) => write!(f, "ost://{addr}"),
            Endpoint::Mdt(addr) => write!(f, "mdt://{addr}"),
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace(',', "\\,")
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&escape(&endpoint.to_string()))?;
        }
        Ok(())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, endpoint) in self.location.endpoints.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let base = endpoint.to_string();
            let sep = if base.ends_with('/') { "" } else { "/" };
            write!(f, "{}{sep}{}", escape(&base), self.uuid)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b";

    #[test]
    fn parses_single_and_mirrored_locations() {
        let loc: Location = "file:///var/lib/rawstor/".parse().unwrap();
        assert_eq!(loc.endpoints(), [Endpoint::File("/var/lib/rawstor".into())]);
        let loc: Location = "ost://10.0.0.1:7777,ost://10.0.0.2:7777".parse().unwrap();
        assert_eq!(loc.endpoints().len(), 2);
        assert_eq!(loc.to_string(), "ost://10.0.0.1:7777,ost://10.0.0.2:7777");
        let loc: Location = "ost://[::1]:7777,ost://my-host.example_1:7777"
            .parse()
            .unwrap();
        assert_eq!(loc.endpoints()[0], Endpoint::Ost("[::1]:7777".into()));
    }

    #[test]
    fn escaped_comma_stays_in_path_and_round_trips() {
        let loc: Location = r"file:///data/a\,b".parse().unwrap();
        assert_eq!(loc.endpoints(), [Endpoint::File("/data/a,b".into())]);
        assert_eq!(loc.to_string(), r"file:///data/a\,b");
    }

    #[test]
    fn target_needs_same_uuid_everywhere() {
        let text = format!("ost://a:1/{ID},ost://b:2/{ID}");
        let target: Target = text.parse().unwrap();
        assert_eq!(target.uuid.to_string(), ID);
        assert_eq!(target.to_string(), text);
        let other = "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2c";
        let err = format!("ost://a:1/{ID},ost://b:2/{other}")
            .parse::<Target>()
            .unwrap_err();
        assert!(err.context().contains("same UUID"), "{err}");
    }

    #[test]
    fn rejects_bad_addresses() {
        let cases = [
            ("file://relative/dir", "absolute"),
            ("file:///a/../b", ".."),
            ("ost://host", "host:port"),
            ("ost://host:0", "bad port"),
            ("ost://host:99999", "bad port"),
            ("nbd://host:1", "unknown scheme"),
            ("/plain/path", "no scheme"),
            ("file:///a,file:///a/", "twice"),
            ("file:///a,,file:///b", "empty element"),
            (r"file:///a\x", "must be followed"),
            ("mdt://m:1,ost://o:2", "mdt://"),
            ("ost://[::1", "closing ']'"),
            ("ost://[::1:7000", "closing ']'"),
            ("ost://[::1]]:7000", "not an IPv6 address"),
            ("ost://[::g]:7000", "not an IPv6 address"),
            ("ost://::1:7000", "brackets"),
            ("ost://ho st:7000", "host name"),
            ("ost://host]:7000", "host name"),
        ];
        for (text, why) in cases {
            let err = text.parse::<Location>().unwrap_err();
            assert_eq!(err.errno(), libc::EINVAL);
            assert!(err.context().contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn rejects_bad_targets() {
        for text in [
            "file:///a",
            "file:///a/not-a-uuid",
            &format!("file://rel/{ID}"),
        ] {
            assert!(text.parse::<Target>().is_err(), "{text}");
        }
    }
}
