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
pub mod group;
pub mod output;
pub mod produce;
pub mod topic;

use std::time::Duration;

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
}

impl Globals {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
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

/// Kafka's name for an error code, as its docs and tools write it
/// (`UNKNOWN_TOPIC_OR_PARTITION`).
pub fn error_name(code: i16) -> String {
    let Some(error) = kafka_protocol::ResponseError::try_from_code(code) else {
        return "NONE".to_string();
    };
    if let kafka_protocol::ResponseError::Unknown(code) = error {
        return format!("UNKNOWN_ERROR_CODE_{code}");
    }
    let camel = error.to_string();
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

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
