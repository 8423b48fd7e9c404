//! Who a connection is and what it may do: listeners with their security
//! protocols (`listener`), TLS with certificates reloaded from disk (`tls`),
//! SASL PLAIN and SCRAM (`sasl`, `scram`), Kafka's ACLs (`acl`), and the
//! state the cluster keeps for them (`state`: ACLs and SCRAM credentials, in
//! the coordination store). Everything here but `tls`'s file reads is pure.

pub mod acl;
pub mod listener;
pub mod plain;
pub mod runtime;
pub mod sasl;
pub mod scram;
pub mod state;
pub mod throttle;
pub mod tls;

use std::fmt;

/// A Kafka principal, `User:alice`. Connections that did not authenticate
/// are `User:ANONYMOUS`, as in Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal(String);

impl Principal {
    pub fn anonymous() -> Self {
        Self::user("ANONYMOUS")
    }

    pub fn user(name: &str) -> Self {
        Self(format!("User:{name}"))
    }

    /// Parses `Type:name`; the type is not empty, nor is the name.
    pub fn parse(s: &str) -> Option<Self> {
        let (kind, name) = s.split_once(':')?;
        (!kind.is_empty() && !name.is_empty()).then(|| Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name without its type: `alice` for `User:alice` (what client
    /// quotas name users by, as Kafka does).
    pub fn name(&self) -> &str {
        self.0.split_once(':').map_or(self.0.as_str(), |(_, name)| name)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_have_a_type_and_a_name() {
        assert_eq!(Principal::user("alice").as_str(), "User:alice");
        assert_eq!(Principal::user("alice").name(), "alice");
        assert_eq!(Principal::parse("User:CN=a:b").unwrap().name(), "CN=a:b");
        assert_eq!(Principal::parse("User:CN=x,O=y").unwrap().as_str(), "User:CN=x,O=y");
        assert!(Principal::parse("alice").is_none());
        assert!(Principal::parse("User:").is_none());
        assert!(Principal::parse(":x").is_none());
    }
}
