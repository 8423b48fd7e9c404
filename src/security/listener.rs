//! Listeners: each binds an address and serves one of Kafka's security
//! protocols. Their TOML keys are `[[listener]]` entries (docs/configuration.md).
//! Pure: parsing and the checks a listener must pass before the broker binds it.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Kafka's `security.protocol` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[clap(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Kafka's `sasl.mechanism` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub const ALL: [SaslMechanism; 3] = [Self::Plain, Self::ScramSha256, Self::ScramSha512];

    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One `[[listener]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Kafka's listener name (`CLIENTS`, `INTERNAL`): what the cluster calls
    /// this endpoint of every broker.
    pub name: String,
    pub listen: SocketAddr,
    /// host:port given to clients that connect here; the listen address when unset.
    #[serde(default)]
    pub advertise: Option<String>,
    #[serde(default)]
    pub protocol: SecurityProtocol,
    /// PEM certificate chain and key (SSL, SASL_SSL); reloaded when they change.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: when set, clients must present a certificate
    /// signed by one of them (mutual TLS), and its subject is their principal.
    #[serde(default)]
    pub tls_client_ca: Option<PathBuf>,
    /// Mechanisms offered (SASL_PLAINTEXT, SASL_SSL); SCRAM-SHA-256 and
    /// SCRAM-SHA-512 when unset.
    #[serde(default)]
    pub sasl_mechanisms: Vec<SaslMechanism>,
}

impl ListenerConfig {
    /// The PLAINTEXT listener a broker serves when no `[[listener]]` is configured.
    pub fn plaintext(listen: SocketAddr, advertise: Option<String>) -> Self {
        Self {
            name: "PLAINTEXT".to_string(),
            listen,
            advertise,
            protocol: SecurityProtocol::Plaintext,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            sasl_mechanisms: Vec::new(),
        }
    }

    /// The mechanisms this listener offers, in Kafka's order.
    pub fn mechanisms(&self) -> Vec<SaslMechanism> {
        if !self.protocol.sasl() {
            return Vec::new();
        }
        if self.sasl_mechanisms.is_empty() {
            return vec![SaslMechanism::ScramSha256, SaslMechanism::ScramSha512];
        }
        let set: BTreeSet<SaslMechanism> = self.sasl_mechanisms.iter().copied().collect();
        set.into_iter().collect()
    }

    /// (host, port) given to clients.
    pub fn advertised(&self) -> (String, i32) {
        self.advertise
            .as_deref()
            .and_then(crate::config::parse_host_port)
            .unwrap_or_else(|| (self.listen.ip().to_string(), self.listen.port() as i32))
    }

    /// Plain text a stranger on the network can read or write as anyone.
    pub fn is_open_to_the_network(&self) -> bool {
        !self.listen.ip().is_loopback() && !self.protocol.tls() && !self.protocol.sasl()
    }
}

/// Checks a set of listeners: names unique and well formed, TLS files given
/// exactly where TLS is served, advertised addresses well formed.
pub fn validate(listeners: &[ListenerConfig]) -> Result<(), String> {
    if listeners.is_empty() {
        return Err("at least one listener is needed".into());
    }
    let mut names = BTreeSet::new();
    let mut addresses = BTreeSet::new();
    for l in listeners {
        if l.name.is_empty() || !l.name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
            return Err(format!("listener name {:?} must be non-empty [A-Z0-9_]", l.name));
        }
        if !names.insert(l.name.as_str()) {
            return Err(format!("listener name {} is used twice", l.name));
        }
        if l.listen.port() != 0 && !addresses.insert(l.listen) {
            return Err(format!("listeners {} and another both listen on {}", l.name, l.listen));
        }
        if let Some(advertise) = &l.advertise {
            if crate::config::parse_host_port(advertise).is_none() {
                return Err(format!("listener {}: advertise {advertise:?} must be HOST:PORT", l.name));
            }
        }
        let has_tls_files = l.tls_cert.is_some() || l.tls_key.is_some() || l.tls_client_ca.is_some();
        if l.protocol.tls() && (l.tls_cert.is_none() || l.tls_key.is_none()) {
            return Err(format!(
                "listener {} serves {} and needs tls_cert and tls_key (PEM files)",
                l.name, l.protocol
            ));
        }
        if !l.protocol.tls() && has_tls_files {
            return Err(format!(
                "listener {} serves {}, which has no TLS: tls_cert, tls_key and tls_client_ca belong to SSL or SASL_SSL",
                l.name, l.protocol
            ));
        }
        if !l.protocol.sasl() && !l.sasl_mechanisms.is_empty() {
            return Err(format!(
                "listener {} serves {}, which has no SASL: sasl_mechanisms belong to SASL_PLAINTEXT or SASL_SSL",
                l.name, l.protocol
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(name: &str, port: u16, protocol: SecurityProtocol) -> ListenerConfig {
        ListenerConfig {
            protocol,
            name: name.into(),
            ..ListenerConfig::plaintext(SocketAddr::from(([127, 0, 0, 1], port)), None)
        }
    }

    #[test]
    fn toml_uses_kafkas_names() {
        #[derive(Deserialize)]
        struct File {
            listener: Vec<ListenerConfig>,
        }
        let file: File = toml::from_str(
            r#"
            [[listener]]
            name = "CLIENTS"
            listen = "0.0.0.0:9093"
            protocol = "SASL_SSL"
            tls_cert = "/c.pem"
            tls_key = "/k.pem"
            sasl_mechanisms = ["PLAIN", "SCRAM-SHA-512"]
            "#,
        )
        .unwrap();
        let l = &file.listener[0];
        assert_eq!(l.protocol, SecurityProtocol::SaslSsl);
        assert_eq!(l.mechanisms(), vec![SaslMechanism::Plain, SaslMechanism::ScramSha512]);
        assert!(validate(&file.listener).is_ok());
        assert!(toml::from_str::<File>("[[listener]]\nname='A'\nlisten='127.0.0.1:1'\nprotocol='TLS'").is_err());
    }

    #[test]
    fn bad_listener_sets_are_refused_with_the_reason() {
        let mut tls = listener("A", 1, SecurityProtocol::Ssl);
        assert!(validate(std::slice::from_ref(&tls)).unwrap_err().contains("tls_cert"));
        tls.tls_cert = Some("/c".into());
        tls.tls_key = Some("/k".into());
        assert!(validate(std::slice::from_ref(&tls)).is_ok());
        let mut plain_with_cert = listener("B", 2, SecurityProtocol::Plaintext);
        plain_with_cert.tls_cert = Some("/c".into());
        assert!(validate(&[plain_with_cert]).unwrap_err().contains("no TLS"));
        let twice = [
            listener("A", 1, SecurityProtocol::Plaintext),
            listener("A", 2, SecurityProtocol::Plaintext),
        ];
        assert!(validate(&twice).unwrap_err().contains("twice"));
        let same_port = [
            listener("A", 1, SecurityProtocol::Plaintext),
            listener("B", 1, SecurityProtocol::Plaintext),
        ];
        assert!(validate(&same_port).is_err());
        assert!(validate(&[listener("lower", 1, SecurityProtocol::Plaintext)]).is_err());
        assert!(validate(&[]).is_err());
    }

    #[test]
    fn only_plaintext_off_loopback_is_open_to_the_network() {
        let mut l = listener("A", 1, SecurityProtocol::Plaintext);
        assert!(!l.is_open_to_the_network());
        l.listen = SocketAddr::from(([0, 0, 0, 0], 1));
        assert!(l.is_open_to_the_network());
        l.protocol = SecurityProtocol::SaslPlaintext;
        assert!(!l.is_open_to_the_network());
        assert_eq!(l.mechanisms(), vec![SaslMechanism::ScramSha256, SaslMechanism::ScramSha512]);
    }
}
