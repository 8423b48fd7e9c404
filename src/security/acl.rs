//! Kafka's ACL model: bindings (resource pattern, principal, host,
//! operation, allow or deny), the filters DescribeAcls and DeleteAcls match
//! with, and the index a request is authorized against. Pure.
//!
//! The rules are Kafka's (StandardAuthorizer): a super user may do anything;
//! a resource no ACL matches is allowed only under
//! `allow_everyone_if_no_acl_found`; a matching DENY wins over any ALLOW;
//! ALLOW of READ, WRITE, DELETE or ALTER implies DESCRIBE, and ALLOW of
//! ALTER_CONFIGS implies DESCRIBE_CONFIGS; ALL matches every operation.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::Principal;

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $code:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name { $($variant),* }

        impl $name {
            pub fn from_wire(code: i8) -> Option<Self> {
                match code { $($code => Some(Self::$variant),)* _ => None }
            }
            pub fn wire(self) -> i8 {
                match self { $(Self::$variant => $code),* }
            }
        }
    };
}

wire_enum!(
    /// Kafka's ResourceType.
    ResourceType { Any = 1, Topic = 2, Group = 3, Cluster = 4, TransactionalId = 5, DelegationToken = 6, User = 7 }
);
wire_enum!(
    /// Kafka's PatternType.
    PatternType { Any = 1, Match = 2, Literal = 3, Prefixed = 4 }
);
wire_enum!(
    /// Kafka's AclOperation.
    Operation {
        Any = 1, All = 2, Read = 3, Write = 4, Create = 5, Delete = 6, Alter = 7, Describe = 8,
        ClusterAction = 9, DescribeConfigs = 10, AlterConfigs = 11, IdempotentWrite = 12,
        CreateTokens = 13, DescribeTokens = 14,
    }
);
wire_enum!(
    /// Kafka's AclPermissionType.
    Permission { Any = 1, Deny = 2, Allow = 3 }
);

/// The one name of the cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// A literal name, principal or host that matches every one.
pub const WILDCARD: &str = "*";

impl Operation {
    /// What a resource of `kind` reports in authorized-operations fields.
    fn supported_by(kind: ResourceType) -> &'static [Operation] {
        use Operation::*;
        match kind {
            ResourceType::Topic => &[Read, Write, Create, Delete, Alter, Describe, DescribeConfigs, AlterConfigs],
            ResourceType::Group => &[Read, Describe, Delete],
            ResourceType::Cluster => &[
                Create,
                Alter,
                Describe,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
            ],
            ResourceType::TransactionalId => &[Describe, Write],
            _ => &[],
        }
    }

    /// The operations whose ALLOW also allows this one.
    fn allowed_by(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            Describe => &[Describe, Read, Write, Delete, Alter, All],
            DescribeConfigs => &[DescribeConfigs, AlterConfigs, All],
            Read => &[Read, All],
            Write => &[Write, All],
            Create => &[Create, All],
            Delete => &[Delete, All],
            Alter => &[Alter, All],
            ClusterAction => &[ClusterAction, All],
            AlterConfigs => &[AlterConfigs, All],
            IdempotentWrite => &[IdempotentWrite, All],
            CreateTokens => &[CreateTokens, All],
            DescribeTokens => &[DescribeTokens, All],
            Any | All => &[All],
        }
    }
}

/// One ACL, as CreateAcls takes it and the cluster stores it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    pub principal: String,
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBinding {
    /// Checks a binding CreateAcls was given, with Kafka's reasons.
    pub fn validate(&self) -> Result<(), String> {
        if matches!(self.resource_type, ResourceType::Any) {
            return Err("resource type ANY is a filter, not a resource".into());
        }
        if !matches!(self.pattern_type, PatternType::Literal | PatternType::Prefixed) {
            return Err(format!(
                "pattern type {:?} is a filter; an ACL is LITERAL or PREFIXED",
                self.pattern_type
            ));
        }
        if matches!(self.operation, Operation::Any) {
            return Err("operation ANY is a filter; an ACL names an operation or ALL".into());
        }
        if matches!(self.permission, Permission::Any) {
            return Err("permission ANY is a filter; an ACL is ALLOW or DENY".into());
        }
        if self.resource_name.is_empty() {
            return Err("resource name must not be empty".into());
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return Err(format!("the cluster resource is named {CLUSTER_NAME}"));
        }
        if Principal::parse(&self.principal).is_none() {
            return Err(format!("principal {:?} must be Type:name, such as User:alice", self.principal));
        }
        if self.host.is_empty() {
            return Err("host must not be empty (use * for any host)".into());
        }
        Ok(())
    }

    fn matches_resource(&self, kind: ResourceType, name: &str) -> bool {
        self.resource_type == kind
            && match self.pattern_type {
                PatternType::Literal => self.resource_name == name || self.resource_name == WILDCARD,
                PatternType::Prefixed => name.starts_with(&self.resource_name),
                _ => false,
            }
    }

    fn applies_to(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == "User:*") && (self.host == host || self.host == WILDCARD)
    }
}

/// What DescribeAcls and DeleteAcls select: `None` fields match anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: ResourceType,
    pub resource_name: Option<String>,
    pub pattern_type: PatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclFilter {
    pub fn matches(&self, acl: &AclBinding) -> bool {
        let kind = self.resource_type == ResourceType::Any || self.resource_type == acl.resource_type;
        let pattern = match (self.pattern_type, &self.resource_name) {
            (PatternType::Any, None) => true,
            (PatternType::Any, Some(name)) => &acl.resource_name == name,
            (PatternType::Match, None) => true,
            (PatternType::Match, Some(name)) => match acl.pattern_type {
                PatternType::Literal => &acl.resource_name == name || acl.resource_name == WILDCARD,
                PatternType::Prefixed => name.starts_with(&acl.resource_name),
                _ => false,
            },
            (exact, name) => acl.pattern_type == exact && name.as_ref().is_none_or(|n| &acl.resource_name == n),
        };
        let principal = self.principal.as_ref().is_none_or(|p| p == &acl.principal);
        let host = self.host.as_ref().is_none_or(|h| h == &acl.host);
        let operation = self.operation == Operation::Any || self.operation == acl.operation;
        let permission = self.permission == Permission::Any || self.permission == acl.permission;
        kind && pattern && principal && host && operation && permission
    }
}

/// Who is asking, and from where.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub principal: &'a Principal,
    pub host: &'a str,
}

/// The ACLs, indexed for the request path: a literal lookup by (type,
/// name), the wildcard, and prefixed ACLs looked up by each prefix length
/// in use, so a check costs a few hash lookups whatever the number of ACLs.
#[derive(Debug, Default)]
pub struct AclIndex {
    literal: HashMap<(ResourceType, String), Vec<AclBinding>>,
    prefixed: HashMap<(ResourceType, String), Vec<AclBinding>>,
    prefix_lengths: HashMap<ResourceType, BTreeSet<usize>>,
    count: usize,
}

impl AclIndex {
    pub fn new<'a>(acls: impl IntoIterator<Item = &'a AclBinding>) -> Self {
        let mut index = Self::default();
        for acl in acls {
            let key = (acl.resource_type, acl.resource_name.clone());
            match acl.pattern_type {
                PatternType::Literal => index.literal.entry(key).or_default().push(acl.clone()),
                PatternType::Prefixed => {
                    index
                        .prefix_lengths
                        .entry(acl.resource_type)
                        .or_default()
                        .insert(acl.resource_name.len());
                    index.prefixed.entry(key).or_default().push(acl.clone());
                }
                _ => continue,
            }
            index.count += 1;
        }
        index
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Every ACL matching the resource, whoever it is for.
    fn matching<'a>(&'a self, kind: ResourceType, name: &'a str) -> impl Iterator<Item = &'a AclBinding> + 'a {
        let literal = [name, WILDCARD]
            .into_iter()
            .filter_map(move |n| self.literal.get(&(kind, n.to_string())))
            .flatten();
        let lengths = self.prefix_lengths.get(&kind).into_iter().flatten();
        let prefixed = lengths
            .filter_map(move |len| name.get(..*len))
            .filter_map(move |prefix| self.prefixed.get(&(kind, prefix.to_string())))
            .flatten();
        literal.chain(prefixed).filter(move |acl| acl.matches_resource(kind, name))
    }
}

/// The policy a broker enforces: off (everything allowed), or ACLs with
/// super users and the no-ACL default.
#[derive(Debug, Default, Clone)]
pub struct Policy {
    pub enabled: bool,
    pub super_users: HashSet<String>,
    pub allow_everyone_if_no_acl_found: bool,
}

impl Policy {
    pub fn authorize(&self, acls: &AclIndex, who: Requester<'_>, operation: Operation, kind: ResourceType, name: &str) -> bool {
        if !self.enabled || self.super_users.contains(who.principal.as_str()) {
            return true;
        }
        let mut any = false;
        let mut allowed = false;
        for acl in acls.matching(kind, name) {
            any = true;
            if !acl.applies_to(who.principal.as_str(), who.host) {
                continue;
            }
            match acl.permission {
                Permission::Deny if acl.operation == operation || acl.operation == Operation::All => return false,
                Permission::Allow if operation.allowed_by().contains(&acl.operation) => allowed = true,
                _ => {}
            }
        }
        allowed || (!any && self.allow_everyone_if_no_acl_found)
    }

    /// Kafka's authorized-operations bit set for one resource.
    pub fn authorized_operations(&self, acls: &AclIndex, who: Requester<'_>, kind: ResourceType, name: &str) -> i32 {
        Operation::supported_by(kind)
            .iter()
            .filter(|op| self.authorize(acls, who, **op, kind, name))
            .fold(0, |bits, op| bits | (1 << op.wire()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(kind: ResourceType, name: &str, pattern: PatternType, principal: &str, op: Operation, perm: Permission) -> AclBinding {
        AclBinding {
            resource_type: kind,
            resource_name: name.into(),
            pattern_type: pattern,
            principal: principal.into(),
            host: "*".into(),
            operation: op,
            permission: perm,
        }
    }

    fn policy() -> Policy {
        Policy {
            enabled: true,
            super_users: ["User:admin".to_string()].into(),
            allow_everyone_if_no_acl_found: false,
        }
    }

    const TOPIC: ResourceType = ResourceType::Topic;

    #[test]
    fn prefixed_read_allows_read_and_describe_only() {
        let acls = AclIndex::new(&[acl(
            TOPIC,
            "app-",
            PatternType::Prefixed,
            "User:alice",
            Operation::Read,
            Permission::Allow,
        )]);
        let alice = Principal::user("alice");
        let who = Requester {
            principal: &alice,
            host: "10.0.0.1",
        };
        let p = policy();
        assert!(p.authorize(&acls, who, Operation::Read, TOPIC, "app-orders"));
        assert!(p.authorize(&acls, who, Operation::Describe, TOPIC, "app-orders"));
        assert!(!p.authorize(&acls, who, Operation::Write, TOPIC, "app-orders"));
        assert!(!p.authorize(&acls, who, Operation::Read, TOPIC, "other"));
        assert!(!p.authorize(&acls, who, Operation::Read, TOPIC, "app"));
        assert!(!p.authorize(&acls, who, Operation::Read, ResourceType::Group, "app-orders"));
        let bob = Principal::user("bob");
        assert!(!p.authorize(
            &acls,
            Requester {
                principal: &bob,
                host: "h"
            },
            Operation::Read,
            TOPIC,
            "app-x"
        ));
        let admin = Principal::user("admin");
        assert!(p.authorize(
            &acls,
            Requester {
                principal: &admin,
                host: "h"
            },
            Operation::Delete,
            TOPIC,
            "x"
        ));
        let bits = p.authorized_operations(&acls, who, TOPIC, "app-1");
        assert_eq!(bits, (1 << 3) | (1 << 8));
    }

    #[test]
    fn deny_wins_and_all_and_wildcards_match() {
        let acls = AclIndex::new(&[
            acl(TOPIC, "*", PatternType::Literal, "User:*", Operation::All, Permission::Allow),
            acl(
                TOPIC,
                "secret",
                PatternType::Literal,
                "User:alice",
                Operation::Read,
                Permission::Deny,
            ),
            acl(TOPIC, "locked-", PatternType::Prefixed, "User:*", Operation::All, Permission::Deny),
        ]);
        let alice = Principal::user("alice");
        let who = Requester {
            principal: &alice,
            host: "h",
        };
        let p = policy();
        assert!(p.authorize(&acls, who, Operation::Write, TOPIC, "anything"));
        assert!(!p.authorize(&acls, who, Operation::Read, TOPIC, "secret"));
        assert!(p.authorize(&acls, who, Operation::Write, TOPIC, "secret"));
        assert!(!p.authorize(&acls, who, Operation::Describe, TOPIC, "locked-1"));
    }

    #[test]
    fn hosts_restrict_and_no_acl_default_applies_per_resource() {
        let mut only_here = acl(TOPIC, "t", PatternType::Literal, "User:alice", Operation::Read, Permission::Allow);
        only_here.host = "10.0.0.1".into();
        let acls = AclIndex::new(&[only_here]);
        let alice = Principal::user("alice");
        let mut p = policy();
        assert!(p.authorize(
            &acls,
            Requester {
                principal: &alice,
                host: "10.0.0.1"
            },
            Operation::Read,
            TOPIC,
            "t"
        ));
        assert!(!p.authorize(
            &acls,
            Requester {
                principal: &alice,
                host: "10.0.0.2"
            },
            Operation::Read,
            TOPIC,
            "t"
        ));
        let anywhere = Requester {
            principal: &alice,
            host: "h",
        };
        assert!(!p.authorize(&acls, anywhere, Operation::Read, TOPIC, "no-acls"));
        p.allow_everyone_if_no_acl_found = true;
        assert!(p.authorize(&acls, anywhere, Operation::Read, TOPIC, "no-acls"));
        // An ACL on the resource, even for someone else, ends the default.
        assert!(!p.authorize(
            &acls,
            Requester {
                principal: &alice,
                host: "10.0.0.2"
            },
            Operation::Read,
            TOPIC,
            "t"
        ));
        p.enabled = false;
        assert!(p.authorize(&acls, anywhere, Operation::Delete, TOPIC, "t"));
    }

    #[test]
    fn filters_follow_kafkas_pattern_rules() {
        let lit = acl(TOPIC, "orders", PatternType::Literal, "User:a", Operation::Read, Permission::Allow);
        let star = acl(TOPIC, "*", PatternType::Literal, "User:a", Operation::Read, Permission::Allow);
        let pre = acl(TOPIC, "ord", PatternType::Prefixed, "User:b", Operation::Write, Permission::Deny);
        let filter = |pattern, name: Option<&str>| AclFilter {
            resource_type: ResourceType::Any,
            resource_name: name.map(str::to_string),
            pattern_type: pattern,
            principal: None,
            host: None,
            operation: Operation::Any,
            permission: Permission::Any,
        };
        let select = |f: &AclFilter| [&lit, &star, &pre].into_iter().filter(|a| f.matches(a)).count();
        assert_eq!(select(&filter(PatternType::Any, None)), 3);
        assert_eq!(select(&filter(PatternType::Any, Some("orders"))), 1);
        assert_eq!(select(&filter(PatternType::Match, Some("orders"))), 3);
        assert_eq!(select(&filter(PatternType::Literal, Some("orders"))), 1);
        assert_eq!(select(&filter(PatternType::Prefixed, None)), 1);
        assert_eq!(select(&filter(PatternType::Prefixed, Some("orders"))), 0);
        let mut by_principal = filter(PatternType::Any, None);
        by_principal.principal = Some("User:b".into());
        by_principal.permission = Permission::Deny;
        assert_eq!(select(&by_principal), 1);
    }

    #[test]
    fn bindings_that_are_filters_or_malformed_are_refused() {
        let good = acl(TOPIC, "t", PatternType::Literal, "User:a", Operation::Read, Permission::Allow);
        assert!(good.validate().is_ok());
        let bad = [
            AclBinding {
                resource_type: ResourceType::Any,
                ..good.clone()
            },
            AclBinding {
                pattern_type: PatternType::Match,
                ..good.clone()
            },
            AclBinding {
                operation: Operation::Any,
                ..good.clone()
            },
            AclBinding {
                permission: Permission::Any,
                ..good.clone()
            },
            AclBinding {
                resource_name: String::new(),
                ..good.clone()
            },
            AclBinding {
                principal: "alice".into(),
                ..good.clone()
            },
            AclBinding {
                host: String::new(),
                ..good.clone()
            },
            AclBinding {
                resource_type: ResourceType::Cluster,
                resource_name: "c".into(),
                ..good.clone()
            },
        ];
        for b in bad {
            assert!(b.validate().is_err(), "{b:?}");
        }
        assert_eq!(Operation::from_wire(12), Some(Operation::IdempotentWrite));
        assert_eq!(Operation::from_wire(0), None);
        assert_eq!(ResourceType::from_wire(4).map(ResourceType::wire), Some(4));
    }

    /// Property: the index decides exactly as a scan over every ACL would.
    #[test]
    fn the_index_agrees_with_a_full_scan() {
        let mut rng = crate::seeded::Seeded::new(17);
        let names = ["a", "ab", "abc", "b", "*", "ba"];
        let principals = ["User:x", "User:y", "User:*"];
        let ops = [
            Operation::Read,
            Operation::Write,
            Operation::All,
            Operation::Describe,
            Operation::Alter,
        ];
        let pick = |rng: &mut crate::seeded::Seeded, n: usize| rng.below(n as u64) as usize;
        for _ in 0..200 {
            let acls: Vec<AclBinding> = (0..pick(&mut rng, 8))
                .map(|_| AclBinding {
                    resource_type: if pick(&mut rng, 4) == 0 { ResourceType::Group } else { TOPIC },
                    resource_name: names[pick(&mut rng, names.len())].into(),
                    pattern_type: if pick(&mut rng, 2) == 0 {
                        PatternType::Literal
                    } else {
                        PatternType::Prefixed
                    },
                    principal: principals[pick(&mut rng, 3)].into(),
                    host: "*".into(),
                    operation: ops[pick(&mut rng, ops.len())],
                    permission: if pick(&mut rng, 3) == 0 {
                        Permission::Deny
                    } else {
                        Permission::Allow
                    },
                })
                .collect();
            let index = AclIndex::new(&acls);
            let p = Policy {
                allow_everyone_if_no_acl_found: pick(&mut rng, 2) == 0,
                ..policy()
            };
            for name in ["a", "abc", "abd", "b", "c", "bab"] {
                for principal in ["x", "y"] {
                    let who = Principal::user(principal);
                    let who = Requester {
                        principal: &who,
                        host: "h",
                    };
                    for op in [Operation::Read, Operation::Write, Operation::Describe] {
                        let matching: Vec<&AclBinding> = acls.iter().filter(|a| a.matches_resource(TOPIC, name)).collect();
                        let applies = |a: &&&AclBinding| a.applies_to(who.principal.as_str(), "h");
                        let denied = matching
                            .iter()
                            .filter(applies)
                            .any(|a| a.permission == Permission::Deny && (a.operation == op || a.operation == Operation::All));
                        let allowed = matching
                            .iter()
                            .filter(applies)
                            .any(|a| a.permission == Permission::Allow && op.allowed_by().contains(&a.operation));
                        let expected = !denied && (allowed || (matching.is_empty() && p.allow_everyone_if_no_acl_found));
                        assert_eq!(p.authorize(&index, who, op, TOPIC, name), expected, "{acls:?} {name} {op:?}");
                    }
                }
            }
        }
    }
}
