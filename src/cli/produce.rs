//! `sediment produce TOPIC`: one record per line of a file or of standard
//! input, in batches sent to each partition's leader. Keyed records go to
//! the partition Kafka's default partitioner picks (murmur2 of the key),
//! keyless ones stick to one partition per batch; `--partition` overrides
//! both. Up to `MAX_IN_FLIGHT` requests are unanswered at once. Retriable
//! refusals (a leader that moved) refresh the metadata and are sent again,
//! at most `RETRIES` times: a batch may then be written twice, and land
//! after later ones, as with any producer that is not idempotent.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use serde_json::json;

use super::client::{Client, InFlight};
use super::{CliError, Format, Globals};

/// Sends of one batch after a retriable refusal.
const RETRIES: u32 = 5;
/// Produce requests written and not answered yet.
const MAX_IN_FLIGHT: usize = 5;
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    fn compression(self) -> Compression {
        match self {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    pub topic: String,
    /// Read lines from this file (default: standard input).
    #[arg(short, long)]
    pub file: Option<std::path::PathBuf>,
    /// Split each line into key and value at the first SEP (no SEP: value only).
    #[arg(short, long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// A header on every record, KEY=VALUE (repeatable).
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
    /// Write every record to this partition.
    #[arg(short, long)]
    pub partition: Option<i32>,
    /// Compress batches with this codec.
    #[arg(short = 'z', long, value_enum, default_value_t = Codec::None)]
    pub compression: Codec,
    /// all (or -1): the ISR holds it; 1: the leader does; 0: no answer.
    #[arg(short, long, default_value = "all")]
    pub acks: String,
    /// Bytes of records per batch before it is sent.
    #[arg(long, default_value_t = 1 << 20)]
    pub batch_bytes: usize,
}

/// Kafka's murmur2 (`Utils.murmur2`), which its default partitioner uses
/// for keys: `toPositive(murmur2(key)) % partitions`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= u32::from(tail[2]) << 16;
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner gives a key.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// A line as a record's key and value.
pub fn split_line<'a>(line: &'a str, separator: Option<&str>) -> (Option<&'a str>, &'a str) {
    match separator.and_then(|sep| line.split_once(sep)) {
        Some((key, value)) => (Some(key), value),
        None => (None, line),
    }
}

fn parse_acks(acks: &str) -> Result<i16, CliError> {
    match acks {
        "all" | "-1" => Ok(-1),
        "1" => Ok(1),
        "0" => Ok(0),
        other => Err(CliError::Invalid(format!("--acks {other}: give all, -1, 1 or 0"))),
    }
}

/// Records waiting for one partition.
#[derive(Default)]
struct Pending {
    records: Vec<Record>,
    bytes: usize,
}

struct Producer<'a> {
    client: Client,
    topic: &'a str,
    acks: i16,
    compression: Compression,
    timeout_ms: i32,
    /// Partition → its leader.
    leaders: BTreeMap<i32, i32>,
    /// Requests written and not answered yet, oldest first, with their
    /// batches (sent again on a retriable refusal).
    in_flight: std::collections::VecDeque<(i32, Bytes, InFlight)>,
}

impl Producer<'_> {
    async fn refresh(&mut self) -> Result<(), CliError> {
        self.leaders = self.client.leaders(self.topic).await?;
        Ok(())
    }

    fn request(&self, partition: i32, batch: Bytes) -> ProduceRequest {
        ProduceRequest::default()
            .with_acks(self.acks)
            .with_timeout_ms(self.timeout_ms)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(self.topic.to_string())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch))])])
    }

    fn leader(&self, partition: i32) -> Result<i32, CliError> {
        self.leaders.get(&partition).copied().filter(|l| *l >= 0).ok_or_else(|| {
            CliError::kafka(
                kafka_protocol::ResponseError::LeaderNotAvailable.code(),
                format!("{}-{partition} has no leader", self.topic),
            )
        })
    }

    /// The first partition error of a produce answer, as a `CliError`.
    fn refusal(&self, partition: i32, response: &ProduceResponse) -> Result<(), CliError> {
        match response
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .find(|p| p.error_code != 0)
        {
            None => Ok(()),
            Some(p) => Err(CliError::kafka(
                p.error_code,
                match &p.error_message {
                    Some(m) => format!("cannot write to {}-{partition}: {m}", self.topic),
                    None => format!("cannot write to {}-{partition}", self.topic),
                },
            )),
        }
    }

    /// Encodes one partition's records and writes them to its leader,
    /// keeping up to `MAX_IN_FLIGHT` requests unanswered so that reading
    /// and encoding go on while the broker writes.
    async fn dispatch(&mut self, partition: i32, records: &[Record]) -> Result<(), CliError> {
        let mut encoded = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: self.compression,
        };
        RecordBatchEncoder::encode(&mut encoded, records, &options)
            .map_err(|e| CliError::Invalid(format!("cannot encode a batch: {e}")))?;
        let batch: Bytes = encoded.freeze();
        let leader = match self.leader(partition) {
            Ok(leader) => leader,
            Err(_) => return self.send_again(partition, batch).await,
        };
        let request = self.request(partition, batch.clone());
        if self.acks == 0 {
            return self.client.send(Some(leader), ApiKey::Produce, 9, &request).await;
        }
        let in_flight = self.client.write(Some(leader), ApiKey::Produce, 9, &request).await?;
        self.in_flight.push_back((partition, batch, in_flight));
        while self.in_flight.len() >= MAX_IN_FLIGHT {
            self.complete_oldest().await?;
        }
        Ok(())
    }

    /// Reads the oldest answer; a retriable refusal sends the batch again.
    async fn complete_oldest(&mut self) -> Result<(), CliError> {
        let Some((partition, batch, in_flight)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let response: ProduceResponse = self.client.read(&in_flight).await?;
        match self.refusal(partition, &response) {
            Err(CliError::Kafka { code, .. }) if retriable(code) => self.send_again(partition, batch).await,
            other => other,
        }
    }

    /// Every answer read.
    async fn drain(&mut self) -> Result<(), CliError> {
        while !self.in_flight.is_empty() {
            self.complete_oldest().await?;
        }
        Ok(())
    }

    /// Sends a batch and waits for its answer, after a metadata refresh,
    /// up to `RETRIES` times while the refusal is retriable.
    async fn send_again(&mut self, partition: i32, batch: Bytes) -> Result<(), CliError> {
        let request = self.request(partition, batch);
        let mut attempt = 0;
        loop {
            attempt += 1;
            tokio::time::sleep(RETRY_BACKOFF).await;
            self.refresh().await?;
            let outcome = match self.leader(partition) {
                Err(e) => Err(e),
                Ok(leader) => {
                    let response: ProduceResponse = self.client.call(Some(leader), ApiKey::Produce, 9, &request).await?;
                    self.refusal(partition, &response)
                }
            };
            match outcome {
                Err(CliError::Kafka { code, .. }) if attempt < RETRIES && retriable(code) => continue,
                other => return other,
            }
        }
    }
}

fn retriable(code: i16) -> bool {
    kafka_protocol::ResponseError::try_from_code(code).is_some_and(|e| e.is_retriable())
}

pub async fn run(globals: &Globals, args: ProduceArgs) -> Result<(), CliError> {
    let acks = parse_acks(&args.acks)?;
    let headers: IndexMap<StrBytes, Option<Bytes>> = super::topic::key_values(&args.headers)?
        .into_iter()
        .map(|(k, v)| (StrBytes::from_string(k), Some(Bytes::from(v))))
        .collect();
    let (input, total_bytes): (Box<dyn BufRead>, Option<u64>) = match &args.file {
        Some(path) => {
            let file = std::fs::File::open(path).map_err(|e| CliError::Invalid(format!("cannot open {}: {e}", path.display())))?;
            let size = file.metadata().ok().map(|m| m.len());
            (Box::new(std::io::BufReader::with_capacity(1 << 20, file)), size)
        }
        None => (Box::new(std::io::BufReader::new(std::io::stdin().lock())), None),
    };
    let client = Client::connect(globals).await?;
    let mut producer = Producer {
        client,
        topic: &args.topic,
        acks,
        compression: args.compression.compression(),
        timeout_ms: i32::try_from(globals.timeout_ms).unwrap_or(i32::MAX),
        leaders: BTreeMap::new(),
        in_flight: Default::default(),
    };
    producer.refresh().await?;
    let partitions = i32::try_from(producer.leaders.len()).unwrap_or(i32::MAX);
    if let Some(p) = args.partition {
        if !producer.leaders.contains_key(&p) {
            return Err(CliError::Invalid(format!("topic {} has no partition {p}", args.topic)));
        }
    }
    let progress = total_bytes.filter(|_| std::io::stderr().is_terminal() && globals.format == Format::Text);
    let started = Instant::now();
    let mut last_progress = started;
    let (mut records, mut bytes_read) = (0u64, 0u64);
    let mut sticky = 0i32;
    let mut pending: BTreeMap<i32, Pending> = BTreeMap::new();
    let batch_bytes = args.batch_bytes.max(1);
    for line in input.lines() {
        let line = line.map_err(|e| CliError::Invalid(format!("cannot read the input: {e}")))?;
        bytes_read += line.len() as u64 + 1;
        let line = line.strip_suffix('\r').unwrap_or(&line);
        let (key, value) = split_line(line, args.key_separator.as_deref());
        let partition = match (args.partition, key) {
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key.as_bytes(), partitions),
            (None, None) => sticky,
        };
        let slot = pending.entry(partition).or_default();
        slot.bytes += line.len() + 16;
        slot.records.push(Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: slot.records.len() as i64,
            // The codec's encoder starts a new batch wherever offset minus
            // sequence changes; offset - 1 keeps one batch, with the base
            // sequence -1 of a producer that is not idempotent.
            sequence: slot.records.len() as i32 - 1,
            timestamp: crate::clock::now_ms(),
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: headers.clone(),
        });
        records += 1;
        if slot.bytes >= batch_bytes {
            let full = std::mem::take(slot);
            producer.dispatch(partition, &full.records).await?;
            if key.is_none() && args.partition.is_none() {
                // Keyless records move on to the next partition per batch.
                sticky = (sticky + 1) % partitions.max(1);
            }
        }
        if let Some(total) = progress {
            if last_progress.elapsed() >= Duration::from_millis(250) {
                last_progress = Instant::now();
                let rate = records as f64 / started.elapsed().as_secs_f64().max(0.001);
                eprint!(
                    "\r{:>5.1}%  {records} records  {rate:.0} records/s",
                    100.0 * bytes_read as f64 / total.max(1) as f64
                );
                let _ = std::io::stderr().flush();
            }
        }
    }
    for (partition, slot) in std::mem::take(&mut pending) {
        if !slot.records.is_empty() {
            producer.dispatch(partition, &slot.records).await?;
        }
    }
    producer.drain().await?;
    let seconds = started.elapsed().as_secs_f64();
    let rate = records as f64 / seconds.max(0.001);
    if progress.is_some() {
        eprintln!();
    }
    match globals.format {
        Format::Text => eprintln!(
            "produced {records} records ({bytes_read} bytes) to {} in {seconds:.2} s: {rate:.0} records/s, {:.1} MB/s",
            args.topic,
            bytes_read as f64 / 1e6 / seconds.max(0.001)
        ),
        Format::Json => println!(
            "{}",
            json!({"topic": args.topic, "records": records, "bytes": bytes_read, "seconds": seconds, "records_per_second": rate})
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Kafka's UtilsTest.testMurmur2.
        for (data, hash) in [
            (&b"21"[..], -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
            (b"abc", 479470107),
        ] {
            assert_eq!(murmur2(data), hash, "{}", String::from_utf8_lossy(data));
        }
        for n in 1..20 {
            assert!((0..n).contains(&partition_for_key(b"any key", n)));
        }
    }

    #[test]
    fn lines_split_at_the_first_separator() {
        assert_eq!(split_line("k=v=w", Some("=")), (Some("k"), "v=w"));
        assert_eq!(split_line("no separator", Some("=")), (None, "no separator"));
        assert_eq!(split_line("k\tv", None), (None, "k\tv"));
        assert_eq!(split_line("::v", Some("::")), (Some(""), "v"));
        assert!(parse_acks("2").is_err());
        assert_eq!(parse_acks("all"), Ok(-1));
    }
}
