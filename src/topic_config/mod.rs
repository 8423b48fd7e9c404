//! Topic configs with Kafka's keys and meanings, parsed and validated.
//!
//! Every config of a Kafka 4.0 topic is accepted (`catalog`); those
//! Sediment acts on are parsed into typed fields here, the rest are stored
//! and described only.

pub mod catalog;

use std::collections::BTreeMap;

use crate::log::compaction::CompactionConfig;
use crate::log::LogConfig;

pub use catalog::{ConfigDef, Effect, Kind, CATALOG};

/// What `compression.type` asks of the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicCompression {
    /// Keep each producer's codec.
    Producer,
    /// Store batches with this codec (Kafka's codec id), recompressing
    /// those that differ, at this level (`compression.<codec>.level`).
    Codec { codec: i16, level: Option<i32> },
}

/// A topic's configs: every catalog key with its value, and the ones
/// Sediment acts on, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    values: BTreeMap<&'static str, String>,
    pub delete_policy: bool,
    pub compact_policy: bool,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: i64,
    pub segment_ms: i64,
    pub local_retention_ms: i64,
    pub local_retention_bytes: i64,
    pub min_insync_replicas: i64,
    pub max_message_bytes: i64,
    pub log_append_time: bool,
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
    pub compression: TopicCompression,
    pub compaction: CompactionConfig,
    /// `archive.iceberg.enabled`.
    pub iceberg_enabled: bool,
}

/// Where Sediment's defaults differ from Kafka's, and why.
const SEDIMENT_DEFAULTS: &[(&str, &str)] = &[
    // Kafka rolls weekly; Sediment rolls every 30 s so that every
    // acknowledged record reaches the archive within a minute.
    ("segment.ms", "30000"),
    // Local disk is a buffer and a cache: keep an hour locally.
    ("local.retention.ms", "3600000"),
];

/// A config's built-in default: Sediment's where it differs, else Kafka's.
pub fn built_in_default(def: &ConfigDef) -> &'static str {
    SEDIMENT_DEFAULTS
        .iter()
        .find(|(key, _)| *key == def.name)
        .map_or(def.default, |(_, value)| value)
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self::parse(CATALOG.iter().map(|d| (d.name, built_in_default(d).to_string())).collect())
    }
}

/// Every key, in the order DescribeConfigs lists them.
pub fn keys() -> impl Iterator<Item = &'static str> {
    CATALOG.iter().map(|d| d.name)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidConfig {
    pub key: String,
    /// Kafka's wording, for the client.
    pub message: String,
}

fn int(values: &BTreeMap<&'static str, String>, key: &str) -> i64 {
    values.get(key).and_then(|v| v.parse().ok()).unwrap_or_default()
}

impl TopicConfig {
    /// Typed fields from validated values.
    fn parse(values: BTreeMap<&'static str, String>) -> Self {
        let policy = values.get("cleanup.policy").cloned().unwrap_or_default();
        let codec = match values.get("compression.type").map(String::as_str) {
            Some("gzip") => Some((1, "compression.gzip.level")),
            Some("snappy") => Some((2, "")),
            Some("lz4") => Some((3, "compression.lz4.level")),
            Some("zstd") => Some((4, "compression.zstd.level")),
            Some("uncompressed") => Some((0, "")),
            _ => None,
        };
        let compression = match codec {
            None => TopicCompression::Producer,
            Some((codec, level_key)) => TopicCompression::Codec {
                codec,
                level: values.get(level_key).and_then(|v| v.parse().ok()).filter(|l| *l != -1),
            },
        };
        Self {
            delete_policy: policy.split(',').any(|p| p == "delete"),
            compact_policy: policy.split(',').any(|p| p == "compact"),
            retention_ms: int(&values, "retention.ms"),
            retention_bytes: int(&values, "retention.bytes"),
            segment_bytes: int(&values, "segment.bytes"),
            segment_ms: int(&values, "segment.ms"),
            local_retention_ms: int(&values, "local.retention.ms"),
            local_retention_bytes: int(&values, "local.retention.bytes"),
            min_insync_replicas: int(&values, "min.insync.replicas"),
            max_message_bytes: int(&values, "max.message.bytes"),
            log_append_time: values.get("message.timestamp.type").is_some_and(|v| v == "LogAppendTime"),
            timestamp_before_max_ms: int(&values, "message.timestamp.before.max.ms"),
            timestamp_after_max_ms: int(&values, "message.timestamp.after.max.ms"),
            compression,
            iceberg_enabled: values.get("archive.iceberg.enabled").is_none_or(|v| v == "true"),
            compaction: CompactionConfig {
                delete_retention_ms: int(&values, "delete.retention.ms"),
                min_compaction_lag_ms: int(&values, "min.compaction.lag.ms"),
                max_compaction_lag_ms: int(&values, "max.compaction.lag.ms"),
                min_cleanable_dirty_ratio: values.get("min.cleanable.dirty.ratio").and_then(|v| v.parse().ok()).unwrap_or(0.5),
            },
            values,
        }
    }

    /// Applies `key = value` after validating it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), InvalidConfig> {
        let def = catalog::lookup(key).ok_or_else(|| InvalidConfig {
            key: key.to_string(),
            message: format!("Unknown topic config name: {key}"),
        })?;
        let normalized = def.validate(value).map_err(|message| InvalidConfig {
            key: key.to_string(),
            message,
        })?;
        let mut values = std::mem::take(&mut self.values);
        values.insert(def.name, normalized);
        *self = Self::parse(values);
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.values.get(key).cloned()
    }

    /// Rules between configs, as Kafka checks them when a topic is created
    /// or altered.
    fn check_together(&self) -> Result<(), InvalidConfig> {
        let refuse = |key: &str, message: String| {
            Err(InvalidConfig {
                key: key.to_string(),
                message,
            })
        };
        let lag = &self.compaction;
        if lag.min_compaction_lag_ms > lag.max_compaction_lag_ms {
            return refuse(
                "min.compaction.lag.ms",
                format!(
                    "conflict topic config setting min.compaction.lag.ms ({}) > max.compaction.lag.ms ({})",
                    lag.min_compaction_lag_ms, lag.max_compaction_lag_ms
                ),
            );
        }
        Ok(())
    }

    /// `base` with every override applied, or the first invalid one.
    pub fn from_overrides(base: &TopicConfig, overrides: &BTreeMap<String, String>) -> Result<TopicConfig, InvalidConfig> {
        let mut config = base.clone();
        for (key, value) in overrides {
            config.set(key, value)?;
        }
        config.check_together()?;
        Ok(config)
    }

    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.segment_bytes.max(1024) as u64,
            segment_ms: self.segment_ms,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            max_message_bytes: self.max_message_bytes.max(0) as usize,
            log_append_time: self.log_append_time,
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
            delete_policy: self.delete_policy,
            compaction: self.compact_policy.then_some(self.compaction),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_round_trips_through_set_and_get() {
        let mut config = TopicConfig::default();
        for key in keys() {
            let value = config.get(key).unwrap();
            config.set(key, &value).unwrap();
        }
        assert_eq!(config, TopicConfig::default());
        assert_eq!(keys().count(), CATALOG.len());
    }

    #[test]
    fn invalid_values_name_the_key() {
        let mut config = TopicConfig::default();
        let err = config.set("segment.bytes", "12").unwrap_err();
        assert_eq!(err.key, "segment.bytes");
        assert!(config.set("retention.ms", "soon").is_err());
        assert!(config.set("message.timestamp.type", "Whenever").is_err());
        assert_eq!(
            config.set("no.such.key", "1").unwrap_err().message,
            "Unknown topic config name: no.such.key"
        );
        config.set("message.timestamp.type", "LogAppendTime").unwrap();
        assert!(config.log_config().log_append_time);
    }

    #[test]
    fn cleanup_policy_and_compression_are_parsed() {
        let mut config = TopicConfig::default();
        assert!(config.delete_policy && !config.compact_policy);
        assert_eq!(config.compression, TopicCompression::Producer);
        assert!(config.log_config().compaction.is_none());
        config.set("cleanup.policy", "compact").unwrap();
        assert!(!config.delete_policy && config.compact_policy);
        assert!(!config.log_config().delete_policy);
        config.set("cleanup.policy", "delete,compact").unwrap();
        assert!(config.delete_policy && config.compact_policy);
        config.set("min.cleanable.dirty.ratio", "0.1").unwrap();
        assert_eq!(config.log_config().compaction.map(|c| c.min_cleanable_dirty_ratio), Some(0.1));
        config.set("compression.type", "zstd").unwrap();
        assert_eq!(config.compression, TopicCompression::Codec { codec: 4, level: Some(3) });
        config.set("compression.type", "gzip").unwrap();
        assert_eq!(config.compression, TopicCompression::Codec { codec: 1, level: None });
        config.set("compression.gzip.level", "9").unwrap();
        assert_eq!(config.compression, TopicCompression::Codec { codec: 1, level: Some(9) });
    }

    #[test]
    fn configs_are_checked_against_each_other() {
        let base = TopicConfig::default();
        let overrides =
            |pairs: &[(&str, &str)]| -> BTreeMap<String, String> { pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() };
        let err = TopicConfig::from_overrides(
            &base,
            &overrides(&[("min.compaction.lag.ms", "10"), ("max.compaction.lag.ms", "5")]),
        )
        .unwrap_err();
        assert_eq!(err.key, "min.compaction.lag.ms");
        // Local retention is a cache policy here (archiving is always on),
        // so it may exceed retention.ms, as Kafka allows without remote storage.
        assert!(TopicConfig::from_overrides(&base, &overrides(&[("retention.ms", "1000"), ("local.retention.ms", "5000")])).is_ok());
    }
}
