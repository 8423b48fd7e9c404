//! SaslHandshake and SaslAuthenticate (the connection's SASL exchange,
//! `security::sasl`), and the SCRAM credential APIs (KIP-554).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::describe_user_scram_credentials_response::{CredentialInfo, DescribeUserScramCredentialsResult};
use kafka_protocol::messages::{
    alter_user_scram_credentials_response::AlterUserScramCredentialsResult, AlterUserScramCredentialsRequest,
    AlterUserScramCredentialsResponse, DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::ResponseError;

use super::{encode_response, str_bytes, Connection, RequestContext};
use crate::broker::Broker;
use crate::security::acl::Operation;
use crate::security::sasl::AuthStep;
use crate::security::scram::{ScramAlgorithm, ScramCredential};
use crate::security::state::{ScramEntry, SecurityChange};

pub fn handle_handshake(ctx: &RequestContext, connection: &mut Connection, req: SaslHandshakeRequest) -> Bytes {
    let session = &mut connection.session;
    // v0 would send the tokens unframed after this response; only v1 is served.
    let outcome = if ctx.api_version == 0 {
        Err(ResponseError::UnsupportedVersion.code())
    } else {
        session.handshake(req.mechanism.as_str())
    };
    let error_code = match outcome {
        Ok(()) => 0,
        Err(code) => {
            // Kafka closes the connection after refusing a handshake.
            connection.close_after_response = true;
            tracing::info!(mechanism = %req.mechanism.as_str(), error_code = code, "SASL handshake refused");
            code
        }
    };
    let mechanisms = connection.session.mechanism_names().into_iter().map(str_bytes).collect();
    let response = SaslHandshakeResponse::default()
        .with_error_code(error_code)
        .with_mechanisms(mechanisms);
    encode_response(ctx, &response)
}

pub async fn handle_authenticate(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    connection: &mut Connection,
    req: SaslAuthenticateRequest,
) -> Bytes {
    let mechanism = connection.session.mechanism_in_progress();
    let step = connection
        .session
        .authenticate(&req.auth_bytes, broker.security.as_ref(), crate::clock::now_ms());
    let listener = &connection.session.listener.name;
    let response = match step {
        AuthStep::Continue(token) => SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(token)),
        AuthStep::Done {
            token,
            session_lifetime_ms,
        } => {
            broker.security.authenticated(listener, mechanism, connection.peer.ip());
            tracing::debug!(principal = %connection.session.principal, mechanism, "authenticated");
            SaslAuthenticateResponse::default()
                .with_auth_bytes(Bytes::from(token))
                .with_session_lifetime_ms(session_lifetime_ms)
        }
        AuthStep::Failed { message, reason } => {
            let user = connection.session.attempted_user().unwrap_or_default();
            let delay = broker
                .security
                .authentication_failed(listener, mechanism, connection.peer, &user, &reason);
            // Slows guessing: the answer, and the close, wait. The
            // connection holds its slot meanwhile; shutdown cuts the wait.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(delay)) => {}
                _ = broker.stopping.cancelled() => {}
            }
            connection.close_after_response = true;
            SaslAuthenticateResponse::default()
                .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                .with_error_message(Some(str_bytes(message)))
        }
    };
    encode_response(ctx, &response)
}

pub fn handle_describe_scram(broker: &Arc<Broker>, ctx: &RequestContext, req: DescribeUserScramCredentialsRequest) -> Bytes {
    let mut response = DescribeUserScramCredentialsResponse::default();
    if !ctx.on_cluster(broker, Operation::Describe) {
        response.error_code = ResponseError::ClusterAuthorizationFailed.code();
        return encode_response(ctx, &response);
    }
    let view = broker.security.view();
    let describe = |user: &str| {
        let infos = view.state.scram.get(user).map(|by_mechanism| {
            by_mechanism
                .iter()
                .map(|(alg, c)| CredentialInfo::default().with_mechanism(alg.wire()).with_iterations(c.iterations))
                .collect::<Vec<_>>()
        });
        let result = DescribeUserScramCredentialsResult::default().with_user(str_bytes(user));
        match infos {
            Some(infos) => result.with_credential_infos(infos),
            None => result
                .with_error_code(ResponseError::ResourceNotFound.code())
                .with_error_message(Some(str_bytes("Attempt to describe a user credential that does not exist"))),
        }
    };
    response.results = match req.users.filter(|u| !u.is_empty()) {
        None => view.state.scram.keys().map(|u| describe(u)).collect(),
        Some(users) => {
            let mut seen = BTreeMap::new();
            for u in &users {
                *seen.entry(u.name.as_str()).or_insert(0) += 1;
            }
            seen.iter()
                .map(|(user, count)| match count {
                    1 => describe(user),
                    _ => DescribeUserScramCredentialsResult::default()
                        .with_user(str_bytes(*user))
                        .with_error_code(ResponseError::DuplicateResource.code())
                        .with_error_message(Some(str_bytes(
                            "Cannot describe SCRAM credentials for the same user twice in a single request",
                        ))),
                })
                .collect()
        }
    };
    encode_response(ctx, &response)
}

/// Why one credential change is refused, with Kafka's code and message.
fn check_upsertion(
    alg: Option<ScramAlgorithm>,
    iterations: i32,
    salt: &[u8],
    salted: &[u8],
) -> Result<ScramAlgorithm, (ResponseError, String)> {
    let Some(alg) = alg else {
        return Err((ResponseError::UnsupportedSaslMechanism, "Unknown SCRAM mechanism".into()));
    };
    if iterations < ScramAlgorithm::MIN_ITERATIONS {
        return Err((
            ResponseError::UnacceptableCredential,
            format!("Too few iterations: minimum is {}", ScramAlgorithm::MIN_ITERATIONS),
        ));
    }
    if iterations > ScramAlgorithm::MAX_ITERATIONS {
        return Err((
            ResponseError::UnacceptableCredential,
            format!("Too many iterations: maximum is {}", ScramAlgorithm::MAX_ITERATIONS),
        ));
    }
    let hash_len = match alg {
        ScramAlgorithm::Sha256 => 32,
        ScramAlgorithm::Sha512 => 64,
    };
    if salt.is_empty() || salt.len() > 1024 || salted.len() != hash_len {
        return Err((
            ResponseError::UnacceptableCredential,
            format!("The salt must be 1 to 1024 bytes and the salted password {hash_len} bytes"),
        ));
    }
    Ok(alg)
}

pub async fn handle_alter_scram(broker: &Arc<Broker>, ctx: &RequestContext, req: AlterUserScramCredentialsRequest) -> Bytes {
    let users: Vec<String> = req
        .deletions
        .iter()
        .map(|d| d.name.to_string())
        .chain(req.upsertions.iter().map(|u| u.name.to_string()))
        .collect();
    let mut outcome: BTreeMap<String, Result<(), (ResponseError, String)>> = BTreeMap::new();
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for u in &users {
        *count.entry(u.as_str()).or_insert(0) += 1;
    }
    let authorized = ctx.on_cluster(broker, Operation::Alter);
    let view = broker.security.view();
    let mut change = SecurityChange::default();
    let mut refuse = |user: &str, e: (ResponseError, String)| {
        outcome.insert(user.to_string(), Err(e));
    };
    for d in &req.deletions {
        let user = d.name.as_str();
        let alg = ScramAlgorithm::from_wire(d.mechanism);
        if !authorized {
            refuse(
                user,
                (ResponseError::ClusterAuthorizationFailed, "Cluster authorization failed".into()),
            );
        } else if count[user] > 1 {
            refuse(
                user,
                (
                    ResponseError::DuplicateResource,
                    "A user credential cannot be altered twice in the same request".into(),
                ),
            );
        } else if user.is_empty() {
            refuse(user, (ResponseError::UnacceptableCredential, "Username must not be empty".into()));
        } else if let Some(alg) = alg {
            if view.state.credential(user, alg).is_none() {
                refuse(
                    user,
                    (
                        ResponseError::ResourceNotFound,
                        "Attempt to delete a user credential that does not exist".into(),
                    ),
                );
            } else {
                change.delete_scram.push((user.to_string(), alg));
            }
        } else {
            refuse(user, (ResponseError::UnsupportedSaslMechanism, "Unknown SCRAM mechanism".into()));
        }
    }
    for u in &req.upsertions {
        let user = u.name.as_str();
        if !authorized {
            refuse(
                user,
                (ResponseError::ClusterAuthorizationFailed, "Cluster authorization failed".into()),
            );
            continue;
        }
        if count[user] > 1 {
            refuse(
                user,
                (
                    ResponseError::DuplicateResource,
                    "A user credential cannot be altered twice in the same request".into(),
                ),
            );
            continue;
        }
        if user.is_empty() {
            refuse(user, (ResponseError::UnacceptableCredential, "Username must not be empty".into()));
            continue;
        }
        match check_upsertion(ScramAlgorithm::from_wire(u.mechanism), u.iterations, &u.salt, &u.salted_password) {
            Ok(alg) => change.upsert_scram.push(ScramEntry {
                user: user.to_string(),
                mechanism: alg,
                credential: ScramCredential::from_salted_password(alg, &u.salt, &u.salted_password, u.iterations),
            }),
            Err(e) => refuse(user, e),
        }
    }
    let applied = broker.change_security(change.clone()).await;
    for user in change
        .upsert_scram
        .iter()
        .map(|e| &e.user)
        .chain(change.delete_scram.iter().map(|(u, _)| u))
    {
        let result = match &applied {
            Ok(()) => Ok(()),
            Err(e) => Err((ResponseError::UnknownServerError, e.to_string())),
        };
        outcome.insert(user.clone(), result);
    }
    if applied.is_ok() && !change.is_empty() {
        tracing::info!(principal = %ctx.principal, changed = outcome.iter().filter(|(_, r)| r.is_ok()).count(), "SCRAM credentials altered");
    }
    let results = outcome
        .into_iter()
        .map(|(user, result)| {
            let r = AlterUserScramCredentialsResult::default().with_user(str_bytes(user));
            match result {
                Ok(()) => r,
                Err((code, message)) => r.with_error_code(code.code()).with_error_message(Some(str_bytes(message))),
            }
        })
        .collect();
    encode_response(ctx, &AlterUserScramCredentialsResponse::default().with_results(results))
}
