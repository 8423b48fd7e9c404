//! DescribeClientQuotas (48) and AlterClientQuotas (49): the client quotas
//! kept with the security state, with Kafka's validation and filters
//! (`crate::quota`). Enforcement is in `protocol::throttle`.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{
    alter_client_quotas_response, describe_client_quotas_response, AlterClientQuotasRequest, AlterClientQuotasResponse,
    DescribeClientQuotasRequest, DescribeClientQuotasResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{encode_response, str_bytes, RequestContext};
use crate::broker::Broker;
use crate::quota::entity::validate_value;
use crate::quota::index::{Filter, FilterComponent, FilterError};
use crate::quota::{QuotaEntity, QuotaKind, QuotaSetting};
use crate::security::acl::Operation;
use crate::security::state::SecurityChange;

pub fn handle_describe(broker: &Arc<Broker>, ctx: &RequestContext, req: DescribeClientQuotasRequest) -> Bytes {
    let refuse = |code: ResponseError, message: String| {
        let response = DescribeClientQuotasResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(str_bytes(message)));
        encode_response(ctx, &response)
    };
    if !ctx.on_cluster(broker, Operation::DescribeConfigs) {
        return refuse(ResponseError::ClusterAuthorizationFailed, "Cluster authorization failed".into());
    }
    let components = req.components.iter().map(|c| FilterComponent {
        entity_type: c.entity_type.as_str(),
        match_type: c.match_type,
        name: c._match.as_ref().map(StrBytes::as_str),
    });
    let filter = match Filter::new(components, req.strict) {
        Ok(filter) => filter,
        Err(FilterError::InvalidRequest(m)) => return refuse(ResponseError::InvalidRequest, m),
        Err(FilterError::UnsupportedEntityType(m)) => return refuse(ResponseError::UnsupportedVersion, m),
    };
    let view = broker.security.view();
    let entries = view
        .state
        .quotas
        .0
        .iter()
        .filter(|(entity, _)| filter.matches(entity))
        .map(|(entity, values)| {
            describe_client_quotas_response::EntryData::default()
                .with_entity(
                    entity
                        .components()
                        .into_iter()
                        .map(|(kind, name)| {
                            describe_client_quotas_response::EntityData::default()
                                .with_entity_type(str_bytes(kind))
                                .with_entity_name(name.map(str_bytes))
                        })
                        .collect(),
                )
                .with_values(
                    values
                        .iter()
                        .map(|(kind, value)| {
                            describe_client_quotas_response::ValueData::default()
                                .with_key(str_bytes(kind.name()))
                                .with_value(*value)
                        })
                        .collect(),
                )
        })
        .collect();
    encode_response(ctx, &DescribeClientQuotasResponse::default().with_entries(Some(entries)))
}

/// What one entry of an AlterClientQuotas asks, once checked.
type EntryChange = (Vec<QuotaSetting>, Vec<(QuotaEntity, QuotaKind)>);

pub async fn handle_alter(broker: &Arc<Broker>, ctx: &RequestContext, req: AlterClientQuotasRequest) -> Bytes {
    let authorized = ctx.on_cluster(broker, Operation::AlterConfigs);
    let view = broker.security.view();
    let mut seen = HashSet::new();
    let checked: Vec<Result<EntryChange, (ResponseError, String)>> = req
        .entries
        .iter()
        .map(|entry| {
            if !authorized {
                return Err((
                    ResponseError::ClusterAuthorizationFailed,
                    "Cluster authorization failed".to_string(),
                ));
            }
            let invalid = |m: String| (ResponseError::InvalidRequest, m);
            let entity = QuotaEntity::from_wire(
                entry
                    .entity
                    .iter()
                    .map(|e| (e.entity_type.as_str(), e.entity_name.as_ref().map(StrBytes::as_str))),
            )
            .map_err(invalid)?;
            if !seen.insert(entity.clone()) {
                return Err(invalid(format!("Ignoring duplicate entity {entity}")));
            }
            let mut keys = HashSet::new();
            let (mut set, mut remove) = (Vec::new(), Vec::new());
            for op in &entry.ops {
                let key = op.key.as_str();
                if !keys.insert(key) {
                    return Err(invalid(format!(
                        "Duplicate quota key {key} not updating quota for this entity {entity}"
                    )));
                }
                if op.remove {
                    // Removing what is not set (or not a quota) changes nothing.
                    if let Some(kind) = QuotaKind::parse(key) {
                        if view.state.quotas.get(&entity, kind).is_some() {
                            remove.push((entity.clone(), kind));
                        }
                    }
                    continue;
                }
                let kind = validate_value(key, op.value).map_err(invalid)?;
                if view.state.quotas.get(&entity, kind).map(f64::to_bits) != Some(op.value.to_bits()) {
                    set.push(QuotaSetting {
                        entity: entity.clone(),
                        kind,
                        value: op.value,
                    });
                }
            }
            Ok((set, remove))
        })
        .collect();
    let mut change = SecurityChange::default();
    for (set, remove) in checked.iter().flatten() {
        change.set_quotas.extend(set.iter().cloned());
        change.remove_quotas.extend(remove.iter().cloned());
    }
    let applied = if req.validate_only {
        Ok(())
    } else {
        broker.change_security(change.clone()).await
    };
    if !req.validate_only && applied.is_ok() && !change.is_empty() {
        tracing::info!(
            principal = %ctx.principal,
            set = ?change.set_quotas,
            removed = ?change.remove_quotas,
            "client quotas altered"
        );
    }
    let entries = req
        .entries
        .iter()
        .zip(checked)
        .map(|(entry, result)| {
            let (code, message) = match (result, &applied) {
                (Ok(_), Ok(())) => (0, None),
                (Ok(_), Err(e)) => (ResponseError::UnknownServerError.code(), Some(e.to_string())),
                (Err((code, message)), _) => (code.code(), Some(message)),
            };
            alter_client_quotas_response::EntryData::default()
                .with_error_code(code)
                .with_error_message(message.map(str_bytes))
                .with_entity(
                    entry
                        .entity
                        .iter()
                        .map(|e| {
                            alter_client_quotas_response::EntityData::default()
                                .with_entity_type(e.entity_type.clone())
                                .with_entity_name(e.entity_name.clone())
                        })
                        .collect(),
                )
        })
        .collect();
    encode_response(ctx, &AlterClientQuotasResponse::default().with_entries(entries))
}
