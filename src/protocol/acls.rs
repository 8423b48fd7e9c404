//! CreateAcls, DescribeAcls and DeleteAcls: Kafka's ACL administration,
//! stored through the coordination store and in force on every broker.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{encode_response, str_bytes, RequestContext};
use crate::broker::Broker;
use crate::security::acl::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType};
use crate::security::state::SecurityChange;

fn invalid(what: &str, code: i8) -> String {
    format!("unknown {what} {code}")
}

/// A binding from CreateAcls' wire fields, checked.
fn binding(
    resource_type: i8,
    resource_name: &StrBytes,
    pattern_type: i8,
    principal: &StrBytes,
    host: &StrBytes,
    operation: i8,
    permission: i8,
) -> Result<AclBinding, String> {
    let acl = AclBinding {
        resource_type: ResourceType::from_wire(resource_type).ok_or_else(|| invalid("resource type", resource_type))?,
        resource_name: resource_name.to_string(),
        pattern_type: PatternType::from_wire(pattern_type).ok_or_else(|| invalid("pattern type", pattern_type))?,
        principal: principal.to_string(),
        host: host.to_string(),
        operation: Operation::from_wire(operation).ok_or_else(|| invalid("operation", operation))?,
        permission: Permission::from_wire(permission).ok_or_else(|| invalid("permission type", permission))?,
    };
    acl.validate()?;
    Ok(acl)
}

#[allow(clippy::too_many_arguments)]
fn filter(
    resource_type: i8,
    resource_name: &Option<StrBytes>,
    pattern_type: i8,
    principal: &Option<StrBytes>,
    host: &Option<StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, String> {
    Ok(AclFilter {
        resource_type: ResourceType::from_wire(resource_type).ok_or_else(|| invalid("resource type", resource_type))?,
        resource_name: resource_name.as_ref().map(StrBytes::to_string),
        pattern_type: PatternType::from_wire(pattern_type).ok_or_else(|| invalid("pattern type", pattern_type))?,
        principal: principal.as_ref().map(StrBytes::to_string),
        host: host.as_ref().map(StrBytes::to_string),
        operation: Operation::from_wire(operation).ok_or_else(|| invalid("operation", operation))?,
        permission: Permission::from_wire(permission).ok_or_else(|| invalid("permission type", permission))?,
    })
}

pub async fn handle_create(broker: &Arc<Broker>, ctx: &RequestContext, req: CreateAclsRequest) -> Bytes {
    let authorized = ctx.on_cluster(broker, Operation::Alter);
    let parsed: Vec<Result<AclBinding, (ResponseError, String)>> = req
        .creations
        .iter()
        .map(|c| {
            if !authorized {
                return Err((
                    ResponseError::ClusterAuthorizationFailed,
                    "Cluster authorization failed".to_string(),
                ));
            }
            binding(
                c.resource_type,
                &c.resource_name,
                c.resource_pattern_type,
                &c.principal,
                &c.host,
                c.operation,
                c.permission_type,
            )
            .map_err(|m| (ResponseError::InvalidRequest, m))
        })
        .collect();
    let change = SecurityChange {
        create_acls: parsed.iter().filter_map(|r| r.as_ref().ok().cloned()).collect(),
        ..Default::default()
    };
    let applied = broker.change_security(change.clone()).await;
    if applied.is_ok() && !change.is_empty() {
        tracing::info!(principal = %ctx.principal, acls = ?change.create_acls, "ACLs created");
    }
    let results = parsed
        .into_iter()
        .map(|r| match (r, &applied) {
            (Ok(_), Ok(())) => AclCreationResult::default(),
            (Ok(_), Err(e)) => AclCreationResult::default()
                .with_error_code(ResponseError::UnknownServerError.code())
                .with_error_message(Some(str_bytes(e.to_string()))),
            (Err((code, message)), _) => AclCreationResult::default()
                .with_error_code(code.code())
                .with_error_message(Some(str_bytes(message))),
        })
        .collect();
    encode_response(ctx, &CreateAclsResponse::default().with_results(results))
}

pub fn handle_describe(broker: &Arc<Broker>, ctx: &RequestContext, req: DescribeAclsRequest) -> Bytes {
    let mut response = DescribeAclsResponse::default();
    if !ctx.on_cluster(broker, Operation::Describe) {
        response.error_code = ResponseError::ClusterAuthorizationFailed.code();
        response.error_message = Some(str_bytes("Cluster authorization failed"));
        return encode_response(ctx, &response);
    }
    let filter = match filter(
        req.resource_type_filter,
        &req.resource_name_filter,
        req.pattern_type_filter,
        &req.principal_filter,
        &req.host_filter,
        req.operation,
        req.permission_type,
    ) {
        Ok(f) => f,
        Err(message) => {
            response.error_code = ResponseError::InvalidRequest.code();
            response.error_message = Some(str_bytes(message));
            return encode_response(ctx, &response);
        }
    };
    let view = broker.security.view();
    let mut by_resource: BTreeMap<(ResourceType, String, PatternType), Vec<&AclBinding>> = BTreeMap::new();
    for acl in view.state.acls.iter().filter(|a| filter.matches(a)) {
        by_resource
            .entry((acl.resource_type, acl.resource_name.clone(), acl.pattern_type))
            .or_default()
            .push(acl);
    }
    response.resources = by_resource
        .into_iter()
        .map(|((kind, name, pattern), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(kind.wire())
                .with_resource_name(str_bytes(name))
                .with_pattern_type(pattern.wire())
                .with_acls(
                    acls.into_iter()
                        .map(|a| {
                            AclDescription::default()
                                .with_principal(str_bytes(a.principal.clone()))
                                .with_host(str_bytes(a.host.clone()))
                                .with_operation(a.operation.wire())
                                .with_permission_type(a.permission.wire())
                        })
                        .collect(),
                )
        })
        .collect();
    encode_response(ctx, &response)
}

pub async fn handle_delete(broker: &Arc<Broker>, ctx: &RequestContext, req: DeleteAclsRequest) -> Bytes {
    let authorized = ctx.on_cluster(broker, Operation::Alter);
    let view = broker.security.view();
    let selections: Vec<Result<Vec<AclBinding>, (ResponseError, String)>> = req
        .filters
        .iter()
        .map(|f| {
            if !authorized {
                return Err((
                    ResponseError::ClusterAuthorizationFailed,
                    "Cluster authorization failed".to_string(),
                ));
            }
            let f = filter(
                f.resource_type_filter,
                &f.resource_name_filter,
                f.pattern_type_filter,
                &f.principal_filter,
                &f.host_filter,
                f.operation,
                f.permission_type,
            )
            .map_err(|m| (ResponseError::InvalidRequest, m))?;
            Ok(view.state.acls.iter().filter(|a| f.matches(a)).cloned().collect())
        })
        .collect();
    let doomed: BTreeSet<AclBinding> = selections.iter().flatten().flatten().cloned().collect();
    let change = SecurityChange {
        delete_acls: doomed.into_iter().collect(),
        ..Default::default()
    };
    let applied = broker.change_security(change.clone()).await;
    if applied.is_ok() && !change.is_empty() {
        tracing::info!(principal = %ctx.principal, acls = ?change.delete_acls, "ACLs deleted");
    }
    let filter_results = selections
        .into_iter()
        .map(|selection| match (selection, &applied) {
            (Ok(acls), Ok(())) => DeleteAclsFilterResult::default().with_matching_acls(
                acls.into_iter()
                    .map(|a| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(a.resource_type.wire())
                            .with_resource_name(str_bytes(a.resource_name))
                            .with_pattern_type(a.pattern_type.wire())
                            .with_principal(str_bytes(a.principal))
                            .with_host(str_bytes(a.host))
                            .with_operation(a.operation.wire())
                            .with_permission_type(a.permission.wire())
                    })
                    .collect(),
            ),
            (Ok(_), Err(e)) => DeleteAclsFilterResult::default()
                .with_error_code(ResponseError::UnknownServerError.code())
                .with_error_message(Some(str_bytes(e.to_string()))),
            (Err((code, message)), _) => DeleteAclsFilterResult::default()
                .with_error_code(code.code())
                .with_error_message(Some(str_bytes(message))),
        })
        .collect();
    encode_response(ctx, &DeleteAclsResponse::default().with_filter_results(filter_results))
}
