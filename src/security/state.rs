//! What the cluster keeps for security, in the coordination store (the
//! embedded file on a single node, etcd in a cluster): ACLs, SCRAM
//! credentials (salted and hashed) and client quotas. Pure.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::acl::AclBinding;
use super::scram::{ScramAlgorithm, ScramCredential};
use crate::quota::{QuotaEntity, QuotaKind, QuotaSetting, QuotaSettings};

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityState {
    #[serde(default)]
    pub acls: BTreeSet<AclBinding>,
    /// By user, then mechanism.
    #[serde(default)]
    pub scram: BTreeMap<String, BTreeMap<ScramAlgorithm, ScramCredential>>,
    /// Client quotas (AlterClientQuotas).
    #[serde(default)]
    pub quotas: QuotaSettings,
}

/// One change CreateAcls, DeleteAcls, AlterUserScramCredentials or
/// AlterClientQuotas makes.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SecurityChange {
    pub create_acls: Vec<AclBinding>,
    pub delete_acls: Vec<AclBinding>,
    pub upsert_scram: Vec<ScramEntry>,
    pub delete_scram: Vec<(String, ScramAlgorithm)>,
    pub set_quotas: Vec<QuotaSetting>,
    pub remove_quotas: Vec<(QuotaEntity, QuotaKind)>,
}

/// One user's credential for one mechanism, as etcd stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramEntry {
    pub user: String,
    pub mechanism: ScramAlgorithm,
    pub credential: ScramCredential,
}

impl SecurityChange {
    pub fn is_empty(&self) -> bool {
        self.create_acls.is_empty()
            && self.delete_acls.is_empty()
            && self.upsert_scram.is_empty()
            && self.delete_scram.is_empty()
            && self.set_quotas.is_empty()
            && self.remove_quotas.is_empty()
    }
}

impl SecurityState {
    pub fn apply(&mut self, change: &SecurityChange) {
        for acl in &change.delete_acls {
            self.acls.remove(acl);
        }
        self.acls.extend(change.create_acls.iter().cloned());
        for (user, mechanism) in &change.delete_scram {
            if let Some(by_mechanism) = self.scram.get_mut(user) {
                by_mechanism.remove(mechanism);
                if by_mechanism.is_empty() {
                    self.scram.remove(user);
                }
            }
        }
        for entry in &change.upsert_scram {
            self.scram
                .entry(entry.user.clone())
                .or_default()
                .insert(entry.mechanism, entry.credential.clone());
        }
        for (entity, kind) in &change.remove_quotas {
            self.quotas.remove(entity, *kind);
        }
        for setting in &change.set_quotas {
            self.quotas.set(setting);
        }
    }

    pub fn credential(&self, user: &str, mechanism: ScramAlgorithm) -> Option<&ScramCredential> {
        self.scram.get(user)?.get(&mechanism)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::acl::*;

    #[test]
    fn changes_apply_and_round_trip_as_json() {
        let acl = AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: "t".into(),
            pattern_type: PatternType::Literal,
            principal: "User:a".into(),
            host: "*".into(),
            operation: Operation::Read,
            permission: Permission::Allow,
        };
        let credential = ScramCredential::from_password(ScramAlgorithm::Sha256, "pw", b"s", 4096);
        let mut state = SecurityState::default();
        state.apply(&SecurityChange {
            create_acls: vec![acl.clone(), acl.clone()],
            upsert_scram: vec![ScramEntry {
                user: "a".into(),
                mechanism: ScramAlgorithm::Sha256,
                credential: credential.clone(),
            }],
            ..Default::default()
        });
        assert_eq!(state.acls.len(), 1);
        assert_eq!(state.credential("a", ScramAlgorithm::Sha256), Some(&credential));
        assert_eq!(state.credential("a", ScramAlgorithm::Sha512), None);
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<SecurityState>(&json).unwrap(), state);
        state.apply(&SecurityChange {
            delete_acls: vec![acl],
            delete_scram: vec![("a".into(), ScramAlgorithm::Sha256), ("nobody".into(), ScramAlgorithm::Sha512)],
            ..Default::default()
        });
        assert_eq!(state, SecurityState::default());
    }
}
