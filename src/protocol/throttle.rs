//! Client quotas at the Kafka edge: `throttle_time_ms` in every response
//! that has it, and what each request draws from its client's budgets:
//! produce bytes and handling time before and after the request is handled,
//! fetch bytes in the Fetch handler. Inter-broker requests (replica
//! fetches) and the SASL exchange are exempt, as in Kafka.

use std::time::Duration;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::broker::Broker;
use crate::quota::{count_throttle, Client, QuotaKind};

/// A response that tells its client how long to wait.
pub trait ThrottleTime {
    /// Sets `throttle_time_ms` to `ms` unless it already says longer.
    fn raise_throttle(&mut self, _ms: i32) {}
}

macro_rules! throttle_time_field {
    ($($response:ty),* $(,)?) => {
        $(impl ThrottleTime for $response {
            fn raise_throttle(&mut self, ms: i32) {
                self.throttle_time_ms = self.throttle_time_ms.max(ms);
            }
        })*
    };
}

throttle_time_field!(
    ProduceResponse,
    FetchResponse,
    ListOffsetsResponse,
    MetadataResponse,
    OffsetCommitResponse,
    OffsetFetchResponse,
    FindCoordinatorResponse,
    JoinGroupResponse,
    HeartbeatResponse,
    LeaveGroupResponse,
    SyncGroupResponse,
    DescribeGroupsResponse,
    ListGroupsResponse,
    ApiVersionsResponse,
    CreateTopicsResponse,
    DeleteTopicsResponse,
    DeleteRecordsResponse,
    InitProducerIdResponse,
    OffsetForLeaderEpochResponse,
    AddPartitionsToTxnResponse,
    AddOffsetsToTxnResponse,
    EndTxnResponse,
    TxnOffsetCommitResponse,
    DescribeAclsResponse,
    CreateAclsResponse,
    DeleteAclsResponse,
    DescribeConfigsResponse,
    AlterConfigsResponse,
    CreatePartitionsResponse,
    DeleteGroupsResponse,
    IncrementalAlterConfigsResponse,
    OffsetDeleteResponse,
    DescribeClientQuotasResponse,
    AlterClientQuotasResponse,
    DescribeUserScramCredentialsResponse,
    AlterUserScramCredentialsResponse,
    DescribeClusterResponse,
    DescribeTransactionsResponse,
    DescribeProducersResponse,
    ListTransactionsResponse,
    DescribeTopicPartitionsResponse,
    ListConfigResourcesResponse,
    ConsumerGroupHeartbeatResponse,
    ConsumerGroupDescribeResponse,
);

// The SASL exchange comes before a client is known: never throttled.
impl ThrottleTime for SaslHandshakeResponse {}
impl ThrottleTime for SaslAuthenticateResponse {}
// Broker to broker, and without the field.
impl ThrottleTime for kafka_protocol::messages::WriteTxnMarkersResponse {}

fn client(ctx: &RequestContext) -> Client<'_> {
    Client {
        user: ctx.principal.name(),
        client_id: &ctx.client_id,
    }
}

/// Whether client quotas apply to this request at all.
pub(super) fn is_quota_exempt(request: &RequestKind) -> bool {
    match request {
        RequestKind::Fetch(req) => req.replica_id.0 >= 0,
        RequestKind::SaslHandshake(_) | RequestKind::SaslAuthenticate(_) => true,
        _ => false,
    }
}

/// The quotas in force for this request (`None` while none is set), as
/// `before` found them: every step of one request reads the same set.
fn quotas(ctx: &RequestContext) -> Option<&crate::quota::QuotaIndex> {
    ctx.quotas.as_deref().map(|view| &view.quotas)
}

/// How long `ctx`'s client still owes on its `kind` budget.
fn owed(broker: &Broker, ctx: &RequestContext, kind: QuotaKind) -> i32 {
    let Some(index) = quotas(ctx) else { return 0 };
    broker.quotas.owed_ms(index, kind, client(ctx), crate::clock::now_ms())
}

/// Draws `amount` from `ctx`'s client's `kind` budget; returns how long it
/// must then wait.
fn draw(broker: &Broker, ctx: &RequestContext, kind: QuotaKind, amount: f64) -> i32 {
    let Some(index) = quotas(ctx) else { return 0 };
    broker
        .quotas
        .record(index, kind, client(ctx), amount, crate::clock::now_ms(), &broker.metrics)
}

/// Before a request is handled: notes the quotas in force in `ctx`, and
/// sets the throttle its response carries for the handling time its client
/// already owes and, for Produce, for its bytes (the whole request frame,
/// as Kafka counts). Kafka leaves acks=0 produce out of the request-time
/// quota. False while no quota is set at all.
pub(super) fn before(broker: &Broker, ctx: &mut RequestContext, request: &RequestKind, frame_len: usize) -> bool {
    let view = broker.security.view();
    if view.quotas.is_empty() {
        return false;
    }
    ctx.quotas = Some(view);
    let produce_acks = match request {
        RequestKind::Produce(req) => Some(req.acks),
        _ => None,
    };
    let mut throttle = 0;
    if produce_acks != Some(0) {
        throttle = owed(broker, ctx, QuotaKind::RequestPercentage);
        count_throttle(&broker.metrics, QuotaKind::RequestPercentage, throttle);
    }
    if produce_acks.is_some() {
        let owed = draw(broker, ctx, QuotaKind::ProducerByteRate, frame_len as f64);
        count_throttle(&broker.metrics, QuotaKind::ProducerByteRate, owed);
        throttle = throttle.max(owed);
    }
    ctx.throttle_time_ms = throttle;
    true
}

/// After a request's effect: draws the time it kept the broker busy from
/// its client's request_percentage budget.
pub(super) fn after(broker: &Broker, ctx: &RequestContext, busy: Duration) {
    draw(broker, ctx, QuotaKind::RequestPercentage, busy.as_secs_f64() * 1_000_000.0);
}

/// Fetch, before reading: how long the consumer still owes on its byte
/// rate (a fetch that owes is answered at once and empty, as Kafka does),
/// and the most its response may hold.
pub(super) fn fetch_admission(broker: &Broker, ctx: &RequestContext) -> (i32, Option<usize>) {
    let Some(index) = quotas(ctx) else { return (0, None) };
    let cap = broker.quotas.fetch_cap(index, client(ctx), broker.config.quota_burst_ms);
    (owed(broker, ctx, QuotaKind::ConsumerByteRate), cap)
}

/// Fetch, once answered: draws the response's bytes from the consumer's
/// byte-rate budget; returns the throttle the response carries.
pub(super) fn fetch_served(broker: &Broker, ctx: &RequestContext, bytes: usize) -> i32 {
    let throttle = draw(broker, ctx, QuotaKind::ConsumerByteRate, bytes as f64);
    count_throttle(&broker.metrics, QuotaKind::ConsumerByteRate, throttle);
    throttle
}

/// KIP-599's `controller_mutation_rate` for one CreateTopics, CreatePartitions
/// or DeleteTopics request: partitions created or deleted are drawn from
/// the client's budget. In strict mode (the request versions that know
/// THROTTLING_QUOTA_EXCEEDED) a topic is refused while the budget is in
/// debt; older versions are let through and only throttled, as in Kafka.
pub(super) struct Mutations<'a> {
    broker: &'a Broker,
    ctx: &'a RequestContext,
    strict: bool,
}

impl<'a> Mutations<'a> {
    pub fn new(broker: &'a Broker, ctx: &'a RequestContext, strict: bool) -> Self {
        Self { broker, ctx, strict }
    }

    /// Whether the next topic may be changed.
    pub fn admit(&self) -> bool {
        !self.strict || owed(self.broker, self.ctx, QuotaKind::ControllerMutationRate) == 0
    }

    /// Draws `partitions` created or deleted from the budget.
    pub fn record(&self, partitions: i32) {
        if partitions > 0 {
            draw(self.broker, self.ctx, QuotaKind::ControllerMutationRate, partitions as f64);
        }
    }

    /// The throttle the response carries: how long until the budget is out
    /// of debt.
    pub fn throttle_ms(&self) -> i32 {
        let owed = owed(self.broker, self.ctx, QuotaKind::ControllerMutationRate);
        count_throttle(&self.broker.metrics, QuotaKind::ControllerMutationRate, owed);
        owed
    }
}

/// The error code and message a topic refused by `Mutations::admit` gets.
pub(super) fn mutation_refused() -> (i16, Option<StrBytes>) {
    let error = kafka_protocol::ResponseError::ThrottlingQuotaExceeded;
    (error.code(), Some(super::str_bytes("The throttling quota has been exceeded.")))
}
