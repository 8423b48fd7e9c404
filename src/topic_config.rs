//! Topic configs with Kafka's keys and meanings, parsed and validated.

use std::collections::BTreeMap;

use crate::log::LogConfig;

/// Every topic config Sediment knows, with its value.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    pub cleanup_policy: String,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: i64,
    pub segment_ms: i64,
    pub local_retention_ms: i64,
    pub local_retention_bytes: i64,
    pub min_insync_replicas: i64,
    pub max_message_bytes: i64,
    pub message_timestamp_type: String,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            cleanup_policy: "delete".into(),
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            segment_bytes: 1 << 30,
            // Kafka rolls weekly; Sediment rolls every 30 s so that every
            // acknowledged record reaches the archive within a minute.
            segment_ms: 30_000,
            // Local disk is a buffer and a cache: keep an hour locally.
            local_retention_ms: 3_600_000,
            local_retention_bytes: -2,
            min_insync_replicas: 1,
            max_message_bytes: 1_048_588,
            message_timestamp_type: "CreateTime".into(),
        }
    }
}

/// The keys, in the order DescribeConfigs lists them.
pub const KEYS: &[&str] = &[
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "local.retention.ms",
    "local.retention.bytes",
    "min.insync.replicas",
    "max.message.bytes",
    "message.timestamp.type",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct InvalidConfig {
    pub key: String,
    pub message: String,
}

fn invalid(key: &str, message: impl Into<String>) -> InvalidConfig {
    InvalidConfig {
        key: key.to_string(),
        message: message.into(),
    }
}

fn parse_long(key: &str, value: &str, min: i64) -> Result<i64, InvalidConfig> {
    let v: i64 = value
        .trim()
        .parse()
        .map_err(|_| invalid(key, format!("{value:?} is not a whole number")))?;
    if v < min {
        return Err(invalid(key, format!("{v} is below the minimum {min}")));
    }
    Ok(v)
}

impl TopicConfig {
    /// Applies `key = value` after validating it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), InvalidConfig> {
        match key {
            "cleanup.policy" => {
                if value != "delete" {
                    return Err(invalid(
                        key,
                        format!("{value:?} is not supported (only \"delete\"; compaction is not implemented)"),
                    ));
                }
                self.cleanup_policy = value.to_string();
            }
            "retention.ms" => self.retention_ms = parse_long(key, value, -1)?,
            "retention.bytes" => self.retention_bytes = parse_long(key, value, -1)?,
            "segment.bytes" => self.segment_bytes = parse_long(key, value, 1024)?,
            "segment.ms" => self.segment_ms = parse_long(key, value, 1)?,
            "local.retention.ms" => self.local_retention_ms = parse_long(key, value, -2)?,
            "local.retention.bytes" => self.local_retention_bytes = parse_long(key, value, -2)?,
            "min.insync.replicas" => self.min_insync_replicas = parse_long(key, value, 1)?,
            "max.message.bytes" => self.max_message_bytes = parse_long(key, value, 0)?,
            "message.timestamp.type" => {
                if value != "CreateTime" && value != "LogAppendTime" {
                    return Err(invalid(key, format!("{value:?} must be CreateTime or LogAppendTime")));
                }
                self.message_timestamp_type = value.to_string();
            }
            _ => return Err(invalid(key, "unknown topic config")),
        }
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<String> {
        Some(match key {
            "cleanup.policy" => self.cleanup_policy.clone(),
            "retention.ms" => self.retention_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "local.retention.ms" => self.local_retention_ms.to_string(),
            "local.retention.bytes" => self.local_retention_bytes.to_string(),
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.type" => self.message_timestamp_type.clone(),
            _ => return None,
        })
    }

    /// `base` with every override applied, or the first invalid one.
    pub fn from_overrides(base: &TopicConfig, overrides: &BTreeMap<String, String>) -> Result<TopicConfig, InvalidConfig> {
        let mut config = base.clone();
        for (key, value) in overrides {
            config.set(key, value)?;
        }
        Ok(config)
    }

    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.segment_bytes.max(1024) as u64,
            segment_ms: self.segment_ms,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            max_message_bytes: self.max_message_bytes.max(0) as usize,
            log_append_time: self.message_timestamp_type == "LogAppendTime",
            // -2 means "as retention.*", as in Kafka.
            local_retention_ms: if self.local_retention_ms == -2 {
                self.retention_ms
            } else {
                self.local_retention_ms
            },
            local_retention_bytes: if self.local_retention_bytes == -2 {
                self.retention_bytes
            } else {
                self.local_retention_bytes
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_round_trips_through_set_and_get() {
        let mut config = TopicConfig::default();
        for key in KEYS {
            let value = config.get(key).unwrap();
            config.set(key, &value).unwrap();
        }
        assert_eq!(config, TopicConfig::default());
    }

    #[test]
    fn invalid_values_name_the_key() {
        let mut config = TopicConfig::default();
        let err = config.set("segment.bytes", "12").unwrap_err();
        assert_eq!(err.key, "segment.bytes");
        assert!(config.set("retention.ms", "soon").is_err());
        assert!(config.set("cleanup.policy", "compact").is_err());
        assert!(config.set("message.timestamp.type", "Whenever").is_err());
        assert!(config.set("no.such.key", "1").is_err());
        config.set("message.timestamp.type", "LogAppendTime").unwrap();
        assert!(config.log_config().log_append_time);
    }
}
