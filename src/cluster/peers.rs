//! Requests from this broker to other brokers that are not replication:
//! transaction markers to partition leaders (WriteTxnMarkers), and produce
//! verification with transaction coordinators (AddPartitionsToTxn v4).
//! One connection per peer, reused and made again after a failure;
//! requests to one peer take turns on it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use super::ClusterLink;
use crate::kafka_client::{ClientSecurity, Connection};

/// Connect and answer bounds for a peer request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read from a peer (these answers are small).
const MAX_RESPONSE_BYTES: usize = 16 << 20;

type Slot = Arc<tokio::sync::Mutex<Option<(String, Connection)>>>;

#[derive(Default)]
pub struct Peers {
    slots: parking_lot::Mutex<HashMap<i32, Slot>>,
}

impl Peers {
    fn slot(&self, broker_id: i32) -> Slot {
        self.slots.lock().entry(broker_id).or_default().clone()
    }

    /// Sends one request to `broker_id` on the inter-broker listener and
    /// reads its answer, within `timeout`.
    pub async fn call<Req, Resp>(
        &self,
        link: &ClusterLink,
        broker_id: i32,
        api: (ApiKey, i16),
        request: &Req,
        timeout: Duration,
    ) -> anyhow::Result<Resp>
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
        let address = link
            .image()
            .brokers
            .get(&broker_id)
            .map(|(registration, _)| registration.address_on(&link.inter_broker_listener).to_string())
            .ok_or_else(|| anyhow::anyhow!("broker {broker_id} is not live"))?;
        let slot = self.slot(broker_id);
        let mut held = tokio::time::timeout(timeout, slot.lock())
            .await
            .map_err(|_| anyhow::anyhow!("the connection to broker {broker_id} is busy"))?;
        if held.as_ref().is_some_and(|(a, _)| *a != address) {
            *held = None;
        }
        if held.is_none() {
            let security: &ClientSecurity = &link.inter_broker;
            let connection = Connection::connect(
                &address,
                format!("sediment-broker-{}", link.broker_id),
                CONNECT_TIMEOUT.min(timeout),
                MAX_RESPONSE_BYTES,
                security,
            )
            .await?;
            *held = Some((address, connection));
        }
        let Some((_, connection)) = held.as_mut() else {
            anyhow::bail!("no connection to broker {broker_id}");
        };
        let answer = connection.call(api.0, api.1, request, timeout).await;
        if answer.is_err() {
            // The stream may be mid-frame: start over next time.
            *held = None;
        }
        answer
    }
}
