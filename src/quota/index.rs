//! Which quota applies to a request (Kafka's eight levels of precedence,
//! per kind of quota) and which entities a DescribeClientQuotas filter
//! matches. Built once per change of the settings; looked up per request
//! without allocating. Pure.

use std::collections::HashMap;

use super::entity::{EntityName, QuotaEntity, QuotaKind, QuotaSettings, CLIENT_ID, IP, USER};

/// The limit that applies to one request, and whom it is shared with:
/// every request with the same user (if `by_user`) and the same client id
/// (if `by_client`) draws on one budget, as Kafka's quota metric tags do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Applied {
    pub limit: f64,
    pub by_user: bool,
    pub by_client: bool,
}

#[derive(Debug, Default, Clone)]
struct Level {
    /// (user, no client id)
    alone: Option<f64>,
    /// (user, named client id)
    clients: HashMap<String, f64>,
    /// (user, default client id)
    default_client: Option<f64>,
}

#[derive(Debug, Default, Clone)]
struct KindIndex {
    users: HashMap<String, Level>,
    default_user: Level,
    clients: HashMap<String, f64>,
    default_client: Option<f64>,
}

impl KindIndex {
    fn insert(&mut self, entity: &QuotaEntity, value: f64) {
        match (&entity.user, &entity.client_id) {
            (Some(user), client) => {
                let level = match user {
                    EntityName::Named(name) => self.users.entry(name.clone()).or_default(),
                    EntityName::Default => &mut self.default_user,
                };
                match client {
                    None => level.alone = Some(value),
                    Some(EntityName::Default) => level.default_client = Some(value),
                    Some(EntityName::Named(c)) => {
                        level.clients.insert(c.clone(), value);
                    }
                }
            }
            (None, Some(EntityName::Named(c))) => {
                self.clients.insert(c.clone(), value);
            }
            (None, Some(EntityName::Default)) => self.default_client = Some(value),
            (None, None) => {}
        }
    }

    /// Kafka's order: user+client, user+default client, user, default
    /// user+client, default user+default client, default user, client,
    /// default client.
    fn resolve(&self, user: &str, client: &str) -> Option<Applied> {
        let shared = |limit, by_user, by_client| Applied { limit, by_user, by_client };
        let levels = self.users.get(user).into_iter().chain(std::iter::once(&self.default_user));
        for level in levels {
            if let Some(limit) = level.clients.get(client).or(level.default_client.as_ref()) {
                return Some(shared(*limit, true, true));
            }
            if let Some(limit) = level.alone {
                return Some(shared(limit, true, false));
            }
        }
        let limit = self.clients.get(client).or(self.default_client.as_ref())?;
        Some(shared(*limit, false, true))
    }
}

/// The settings in force, indexed for lookups by request.
#[derive(Debug, Default, Clone)]
pub struct QuotaIndex {
    kinds: [KindIndex; 4],
    empty: bool,
}

impl QuotaIndex {
    pub fn new(settings: &QuotaSettings) -> Self {
        let mut index = QuotaIndex {
            empty: settings.is_empty(),
            ..Default::default()
        };
        for setting in settings.iter() {
            index.kinds[setting.kind.index()].insert(&setting.entity, setting.value);
        }
        index
    }

    /// No quota is set: nothing to look up.
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// The quota of `kind` a request from `user` (the principal's name) with
    /// `client` id is held to, if any.
    pub fn resolve(&self, kind: QuotaKind, user: &str, client: &str) -> Option<Applied> {
        if self.empty {
            return None;
        }
        self.kinds[kind.index()].resolve(user, client)
    }
}

/// One component of a DescribeClientQuotas filter.
#[derive(Debug, Clone, Copy)]
pub struct FilterComponent<'a> {
    pub entity_type: &'a str,
    pub match_type: i8,
    pub name: Option<&'a str>,
}

pub const MATCH_EXACT: i8 = 0;
pub const MATCH_DEFAULT: i8 = 1;
pub const MATCH_SPECIFIED: i8 = 2;

/// Why a filter was refused: Kafka's error and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterError {
    InvalidRequest(String),
    UnsupportedEntityType(String),
}

/// What must hold of one side (user or client id) of a matching entity.
#[derive(Debug, Clone, PartialEq)]
enum Want {
    Exactly(EntityName),
    Present,
}

/// A checked DescribeClientQuotas filter (Kafka's `ClientQuotasImage.describe`).
#[derive(Debug, Clone)]
pub struct Filter {
    user: Option<Want>,
    client: Option<Want>,
    /// An ip component: no entity here matches it.
    ip: bool,
    strict: bool,
}

impl Filter {
    pub fn new<'a>(components: impl IntoIterator<Item = FilterComponent<'a>>, strict: bool) -> Result<Self, FilterError> {
        let invalid = |m: String| Err(FilterError::InvalidRequest(m));
        let mut filter = Filter {
            user: None,
            client: None,
            ip: false,
            strict,
        };
        let mut seen: Vec<&str> = Vec::new();
        for c in components {
            if c.entity_type.is_empty() {
                return invalid("Invalid empty entity type.".into());
            }
            if seen.contains(&c.entity_type) {
                return invalid(format!("Entity type {} cannot appear more than once in the filter.", c.entity_type));
            }
            seen.push(c.entity_type);
            if ![USER, CLIENT_ID, IP].contains(&c.entity_type) {
                return Err(FilterError::UnsupportedEntityType(format!(
                    "Unsupported entity type {}",
                    c.entity_type
                )));
            }
            let want = match (c.match_type, c.name) {
                (MATCH_EXACT, Some(name)) => Want::Exactly(EntityName::Named(name.to_string())),
                (MATCH_EXACT, None) => return invalid("Request specified MATCH_TYPE_EXACT, but set match string to null.".into()),
                (MATCH_DEFAULT, None) => Want::Exactly(EntityName::Default),
                (MATCH_DEFAULT, Some(_)) => {
                    return invalid("Request specified MATCH_TYPE_DEFAULT, but also specified a match string.".into())
                }
                (MATCH_SPECIFIED, None) => Want::Present,
                (MATCH_SPECIFIED, Some(_)) => {
                    return invalid("Request specified MATCH_TYPE_SPECIFIED, but also specified a match string.".into())
                }
                (other, _) => return invalid(format!("Unknown match type {other}")),
            };
            match c.entity_type {
                USER => filter.user = Some(want),
                CLIENT_ID => filter.client = Some(want),
                _ => filter.ip = true,
            }
        }
        if filter.ip && (filter.user.is_some() || filter.client.is_some()) {
            return invalid(
                "Invalid entity filter component combination. IP filter component should not be used with user or clientId filter component."
                    .into(),
            );
        }
        Ok(filter)
    }

    pub fn matches(&self, entity: &QuotaEntity) -> bool {
        if self.ip {
            return false;
        }
        let side = |want: &Option<Want>, have: &Option<EntityName>| match (want, have) {
            (None, _) => !self.strict || have.is_none(),
            (Some(Want::Present), have) => have.is_some(),
            (Some(Want::Exactly(name)), Some(have)) => name == have,
            (Some(Want::Exactly(_)), None) => false,
        };
        side(&self.user, &entity.user) && side(&self.client, &entity.client_id)
    }
}

#[cfg(test)]
mod tests {
    use super::super::entity::QuotaSetting;
    use super::*;

    fn entity(user: Option<Option<&str>>, client: Option<Option<&str>>) -> QuotaEntity {
        let name = |n: Option<&str>| n.map_or(EntityName::Default, |n| EntityName::Named(n.into()));
        QuotaEntity {
            user: user.map(name),
            client_id: client.map(name),
        }
    }

    fn index(settings: &[(QuotaEntity, f64)]) -> QuotaIndex {
        let mut s = QuotaSettings::default();
        for (entity, value) in settings {
            s.set(&QuotaSetting {
                entity: entity.clone(),
                kind: QuotaKind::ProducerByteRate,
                value: *value,
            });
        }
        QuotaIndex::new(&s)
    }

    #[test]
    fn the_most_specific_of_kafkas_eight_levels_applies() {
        let levels = [
            (entity(Some(Some("u")), Some(Some("c"))), 1.0, (true, true)),
            (entity(Some(Some("u")), Some(None)), 2.0, (true, true)),
            (entity(Some(Some("u")), None), 3.0, (true, false)),
            (entity(Some(None), Some(Some("c"))), 4.0, (true, true)),
            (entity(Some(None), Some(None)), 5.0, (true, true)),
            (entity(Some(None), None), 6.0, (true, false)),
            (entity(None, Some(Some("c"))), 7.0, (false, true)),
            (entity(None, Some(None)), 8.0, (false, true)),
        ];
        // With levels i.. set, level i applies.
        for first in 0..levels.len() {
            let set: Vec<_> = levels[first..].iter().map(|(e, v, _)| (e.clone(), *v)).collect();
            let applied = index(&set).resolve(QuotaKind::ProducerByteRate, "u", "c").unwrap();
            let (_, limit, (by_user, by_client)) = &levels[first];
            assert_eq!(
                applied,
                Applied {
                    limit: *limit,
                    by_user: *by_user,
                    by_client: *by_client
                },
                "level {}",
                first + 1
            );
        }
        let all: Vec<_> = levels.iter().map(|(e, v, _)| (e.clone(), *v)).collect();
        let idx = index(&all);
        // Another user falls to the default user's levels, another client
        // id to the default client id's.
        assert_eq!(idx.resolve(QuotaKind::ProducerByteRate, "v", "c").unwrap().limit, 4.0);
        assert_eq!(idx.resolve(QuotaKind::ProducerByteRate, "v", "d").unwrap().limit, 5.0);
        assert_eq!(idx.resolve(QuotaKind::ProducerByteRate, "u", "d").unwrap().limit, 2.0);
        // Other kinds have no quota.
        assert_eq!(idx.resolve(QuotaKind::ConsumerByteRate, "u", "c"), None);
        assert!(index(&[]).is_empty());
        assert_eq!(
            index(&[(entity(None, Some(Some("c"))), 1.0)]).resolve(QuotaKind::ProducerByteRate, "u", "x"),
            None
        );
    }

    fn filter(components: &[(&'static str, i8, Option<&'static str>)], strict: bool) -> Result<Filter, FilterError> {
        Filter::new(
            components.iter().map(|(t, m, n)| FilterComponent {
                entity_type: t,
                match_type: *m,
                name: *n,
            }),
            strict,
        )
    }

    #[test]
    fn filters_match_as_kafkas() {
        let user_a = entity(Some(Some("a")), None);
        let user_a_client = entity(Some(Some("a")), Some(Some("c")));
        let default_user = entity(Some(None), None);
        let client = entity(None, Some(Some("c")));
        let all = [&user_a, &user_a_client, &default_user, &client];
        let matching = |f: Filter| all.iter().filter(|e| f.matches(e)).map(|e| (*e).clone()).collect::<Vec<_>>();
        assert_eq!(matching(filter(&[], false).unwrap()).len(), 4);
        assert!(matching(filter(&[], true).unwrap()).is_empty());
        assert_eq!(
            matching(filter(&[(USER, MATCH_EXACT, Some("a"))], false).unwrap()),
            vec![user_a.clone(), user_a_client.clone()]
        );
        assert_eq!(
            matching(filter(&[(USER, MATCH_EXACT, Some("a"))], true).unwrap()),
            vec![user_a.clone()]
        );
        assert_eq!(
            matching(filter(&[(USER, MATCH_DEFAULT, None)], false).unwrap()),
            vec![default_user.clone()]
        );
        assert_eq!(
            matching(filter(&[(USER, MATCH_SPECIFIED, None)], true).unwrap()),
            vec![user_a.clone(), default_user.clone()]
        );
        assert_eq!(
            matching(filter(&[(CLIENT_ID, MATCH_SPECIFIED, None)], false).unwrap()),
            vec![user_a_client.clone(), client.clone()]
        );
        assert!(matching(filter(&[(IP, MATCH_SPECIFIED, None)], false).unwrap()).is_empty());
    }

    #[test]
    fn bad_filters_get_kafkas_errors() {
        let invalid = |c: &[(&'static str, i8, Option<&'static str>)]| match filter(c, false) {
            Err(FilterError::InvalidRequest(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            invalid(&[(USER, MATCH_EXACT, Some("a")), (USER, MATCH_DEFAULT, None)]),
            "Entity type user cannot appear more than once in the filter."
        );
        assert_eq!(
            invalid(&[(USER, MATCH_EXACT, None)]),
            "Request specified MATCH_TYPE_EXACT, but set match string to null."
        );
        assert!(invalid(&[(USER, MATCH_DEFAULT, Some("a"))]).contains("MATCH_TYPE_DEFAULT"));
        assert!(invalid(&[(USER, MATCH_SPECIFIED, Some("a"))]).contains("MATCH_TYPE_SPECIFIED"));
        assert_eq!(invalid(&[(USER, 7, None)]), "Unknown match type 7");
        assert_eq!(invalid(&[("", MATCH_SPECIFIED, None)]), "Invalid empty entity type.");
        assert!(invalid(&[(IP, MATCH_SPECIFIED, None), (USER, MATCH_SPECIFIED, None)]).contains("IP filter component"));
        assert_eq!(
            filter(&[("group", MATCH_SPECIFIED, None)], false).unwrap_err(),
            FilterError::UnsupportedEntityType("Unsupported entity type group".into())
        );
    }
}
