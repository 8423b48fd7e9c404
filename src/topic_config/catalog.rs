//! Every topic config of a Kafka 4.0 broker: its type, default, rule and
//! broker-level synonyms, and what Sediment does with it. Values are
//! validated with Kafka's rules and refused with Kafka's wording, so tools
//! written against Kafka (Terraform providers, Strimzi, Connect) see the
//! answers they expect.

/// A config's type, as DescribeConfigs reports it (KIP-569).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Boolean,
    String,
    Int,
    Long,
    Double,
    List,
}

impl Kind {
    /// DescribeConfigs' `config_type`.
    pub fn code(self) -> i8 {
        match self {
            Kind::Boolean => 1,
            Kind::String => 2,
            Kind::Int => 3,
            Kind::Long => 5,
            Kind::Double => 6,
            Kind::List => 7,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Boolean => "BOOLEAN",
            Kind::String => "STRING",
            Kind::Int => "INT",
            Kind::Long => "LONG",
            Kind::Double => "DOUBLE",
            Kind::List => "LIST",
        }
    }
}

/// What values a config accepts, beyond its type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    Any,
    AtLeast(i64),
    Between(i64, i64),
    DoubleBetween(f64, f64),
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A comma-separated list of these strings (empty allowed, as in Kafka 4.0).
    ListOf(&'static [&'static str]),
    /// gzip's level: 1 to 9, or -1 for the codec's default.
    GzipLevel,
    /// `*` or `partition:broker` pairs (replication throttles).
    ThrottledReplicas,
}

/// Whether Sediment acts on a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Applied,
    /// Accepted, stored and described, with no effect; the reason is in
    /// docs/configuration.md.
    NoEffect,
}

#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    pub name: &'static str,
    pub kind: Kind,
    /// Kafka's default, as DescribeConfigs shows it.
    pub default: &'static str,
    pub rule: Rule,
    /// Broker-level configs that set the default, highest precedence first.
    pub synonyms: &'static [&'static str],
    pub doc: &'static str,
    pub effect: Effect,
}

const LONG_MAX: &str = "9223372036854775807";
const CODECS: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

macro_rules! def {
    ($name:literal, $kind:ident, $default:expr, $rule:expr, [$($syn:literal),*], $effect:ident, $doc:literal) => {
        ConfigDef {
            name: $name,
            kind: Kind::$kind,
            default: $default,
            rule: $rule,
            synonyms: &[$($syn),*],
            doc: $doc,
            effect: Effect::$effect,
        }
    };
}

/// Kafka 4.0's topic configs, in name order (DescribeConfigs' order).
pub static CATALOG: &[ConfigDef] = &[
    // Sediment's own: not a Kafka config.
    def!("archive.iceberg.enabled", Boolean, "true", Rule::Any, [], Applied,
        "Whether the topic's archive is also an Iceberg table (metadata under topic=<t>/_iceberg/, served by the /iceberg REST catalog). false stops commits; the metadata already written stays."),
    def!("cleanup.policy", List, "delete", Rule::ListOf(&["compact", "delete"]), ["log.cleanup.policy"], Applied,
        "delete: segments go by retention.ms/bytes; compact: the cleaner keeps each key's latest record; both: compacted, and old segments deleted too."),
    def!("compression.gzip.level", Int, "-1", Rule::GzipLevel, ["compression.gzip.level"], Applied,
        "gzip level (1-9, -1 for the codec default) when compression.type=gzip makes the broker recompress."),
    def!("compression.lz4.level", Int, "9", Rule::Between(1, 17), ["compression.lz4.level"], Applied,
        "lz4 level when compression.type=lz4 makes the broker recompress."),
    def!("compression.type", String, "producer", Rule::OneOf(CODECS), ["compression.type"], Applied,
        "The codec batches are stored in: producer keeps the producer's; any other makes the broker recompress batches that differ."),
    def!("compression.zstd.level", Int, "3", Rule::Between(-131072, 22), ["compression.zstd.level"], Applied,
        "zstd level when compression.type=zstd makes the broker recompress."),
    def!("delete.retention.ms", Long, "86400000", Rule::AtLeast(0), ["log.cleaner.delete.retention.ms"], Applied,
        "How long a tombstone stays in a compacted topic after a cleaning pass has seen it."),
    def!("file.delete.delay.ms", Long, "60000", Rule::AtLeast(0), ["log.segment.delete.delay.ms"], NoEffect,
        "Kafka waits this long before deleting a removed segment file; Sediment deletes at once (open readers keep their handle)."),
    def!("flush.messages", Long, LONG_MAX, Rule::AtLeast(1), ["log.flush.interval.messages"], NoEffect,
        "Kafka forces an fsync every this many messages; Sediment's flush policy is the broker's flush setting."),
    def!("flush.ms", Long, LONG_MAX, Rule::AtLeast(0), ["log.flush.interval.ms", "log.flush.scheduler.interval.ms"], NoEffect,
        "Kafka forces an fsync this often; Sediment's flush policy is the broker's flush setting."),
    def!("follower.replication.throttled.replicas", List, "", Rule::ThrottledReplicas, ["follower.replication.throttled.replicas"], NoEffect,
        "Replicas whose follower-side replication is throttled; Sediment does not throttle replication."),
    def!("index.interval.bytes", Int, "4096", Rule::AtLeast(0), ["log.index.interval.bytes"], NoEffect,
        "Bytes between offset index entries; Sediment's in-memory index uses a fixed 4096."),
    def!("leader.replication.throttled.replicas", List, "", Rule::ThrottledReplicas, ["leader.replication.throttled.replicas"], NoEffect,
        "Replicas whose leader-side replication is throttled; Sediment does not throttle replication."),
    def!("local.retention.bytes", Long, "-2", Rule::AtLeast(-2), ["log.local.retention.bytes"], Applied,
        "Bytes of archived data kept on local disk per partition (-2: as retention.bytes)."),
    def!("local.retention.ms", Long, "-2", Rule::AtLeast(-2), ["log.local.retention.ms"], Applied,
        "How long archived data stays on local disk (-2: as retention.ms)."),
    def!("max.compaction.lag.ms", Long, LONG_MAX, Rule::AtLeast(1), ["log.cleaner.max.compaction.lag.ms"], Applied,
        "The longest a record may wait before it is eligible for compaction, whatever the dirty ratio."),
    def!("max.message.bytes", Int, "1048588", Rule::AtLeast(0), ["message.max.bytes"], Applied,
        "The largest record batch the topic accepts."),
    def!("message.downconversion.enable", Boolean, "true", Rule::Any, ["log.message.downconversion.enable"], NoEffect,
        "Down-conversion for pre-0.11 consumers; Sediment serves only v2 batches. Kafka 4.0 no longer accepts this key; Sediment does, for tools written for 3.x."),
    def!("message.timestamp.after.max.ms", Long, "3600000", Rule::AtLeast(0), ["log.message.timestamp.after.max.ms"], Applied,
        "How far in the future a CreateTime timestamp may be; later batches get INVALID_TIMESTAMP."),
    def!("message.timestamp.before.max.ms", Long, LONG_MAX, Rule::AtLeast(0), ["log.message.timestamp.before.max.ms"], Applied,
        "How far in the past a CreateTime timestamp may be; older batches get INVALID_TIMESTAMP."),
    def!("message.timestamp.type", String, "CreateTime", Rule::OneOf(&["CreateTime", "LogAppendTime"]), ["log.message.timestamp.type"], Applied,
        "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches with the broker's clock."),
    def!("min.cleanable.dirty.ratio", Double, "0.5", Rule::DoubleBetween(0.0, 1.0), ["log.cleaner.min.cleanable.ratio"], Applied,
        "The share of a compacted log that must be uncleaned before a cleaning pass runs."),
    def!("min.compaction.lag.ms", Long, "0", Rule::AtLeast(0), ["log.cleaner.min.compaction.lag.ms"], Applied,
        "The shortest time a record stays uncompacted."),
    def!("min.insync.replicas", Int, "1", Rule::AtLeast(1), ["min.insync.replicas"], Applied,
        "Replicas that must hold a batch before acks=all is answered."),
    def!("preallocate", Boolean, "false", Rule::Any, ["log.preallocate"], NoEffect,
        "Kafka preallocates segment files; Sediment grows them as it writes."),
    def!("remote.log.copy.disable", Boolean, "false", Rule::Any, [], NoEffect,
        "Kafka's tiered storage switch; Sediment always archives to object storage."),
    def!("remote.log.delete.on.disable", Boolean, "false", Rule::Any, [], NoEffect,
        "Kafka's tiered storage switch; Sediment always archives to object storage."),
    def!("remote.storage.enable", Boolean, "false", Rule::Any, [], NoEffect,
        "Kafka's tiered storage switch; Sediment always archives to object storage."),
    def!("retention.bytes", Long, "-1", Rule::Any, ["log.retention.bytes"], Applied,
        "The most bytes a partition keeps, archive included (-1: no limit)."),
    def!("retention.ms", Long, "604800000", Rule::AtLeast(-1), ["log.retention.ms", "log.retention.minutes", "log.retention.hours"], Applied,
        "How long records are kept, archive included (-1: forever)."),
    def!("segment.bytes", Int, "1073741824", Rule::AtLeast(14), ["log.segment.bytes"], Applied,
        "The largest local segment file; a full segment is sealed and archived."),
    def!("segment.index.bytes", Int, "10485760", Rule::AtLeast(4), ["log.index.size.max.bytes"], NoEffect,
        "Kafka's index file size; Sediment's index is in memory."),
    def!("segment.jitter.ms", Long, "0", Rule::AtLeast(0), ["log.roll.jitter.ms", "log.roll.jitter.hours"], NoEffect,
        "Kafka's random delay of segment rolls; Sediment rolls at segment.ms."),
    def!("segment.ms", Long, "604800000", Rule::AtLeast(1), ["log.roll.ms", "log.roll.hours"], Applied,
        "How often the active segment is sealed (and so archived)."),
    def!("unclean.leader.election.enable", Boolean, "false", Rule::Any, ["unclean.leader.election.enable"], NoEffect,
        "Sediment never elects a replica outside the ISR: an acknowledged record is never lost."),
];

/// The definition of `name`, if it is a topic config.
pub fn lookup(name: &str) -> Option<&'static ConfigDef> {
    CATALOG.binary_search_by(|d| d.name.cmp(name)).ok().map(|i| &CATALOG[i])
}

/// Kafka's reason for refusing a value: "Invalid value V for configuration
/// N: REASON".
pub fn invalid_value(def: &ConfigDef, value: impl std::fmt::Display, reason: impl std::fmt::Display) -> String {
    format!("Invalid value {value} for configuration {}: {reason}", def.name)
}

impl ConfigDef {
    /// The value as Sediment stores it (trimmed, lists without spaces), or
    /// Kafka's message for why it is refused.
    pub fn validate(&self, value: &str) -> Result<String, String> {
        let trimmed = value.trim();
        let not_a = || invalid_value(self, value, format_args!("Not a number of type {}", self.kind.name()));
        match self.kind {
            Kind::Boolean => match trimmed.to_ascii_lowercase().as_str() {
                "true" => Ok("true".into()),
                "false" => Ok("false".into()),
                _ => Err(invalid_value(self, value, "Expected value to be either true or false")),
            },
            Kind::Int => {
                let v: i32 = trimmed.parse().map_err(|_| not_a())?;
                self.check_number(value, v as i64)?;
                Ok(v.to_string())
            }
            Kind::Long => {
                let v: i64 = trimmed.parse().map_err(|_| not_a())?;
                self.check_number(value, v)?;
                Ok(v.to_string())
            }
            Kind::Double => {
                let v: f64 = trimmed.parse().map_err(|_| not_a())?;
                if !v.is_finite() {
                    return Err(not_a());
                }
                if let Rule::DoubleBetween(min, max) = self.rule {
                    // Kafka's bounds are whole numbers, printed as such.
                    if v < min {
                        return Err(invalid_value(self, value, format_args!("Value must be at least {min}")));
                    }
                    if v > max {
                        return Err(invalid_value(self, value, format_args!("Value must be no more than {max}")));
                    }
                }
                Ok(trimmed.to_string())
            }
            Kind::String => {
                if let Rule::OneOf(allowed) = self.rule {
                    if !allowed.contains(&trimmed) {
                        return Err(invalid_value(
                            self,
                            value,
                            format_args!("String must be one of: {}", allowed.join(", ")),
                        ));
                    }
                }
                Ok(trimmed.to_string())
            }
            Kind::List => {
                let items: Vec<&str> = trimmed.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
                match self.rule {
                    Rule::ListOf(allowed) => {
                        if let Some(bad) = items.iter().find(|i| !allowed.contains(i)) {
                            return Err(invalid_value(
                                self,
                                bad,
                                format_args!("String must be one of: {}", allowed.join(", ")),
                            ));
                        }
                    }
                    Rule::ThrottledReplicas => {
                        let valid = |i: &&str| {
                            let mut parts = i.split(':');
                            matches!((parts.next().map(str::parse::<i32>), parts.next().map(str::parse::<i32>), parts.next()), (Some(Ok(p)), Some(Ok(b)), None) if p >= 0 && b >= 0)
                        };
                        if !(items == ["*"] || items.iter().all(valid)) {
                            return Err(invalid_value(
                                self,
                                format_args!("[{}]", items.join(", ")),
                                format_args!(
                                    "{} must be the literal '*' or a list of replicas in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],...",
                                    self.name
                                ),
                            ));
                        }
                    }
                    _ => {}
                }
                Ok(items.join(","))
            }
        }
    }

    fn check_number(&self, value: &str, v: i64) -> Result<(), String> {
        match self.rule {
            Rule::AtLeast(min) if v < min => Err(invalid_value(self, value, format_args!("Value must be at least {min}"))),
            Rule::Between(min, _) if v < min => Err(invalid_value(self, value, format_args!("Value must be at least {min}"))),
            Rule::Between(_, max) if v > max => Err(invalid_value(self, value, format_args!("Value must be no more than {max}"))),
            Rule::GzipLevel if !(v == -1 || (1..=9).contains(&v)) => {
                Err(invalid_value(self, value, "Value must be between 1 and 9 or equal to -1"))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_is_sorted_and_every_default_is_valid() {
        for pair in CATALOG.windows(2) {
            assert!(pair[0].name < pair[1].name, "{} before {}", pair[0].name, pair[1].name);
        }
        for def in CATALOG {
            assert_eq!(def.validate(def.default).as_deref(), Ok(def.default), "{}", def.name);
            assert_eq!(lookup(def.name).map(|d| d.name), Some(def.name));
        }
        assert!(lookup("no.such.config").is_none());
    }

    #[test]
    fn values_are_refused_with_kafkas_wording() {
        let check = |name: &str, value: &str| lookup(name).unwrap().validate(value);
        assert_eq!(
            check("retention.ms", "-5"),
            Err("Invalid value -5 for configuration retention.ms: Value must be at least -1".into())
        );
        assert_eq!(
            check("retention.ms", "soon"),
            Err("Invalid value soon for configuration retention.ms: Not a number of type LONG".into())
        );
        assert_eq!(
            check("max.message.bytes", "3000000000"),
            Err("Invalid value 3000000000 for configuration max.message.bytes: Not a number of type INT".into())
        );
        assert_eq!(
            check("compression.type", "brotli"),
            Err("Invalid value brotli for configuration compression.type: String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer".into())
        );
        assert_eq!(check("cleanup.policy", "compact, delete"), Ok("compact,delete".into()));
        assert_eq!(check("cleanup.policy", ""), Ok(String::new()), "Kafka 4.0 accepts an empty policy");
        assert_eq!(
            check("min.cleanable.dirty.ratio", "1.5"),
            Err("Invalid value 1.5 for configuration min.cleanable.dirty.ratio: Value must be no more than 1".into())
        );
        assert!(check("cleanup.policy", "compact,shred").unwrap_err().contains("shred"));
        assert_eq!(check("preallocate", "TRUE"), Ok("true".into()));
        assert!(check("preallocate", "yes")
            .unwrap_err()
            .ends_with("Expected value to be either true or false"));
        assert!(check("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(check("min.cleanable.dirty.ratio", "NaN").is_err());
        assert_eq!(check("min.cleanable.dirty.ratio", "0.25"), Ok("0.25".into()));
        assert!(check("compression.gzip.level", "0").is_err());
        assert!(check("compression.gzip.level", "-1").is_ok());
        assert!(check("compression.zstd.level", "23")
            .unwrap_err()
            .ends_with("Value must be no more than 22"));
        assert_eq!(check("leader.replication.throttled.replicas", "0:1, 1:2"), Ok("0:1,1:2".into()));
        assert!(check("leader.replication.throttled.replicas", "*").is_ok());
        assert!(check("leader.replication.throttled.replicas", "0-1").is_err());
    }
}
