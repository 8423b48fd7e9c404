//! The key layout of one cluster in etcd, in one place. Pure.

/// The keys of one cluster, all under `/<cluster>/` (several clusters share
/// one etcd). Pure, so the layout is tested without etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    root: String,
}

impl Keys {
    pub fn new(cluster: &str) -> Self {
        Self {
            root: format!("/{cluster}/"),
        }
    }

    /// Every key of the cluster starts with this.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Lease-bound; its create_revision is the broker's epoch.
    pub fn broker(&self, id: i32) -> String {
        format!("{}brokers/{id}", self.root)
    }

    pub fn brokers(&self) -> String {
        format!("{}brokers/", self.root)
    }

    pub fn topic(&self, name: &str) -> String {
        format!("{}topics/{name}", self.root)
    }

    pub fn topics(&self) -> String {
        format!("{}topics/", self.root)
    }

    /// `{"next": N}`: the first producer id not yet handed out.
    pub fn producer_ids(&self) -> String {
        format!("{}producer-ids", self.root)
    }

    /// Lease-bound to the controller's session; its create_revision is the
    /// controller epoch.
    pub fn controller(&self) -> String {
        format!("{}controller", self.root)
    }

    /// A partition's `PartitionState`, by topic id (a topic deleted and
    /// created again never inherits its predecessor's state).
    pub fn partition(&self, topic_id: &str, partition: i32) -> String {
        format!("{}partitions/{topic_id}/{partition}", self.root)
    }

    pub fn partitions(&self) -> String {
        format!("{}partitions/", self.root)
    }

    /// One ACL, under the hex SHA-256 of its JSON (etcd keys must not
    /// depend on a name's characters).
    pub fn acl(&self, binding_json: &[u8]) -> String {
        format!("{}acls/{}", self.root, hex_sha256(binding_json))
    }

    pub fn acls(&self) -> String {
        format!("{}acls/", self.root)
    }

    /// One user's SCRAM credential for one mechanism.
    pub fn scram(&self, user: &str, mechanism: &str) -> String {
        format!("{}scram/{}/{mechanism}", self.root, hex_sha256(user.as_bytes()))
    }

    /// One client quota: its entity (hashed) and kind.
    pub fn quota(&self, entity_json: &[u8], kind: &str) -> String {
        format!("{}quotas/{}/{kind}", self.root, hex_sha256(entity_json))
    }

    pub fn quotas(&self) -> String {
        format!("{}quotas/", self.root)
    }

    pub fn scram_all(&self) -> String {
        format!("{}scram/", self.root)
    }

    /// How many times a broker id has started (the single-node leader epoch).
    pub fn starts(&self, id: i32) -> String {
        format!("{}starts/{id}", self.root)
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_under_the_cluster_and_never_prefix_each_other() {
        let k = Keys::new("prod");
        assert_eq!(k.broker(3), "/prod/brokers/3");
        assert_eq!(k.topic("orders"), "/prod/topics/orders");
        assert_eq!(k.producer_ids(), "/prod/producer-ids");
        assert_eq!(k.partition("id-1", 7), "/prod/partitions/id-1/7");
        assert!(k.partition("id-1", 7).starts_with(&k.partitions()));
        assert!(!k.controller().starts_with(&k.partitions()));
        assert!(k.broker(1).starts_with(&k.brokers()));
        assert!(k.topic("a").starts_with(&k.topics()));
        // Another cluster's keys are outside this one's prefixes.
        let other = Keys::new("prod2");
        assert!(!other.broker(1).starts_with(&k.brokers()));
        assert!(!other.topics().starts_with("/prod/"));
    }
}
