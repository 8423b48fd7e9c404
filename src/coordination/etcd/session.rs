//! A broker's membership: a lease, the registration under it, and the task
//! that keeps both alive through etcd outages and lease loss.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use tokio::sync::watch;

use super::keys::Keys;
use super::{json, parse, EtcdError, Registration, SessionState};

/// A broker's membership: its lease and its registration, kept alive.
pub struct Session {
    client: Client,
    keys: Keys,
    registration: Registration,
    ttl: Duration,
    state: watch::Sender<SessionState>,
}

/// Why keeping a lease alive stopped.
enum KeepAliveEnd {
    /// etcd no longer knows the lease: register again.
    Lost,
    /// etcd did not answer within a TTL: keep trying the same lease.
    Unreachable,
}

impl Session {
    pub fn new(client: Client, cluster: &str, registration: Registration, ttl: Duration) -> Self {
        let (state, _) = watch::channel(SessionState {
            broker_epoch: None,
            lease: None,
            connected: false,
        });
        Self {
            client,
            keys: Keys::new(cluster),
            registration,
            ttl,
            state,
        }
    }

    pub fn state(&self) -> watch::Receiver<SessionState> {
        self.state.subscribe()
    }

    /// `run` until `leave` is cancelled, then revokes the lease: the
    /// registration (and the controller key, if held) goes at once, so the
    /// controller moves this broker's leaderships without waiting for the
    /// lease to expire (a controlled shutdown).
    pub async fn run_until(self, leave: tokio_util::sync::CancellationToken) {
        let client = self.client.clone();
        let state = self.state.subscribe();
        let broker_id = self.registration.broker_id;
        tokio::select! {
            _ = self.run() => {}
            _ = leave.cancelled() => {}
        }
        let lease = state.borrow().lease;
        if let Some(lease) = lease {
            let mut client = client;
            match tokio::time::timeout(Duration::from_secs(5), client.lease_revoke(lease)).await {
                Ok(Ok(_)) => tracing::info!(broker_id, lease, "left the cluster: lease revoked"),
                Ok(Err(e)) => tracing::warn!(broker_id, lease, error = %e, "cannot revoke the lease; it expires on its own"),
                Err(_) => tracing::warn!(broker_id, lease, "etcd did not answer the lease revocation; it expires on its own"),
            }
        }
    }

    /// Registers and keeps the registration alive until the task is
    /// cancelled (the lease then expires on its own).
    pub async fn run(mut self) {
        let mut attempt = 0u32;
        loop {
            let (lease, epoch) = match self.register().await {
                Ok(ok) => ok,
                Err(e) => {
                    tracing::warn!(error = %e, attempt, broker_id = self.registration.broker_id, "cannot register with etcd; retrying");
                    self.publish(None, None, false);
                    tokio::time::sleep(backoff(attempt, self.ttl)).await;
                    attempt = attempt.saturating_add(1);
                    continue;
                }
            };
            attempt = 0;
            tracing::info!(
                broker_id = self.registration.broker_id,
                broker_epoch = epoch,
                lease,
                "registered with etcd"
            );
            self.publish(Some(epoch), Some(lease), true);
            loop {
                match self.keep_alive(lease).await {
                    KeepAliveEnd::Lost => {
                        tracing::warn!(
                            broker_id = self.registration.broker_id,
                            lease,
                            "etcd lost this broker's lease; registering again"
                        );
                        self.publish(None, None, true);
                        break;
                    }
                    KeepAliveEnd::Unreachable => {
                        tracing::warn!(
                            broker_id = self.registration.broker_id,
                            lease,
                            "etcd does not answer keep-alives; retrying"
                        );
                        self.publish(Some(epoch), Some(lease), false);
                        tokio::time::sleep(backoff(attempt, self.ttl)).await;
                        attempt = attempt.saturating_add(1);
                    }
                }
            }
        }
    }

    fn publish(&self, broker_epoch: Option<i64>, lease: Option<i64>, connected: bool) {
        self.state.send_if_modified(|s| {
            let next = SessionState {
                broker_epoch,
                lease,
                connected,
            };
            let changed = *s != next;
            *s = next;
            changed
        });
    }

    /// Grants a lease and creates the registration under it, if no other
    /// broker holds the id. A registration left by this broker's previous
    /// run (same data dir) is taken over: its lease is revoked first.
    async fn register(&mut self) -> Result<(i64, i64), EtcdError> {
        let key = self.keys.broker(self.registration.broker_id);
        let existing = self.client.get(key.as_str(), None).await?;
        if let Some(kv) = existing.kvs().first() {
            let theirs: Registration = parse(kv)?;
            if theirs.dir_id != self.registration.dir_id {
                return Err(EtcdError::IdTaken(theirs.broker_id, theirs.dir_id));
            }
            // Ours, from before a restart: without this the id would stay
            // taken until the old lease expired.
            let _ = self.client.lease_revoke(kv.lease()).await;
        }
        let ttl_secs = self.ttl.as_secs().max(2) as i64;
        let lease = self.client.lease_grant(ttl_secs, None).await?.id();
        let put = TxnOp::put(key.as_str(), json(&self.registration), Some(PutOptions::new().with_lease(lease)));
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([put]);
        let response = self.client.txn(txn).await?;
        if !response.succeeded() {
            let _ = self.client.lease_revoke(lease).await;
            return Err(EtcdError::IdTaken(self.registration.broker_id, "unknown".into()));
        }
        let epoch = response.header().map_or(0, |h| h.revision());
        Ok((lease, epoch))
    }

    /// Sends keep-alives every third of the TTL and reads every answer.
    async fn keep_alive(&mut self, lease: i64) -> KeepAliveEnd {
        let interval = self.ttl / 3;
        let (mut keeper, mut answers) = match self.client.lease_keep_alive(lease).await {
            Ok(pair) => pair,
            Err(e) if is_lease_not_found(&e) => return KeepAliveEnd::Lost,
            Err(_) => return KeepAliveEnd::Unreachable,
        };
        loop {
            if keeper.keep_alive().await.is_err() {
                return KeepAliveEnd::Unreachable;
            }
            match tokio::time::timeout(self.ttl, answers.message()).await {
                Ok(Ok(Some(answer))) if answer.ttl() > 0 => {
                    // Copied out first: publishing while the borrow is held
                    // would deadlock on the channel's lock.
                    let epoch = self.state.borrow().broker_epoch;
                    self.publish(epoch, Some(lease), true);
                }
                // A TTL of 0 is etcd saying the lease is gone.
                Ok(Ok(Some(_))) => return KeepAliveEnd::Lost,
                Ok(Err(e)) if is_lease_not_found(&e) => return KeepAliveEnd::Lost,
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return KeepAliveEnd::Unreachable,
            }
            tokio::time::sleep(interval).await;
        }
    }
}

fn is_lease_not_found(e: &etcd_client::Error) -> bool {
    e.to_string().contains("lease not found")
}

/// 200 ms doubling, at most one TTL: a broker comes back within a lease.
fn backoff(attempt: u32, ttl: Duration) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << attempt.min(8))).min(ttl.max(Duration::from_millis(200)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_stops_at_one_ttl() {
        let ttl = Duration::from_secs(3);
        assert_eq!(backoff(0, ttl), Duration::from_millis(200));
        assert_eq!(backoff(2, ttl), Duration::from_millis(800));
        assert_eq!(backoff(30, ttl), ttl);
    }
}
