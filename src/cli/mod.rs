//! The operator's command line: `sediment <noun> <verb>` subcommands that
//! speak the Kafka protocol (the `kafka-protocol` codec, through
//! `kafka_client`) to any Kafka-compatible broker. Output is a human table
//! by default and JSON with `--format json`; a failure is one line on
//! stderr naming Kafka's error, with a hint, and an exit code that says
//! what kind of failure it was (see `CliError::exit_code`).

pub mod archive;
pub mod client;
pub mod cluster;
pub mod consume;
mod consume_group;
pub mod group;
mod member;
pub mod output;
pub mod produce;
pub mod topic;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::kafka_client::{ClientSecurity, SaslLogin};
use crate::security::listener::SaslMechanism;
use crate::security::runtime::Entropy;

/// Settings every client subcommand takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Globals {
    /// Brokers to bootstrap from, HOST:PORT[,HOST:PORT...].
    #[arg(long, env = "SEDIMENT_BROKERS", default_value = "127.0.0.1:9092", global = true)]
    pub brokers: String,
    /// Output: human text, or JSON for scripts.
    #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
    pub format: Format,
    /// Bound on connecting and on each request, in milliseconds.
    #[arg(long, default_value_t = 10_000, global = true)]
    pub timeout_ms: u64,
    /// Connect with TLS, verifying brokers against --tls-ca (default: the
    /// system's CA bundle).
    #[arg(long, env = "SEDIMENT_TLS", global = true)]
    pub tls: bool,
    /// The CA certificates (PEM) brokers are verified against; implies --tls.
    #[arg(long, env = "SEDIMENT_TLS_CA", value_name = "FILE", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) for mutual TLS, with --tls-key.
    #[arg(long, env = "SEDIMENT_TLS_CERT", value_name = "FILE", global = true, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "SEDIMENT_TLS_KEY", value_name = "FILE", global = true, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Log in with SASL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(
        long,
        env = "SEDIMENT_SASL_MECHANISM",
        value_name = "MECHANISM",
        global = true,
        requires = "sasl_user"
    )]
    pub sasl_mechanism: Option<String>,
    /// The SASL user name.
    #[arg(long, env = "SEDIMENT_SASL_USER", value_name = "USER", global = true, requires = "sasl_mechanism")]
    pub sasl_user: Option<String>,
    /// A file holding the SASL password (its trailing newline ignored).
    #[arg(long, env = "SEDIMENT_SASL_PASSWORD_FILE", value_name = "FILE", global = true)]
    pub sasl_password_file: Option<PathBuf>,
    /// The SASL password. Prefer the environment or a file: a flag's value
    /// shows in the process list.
    #[arg(
        long,
        env = "SEDIMENT_SASL_PASSWORD",
        hide_env_values = true,
        global = true,
        conflicts_with = "sasl_password_file"
    )]
    pub sasl_password: Option<String>,
}

/// Where --tls looks for CA certificates without --tls-ca (Debian's and
/// Ubuntu's bundle, which RHEL also links to).
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The names of the TLS flags, for error messages.
const TLS_FLAGS: crate::security::tls::SettingNames = crate::security::tls::SettingNames {
    ca: "--tls-ca",
    cert: "--tls-cert",
    key: "--tls-key",
};

impl Globals {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }

    /// How to reach the brokers: TLS and SASL as the flags say. Files are
    /// read now, so a missing one is a usage error before any connection.
    pub fn security(&self, entropy: Arc<dyn Entropy>) -> Result<ClientSecurity, CliError> {
        let tls = if self.tls || self.tls_ca.is_some() {
            let ca = self.tls_ca.clone().unwrap_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE));
            let identity = self.tls_cert.as_deref().zip(self.tls_key.as_deref());
            Some(crate::security::tls::client_config(&ca, identity, &TLS_FLAGS).map_err(CliError::Invalid)?)
        } else if self.tls_cert.is_some() {
            return Err(CliError::Invalid("--tls-cert needs --tls or --tls-ca".to_string()));
        } else {
            None
        };
        let sasl = match (&self.sasl_mechanism, &self.sasl_user) {
            (Some(mechanism), Some(user)) => {
                let mechanism = SaslMechanism::parse(mechanism).ok_or_else(|| {
                    CliError::Invalid(format!("--sasl-mechanism {mechanism}: give PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"))
                })?;
                let password = match (&self.sasl_password, &self.sasl_password_file) {
                    (Some(password), _) => password.clone(),
                    (None, Some(file)) => std::fs::read_to_string(file)
                        .map(|p| p.trim_end_matches(['\r', '\n']).to_string())
                        .map_err(|e| CliError::Invalid(format!("--sasl-password-file {}: {e}", file.display())))?,
                    (None, None) => {
                        return Err(CliError::Invalid(
                            "--sasl-user needs a password: SEDIMENT_SASL_PASSWORD or --sasl-password-file".to_string(),
                        ))
                    }
                };
                Some(SaslLogin {
                    mechanism,
                    user: user.clone(),
                    password,
                    entropy,
                })
            }
            _ => None,
        };
        Ok(ClientSecurity { tls, sasl })
    }
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Why a subcommand failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// A broker refused: Kafka's error code, and what was refused.
    Kafka { code: i16, context: String },
    /// No broker could be reached, or one did not answer in time.
    Unreachable(String),
    /// The command line asks for something that cannot be done.
    Invalid(String),
    /// `cluster health` found partitions under-replicated or offline.
    Unhealthy(String),
}

/// Exit codes: what a script can tell apart.
pub mod exit {
    /// A broker refused the request (the error is Kafka's).
    pub const REFUSED: u8 = 1;
    /// The command line is wrong (clap uses 2 for its own errors too).
    pub const USAGE: u8 = 2;
    /// No broker reachable, or no answer within `--timeout-ms`.
    pub const UNREACHABLE: u8 = 3;
    /// `cluster health`: a partition is under-replicated or offline.
    pub const UNHEALTHY: u8 = 4;
}

impl CliError {
    pub fn kafka(code: i16, context: impl Into<String>) -> Self {
        CliError::Kafka {
            code,
            context: context.into(),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Kafka { .. } => exit::REFUSED,
            CliError::Invalid(_) => exit::USAGE,
            CliError::Unreachable(_) => exit::UNREACHABLE,
            CliError::Unhealthy(_) => exit::UNHEALTHY,
        }
    }

    /// The one line printed on stderr.
    pub fn line(&self) -> String {
        match self {
            CliError::Kafka { code, context } => {
                let name = error_name(*code);
                match hint(*code) {
                    Some(hint) => format!("sediment: {name}: {context} ({hint})"),
                    None => format!("sediment: {name}: {context}"),
                }
            }
            CliError::Unreachable(why) => {
                format!("sediment: {why} (is a broker running there? set --brokers or SEDIMENT_BROKERS)")
            }
            CliError::Invalid(why) => format!("sediment: {why}"),
            CliError::Unhealthy(why) => format!("sediment: unhealthy: {why}"),
        }
    }
}

/// Prints `text()` or `json()` as `format` asks.
pub fn print(format: Format, text: impl FnOnce() -> String, json: impl FnOnce() -> serde_json::Value) {
    match format {
        Format::Text => print!("{}", text()),
        Format::Json => println!("{}", json()),
    }
}

pub use crate::protocol::error_code::name as error_name;

/// What to do about the errors an operator meets most.
fn hint(code: i16) -> Option<&'static str> {
    use kafka_protocol::ResponseError as E;
    let error = E::try_from_code(code)?;
    Some(match error {
        E::UnknownTopicOrPartition => "list topics with `sediment topic list`",
        E::TopicAlreadyExists => "choose another name, or delete the topic first",
        E::InvalidConfig => "see docs/configuration.md for the topic configs and their values",
        E::InvalidPartitions => "partitions can only be added, up to 10000",
        E::InvalidReplicationFactor => "a topic cannot have more replicas than live brokers",
        E::TopicAuthorizationFailed | E::ClusterAuthorizationFailed | E::GroupAuthorizationFailed => {
            "the principal lacks an ACL for this; see docs/security.md"
        }
        E::InvalidTopicException => "names are 1-249 characters of a-z, A-Z, 0-9, '.', '_' and '-'",
        E::NotController | E::NotLeaderOrFollower | E::LeaderNotAvailable => "the cluster is moving leaders; retry",
        E::UnsupportedVersion => "the broker does not support this request",
        E::SaslAuthenticationFailed => "check --sasl-user and the password (SEDIMENT_SASL_PASSWORD or --sasl-password-file)",
        E::UnsupportedSaslMechanism => "choose one the listener offers with --sasl-mechanism",
        E::IllegalSaslState => "this listener may not take SASL; drop --sasl-mechanism or use the SASL listener",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_named_as_kafka_names_them() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_name(40), "INVALID_CONFIG");
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(9999), "UNKNOWN_ERROR_CODE_9999");
        let line = CliError::kafka(3, "topic \"x\"").line();
        assert_eq!(
            line,
            "sediment: UNKNOWN_TOPIC_OR_PARTITION: topic \"x\" (list topics with `sediment topic list`)"
        );
        assert!(!line.contains('\n'));
        assert_eq!(CliError::kafka(3, "").exit_code(), exit::REFUSED);
        assert_eq!(CliError::Unreachable(String::new()).exit_code(), exit::UNREACHABLE);
        assert_eq!(CliError::Invalid(String::new()).exit_code(), exit::USAGE);
    }
}
