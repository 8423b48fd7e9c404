//! What a client quota is set on and what it limits, with Kafka's rules for
//! AlterClientQuotas: which entities and keys are valid, and the messages
//! of its refusals. Pure.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The four quotas a user or client id can have (Kafka's
/// `QuotaConfig.userAndClientQuotaConfigs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaKind {
    /// Bytes per second of produce requests.
    ProducerByteRate,
    /// Bytes per second of fetch responses.
    ConsumerByteRate,
    /// Percent of one request-handling thread's time (100 = one thread).
    RequestPercentage,
    /// Partitions created or deleted per second (KIP-599).
    ControllerMutationRate,
}

impl QuotaKind {
    pub const ALL: [QuotaKind; 4] = [
        QuotaKind::ProducerByteRate,
        QuotaKind::ConsumerByteRate,
        QuotaKind::RequestPercentage,
        QuotaKind::ControllerMutationRate,
    ];

    /// The key AlterClientQuotas and DescribeClientQuotas use.
    pub fn name(self) -> &'static str {
        match self {
            QuotaKind::ProducerByteRate => "producer_byte_rate",
            QuotaKind::ConsumerByteRate => "consumer_byte_rate",
            QuotaKind::RequestPercentage => "request_percentage",
            QuotaKind::ControllerMutationRate => "controller_mutation_rate",
        }
    }

    pub fn parse(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == key)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Kafka types the byte rates as LONG and the others as DOUBLE.
    fn is_integral(self) -> bool {
        matches!(self, QuotaKind::ProducerByteRate | QuotaKind::ConsumerByteRate)
    }

    /// How many units one second of this quota allows, given its value:
    /// request_percentage counts microseconds of handling time.
    pub fn units_per_second(self, value: f64) -> f64 {
        match self {
            QuotaKind::RequestPercentage => value / 100.0 * 1_000_000.0,
            _ => value,
        }
    }
}

/// One side of an entity: a named user or client id, or the default for
/// all of them (a null name on the wire).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityName {
    Default,
    Named(String),
}

impl EntityName {
    fn from_wire(name: Option<&str>) -> Self {
        name.map_or(EntityName::Default, |n| EntityName::Named(n.to_string()))
    }

    pub fn to_wire(&self) -> Option<&str> {
        match self {
            EntityName::Default => None,
            EntityName::Named(n) => Some(n),
        }
    }
}

/// What a quota is set on: a user, a client id, or a user's client id, each
/// named or the default. Kafka's IP entities (connection_creation_rate) are
/// not supported.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuotaEntity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<EntityName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<EntityName>,
}

pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
pub const IP: &str = "ip";

impl QuotaEntity {
    /// The entity's (type, name) pairs as the wire lists them.
    pub fn components(&self) -> Vec<(&'static str, Option<&str>)> {
        let mut out = Vec::with_capacity(2);
        if let Some(user) = &self.user {
            out.push((USER, user.to_wire()));
        }
        if let Some(client) = &self.client_id {
            out.push((CLIENT_ID, client.to_wire()));
        }
        out
    }

    /// An entity from AlterClientQuotas' (type, name) pairs, with Kafka's
    /// checks and messages.
    pub fn from_wire<'a>(components: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> Result<Self, String> {
        let mut entity = QuotaEntity::default();
        let mut seen = Vec::new();
        for (kind, name) in components {
            if seen.contains(&kind) {
                return Err(format!("Invalid client quota entity, duplicate entity entry {kind}"));
            }
            seen.push(kind);
            match kind {
                USER => entity.user = Some(EntityName::from_wire(name)),
                CLIENT_ID => entity.client_id = Some(EntityName::from_wire(name)),
                IP => {
                    return Err("Sediment does not support IP quotas (connection_creation_rate); \
                                quotas can be set on users and client ids"
                        .to_string())
                }
                other => return Err(format!("Unhandled client quota entity type: {other}")),
            }
            if name == Some("") {
                return Err(format!("Empty {kind} not supported"));
            }
        }
        if entity.user.is_none() && entity.client_id.is_none() {
            return Err("Invalid empty client quota entity".to_string());
        }
        Ok(entity)
    }
}

impl fmt::Display for QuotaEntity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .components()
            .into_iter()
            .map(|(kind, name)| format!("{kind}={}", name.unwrap_or("<default>")))
            .collect();
        write!(f, "ClientQuotaEntity({})", parts.join(", "))
    }
}

/// Checks one value AlterClientQuotas sets, with Kafka's messages.
pub fn validate_value(key: &str, value: f64) -> Result<QuotaKind, String> {
    let kind = QuotaKind::parse(key).ok_or_else(|| format!("Invalid configuration key {key}"))?;
    if value.is_nan() || value <= 0.0 {
        return Err(format!("Quota {key} must be greater than 0"));
    }
    if kind.is_integral() {
        if value > i64::MAX as f64 {
            return Err(format!("Proposed value for {key} is too large for a LONG."));
        }
        if (value % 1.0).abs() > 1e-6 {
            return Err(format!("{key} cannot be a fractional value."));
        }
    } else if !value.is_finite() {
        return Err(format!("Quota {key} must be finite"));
    }
    Ok(kind)
}

/// Every quota set, by entity then kind; what the coordination store holds.
#[derive(Debug, Clone, Default)]
pub struct QuotaSettings(pub BTreeMap<QuotaEntity, BTreeMap<QuotaKind, f64>>);

/// One stored value: an entity's quota of one kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaSetting {
    pub entity: QuotaEntity,
    pub kind: QuotaKind,
    pub value: f64,
}

// A stored value is never NaN (`validate_value`), so equality is total.
impl Eq for QuotaSetting {}

impl QuotaSettings {
    pub fn set(&mut self, setting: &QuotaSetting) {
        self.0
            .entry(setting.entity.clone())
            .or_default()
            .insert(setting.kind, setting.value);
    }

    pub fn remove(&mut self, entity: &QuotaEntity, kind: QuotaKind) {
        if let Some(values) = self.0.get_mut(entity) {
            values.remove(&kind);
            if values.is_empty() {
                self.0.remove(entity);
            }
        }
    }

    pub fn get(&self, entity: &QuotaEntity, kind: QuotaKind) -> Option<f64> {
        self.0.get(entity)?.get(&kind).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = QuotaSetting> + '_ {
        self.0.iter().flat_map(|(entity, values)| {
            values.iter().map(|(kind, value)| QuotaSetting {
                entity: entity.clone(),
                kind: *kind,
                value: *value,
            })
        })
    }
}

// Values compare by their bits: a stored quota is never NaN.
impl PartialEq for QuotaSettings {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self.0.iter().zip(&other.0).all(|((e1, v1), (e2, v2))| {
                e1 == e2
                    && v1.len() == v2.len()
                    && v1
                        .iter()
                        .zip(v2)
                        .all(|((k1, x1), (k2, x2))| k1 == k2 && x1.to_bits() == x2.to_bits())
            })
    }
}

impl Eq for QuotaSettings {}

// Stored as a list: JSON objects cannot have an entity as their key.
impl Serialize for QuotaSettings {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for QuotaSettings {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let list = Vec::<QuotaSetting>::deserialize(deserializer)?;
        let mut settings = QuotaSettings::default();
        for setting in &list {
            settings.set(setting);
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(s: &str) -> Option<EntityName> {
        Some(EntityName::Named(s.into()))
    }

    #[test]
    fn entities_follow_kafkas_rules() {
        let both = QuotaEntity::from_wire([(USER, Some("alice")), (CLIENT_ID, None)]).unwrap();
        assert_eq!(both.user, named("alice"));
        assert_eq!(both.client_id, Some(EntityName::Default));
        assert_eq!(both.components(), vec![(USER, Some("alice")), (CLIENT_ID, None)]);
        assert_eq!(both.to_string(), "ClientQuotaEntity(user=alice, client-id=<default>)");
        let refused = |c: &[(&'static str, Option<&'static str>)]| QuotaEntity::from_wire(c.iter().copied()).unwrap_err();
        assert_eq!(refused(&[]), "Invalid empty client quota entity");
        assert_eq!(
            refused(&[(USER, Some("a")), (USER, Some("b"))]),
            "Invalid client quota entity, duplicate entity entry user"
        );
        assert_eq!(refused(&[("group", Some("g"))]), "Unhandled client quota entity type: group");
        assert_eq!(refused(&[(CLIENT_ID, Some(""))]), "Empty client-id not supported");
        assert!(refused(&[(IP, Some("10.0.0.1"))]).contains("IP quotas"));
    }

    #[test]
    fn values_follow_kafkas_rules() {
        assert_eq!(validate_value("producer_byte_rate", 1024.0), Ok(QuotaKind::ProducerByteRate));
        assert_eq!(validate_value("request_percentage", 12.5), Ok(QuotaKind::RequestPercentage));
        assert_eq!(validate_value("bytes", 1.0).unwrap_err(), "Invalid configuration key bytes");
        assert_eq!(
            validate_value("consumer_byte_rate", 0.0).unwrap_err(),
            "Quota consumer_byte_rate must be greater than 0"
        );
        assert!(validate_value("consumer_byte_rate", f64::NAN).is_err());
        assert_eq!(
            validate_value("producer_byte_rate", 10.5).unwrap_err(),
            "producer_byte_rate cannot be a fractional value."
        );
        assert_eq!(
            validate_value("producer_byte_rate", 1e30).unwrap_err(),
            "Proposed value for producer_byte_rate is too large for a LONG."
        );
        assert!(validate_value("controller_mutation_rate", f64::INFINITY).is_err());
    }

    #[test]
    fn settings_round_trip_as_a_json_list() {
        let mut settings = QuotaSettings::default();
        let entity = QuotaEntity {
            user: named("a/b"),
            client_id: None,
        };
        settings.set(&QuotaSetting {
            entity: entity.clone(),
            kind: QuotaKind::ProducerByteRate,
            value: 2048.0,
        });
        let json = serde_json::to_string(&settings).unwrap();
        assert_eq!(
            json,
            r#"[{"entity":{"user":{"named":"a/b"}},"kind":"producer_byte_rate","value":2048.0}]"#
        );
        assert_eq!(serde_json::from_str::<QuotaSettings>(&json).unwrap(), settings);
        settings.remove(&entity, QuotaKind::ProducerByteRate);
        assert!(settings.is_empty());
    }
}
