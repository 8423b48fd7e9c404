//! `sediment consume TOPIC`: reads partitions from a start (beginning,
//! end, an offset or a time), or those its group assigns it
//! (`consume_group.rs`), with Fetch to each leader, and prints each record: its value by default, a template of its fields,
//! or JSON. It stops after `-n` records, or at the end of every partition,
//! unless `--follow`. Batches are checked and decoded with the broker's own
//! decoder, bounded like a produce (`MAX_DECODED_BYTES`); read_committed
//! (the default) drops aborted transactions' records, as Kafka's clients do.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

use super::client::{Client, Position};
use super::consume_group::GroupReader;
use super::{CliError, Format, Globals};
use crate::archive::records::{decode_batch, Row};
use crate::log::batch::{BatchHeader, HEADER_LEN};

/// Decompressed bytes one batch may decode to (a bound on what a broker's
/// answer can make this process hold).
const MAX_DECODED_BYTES: u64 = 256 << 20;
/// How long a fetch waits at the end of every partition.
const MAX_WAIT_MS: i32 = 500;

#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Where to start: beginning, end, offset:N or timestamp:MS.
    #[arg(short = 's', long, default_value = "beginning")]
    pub from: String,
    /// Only these partitions (default: all).
    #[arg(short, long, value_delimiter = ',')]
    pub partitions: Vec<i32>,
    /// Stop after this many records.
    #[arg(short = 'n', long)]
    pub count: Option<u64>,
    /// At the end of the partitions, wait for more (like `tail -f`).
    #[arg(short, long)]
    pub follow: bool,
    /// Print each record as KEY=VALUE (text output).
    #[arg(short = 'K', long)]
    pub key_value: bool,
    /// Print each record with this template (text output): {topic},
    /// {partition}, {offset}, {timestamp}, {key}, {value}, {headers}; {{
    /// and }} for braces, \n and \t for newline and tab.
    #[arg(short, long)]
    pub template: Option<String>,
    /// Include the records of aborted transactions.
    #[arg(long)]
    pub read_uncommitted: bool,
    /// Read as a member of this consumer group (KIP-848): the partitions
    /// the group assigns, from its committed offsets (--from where it has
    /// none), committing what was printed.
    #[arg(short, long, conflicts_with = "partitions")]
    pub group: Option<String>,
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Topic,
    Partition,
    Offset,
    Timestamp,
    Key,
    Value,
    Headers,
}

/// Parses a `--template`; an unknown field or a lone brace is an error.
pub fn parse_template(template: &str) -> Result<Vec<Piece>, CliError> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(CliError::Invalid(format!("--template: '{{{name}' is not closed"))),
                    }
                }
                let piece = match name.as_str() {
                    "topic" => Piece::Topic,
                    "partition" => Piece::Partition,
                    "offset" => Piece::Offset,
                    "timestamp" => Piece::Timestamp,
                    "key" => Piece::Key,
                    "value" => Piece::Value,
                    "headers" => Piece::Headers,
                    other => {
                        return Err(CliError::Invalid(format!(
                            "--template: unknown field {{{other}}}; the fields are topic, partition, offset, timestamp, key, value, headers"
                        )))
                    }
                };
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(piece);
            }
            '}' => return Err(CliError::Invalid("--template: a lone '}' (write }} for a brace)".to_string())),
            '\\' if chars.peek() == Some(&'n') => {
                chars.next();
                text.push('\n');
            }
            '\\' if chars.peek() == Some(&'t') => {
                chars.next();
                text.push('\t');
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

fn lossy(bytes: &Option<Bytes>) -> Option<String> {
    bytes.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
}

/// Writes one record as the template says, and a newline. Keys, values
/// and headers are written as their bytes, as kcat does.
pub fn render(out: &mut impl Write, pieces: &[Piece], topic: &str, partition: i32, row: &Row) -> std::io::Result<()> {
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.write_all(t.as_bytes())?,
            Piece::Topic => out.write_all(topic.as_bytes())?,
            Piece::Partition => write!(out, "{partition}")?,
            Piece::Offset => write!(out, "{}", row.offset)?,
            Piece::Timestamp => write!(out, "{}", row.timestamp)?,
            Piece::Key => out.write_all(row.key.as_deref().unwrap_or_default())?,
            Piece::Value => out.write_all(row.value.as_deref().unwrap_or_default())?,
            Piece::Headers => {
                for (i, (k, v)) in row.headers.iter().enumerate() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    out.write_all(k.as_bytes())?;
                    out.write_all(b"=")?;
                    out.write_all(v.as_deref().unwrap_or_default())?;
                }
            }
        }
    }
    out.write_all(b"\n")
}

/// One record as a JSON object (docs/cli.md; ../DESIGN.md's contract).
pub fn record_json(topic: &str, partition: i32, row: &Row) -> serde_json::Value {
    json!({
        "topic": topic,
        "partition": partition,
        "offset": row.offset,
        "timestamp": row.timestamp,
        "key": lossy(&row.key),
        "value": lossy(&row.value),
        "headers": row.headers.iter().map(|(k, v)| json!({"key": k, "value": v.as_ref().map(|v| String::from_utf8_lossy(v).into_owned())})).collect::<Vec<_>>(),
    })
}

/// The whole batches in a fetched `records` field, in order. A partial
/// batch at the end (a broker may cut one at its size limits) is left for
/// the next fetch.
fn whole_batches(records: &Bytes) -> Vec<(BatchHeader, Bytes)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while records.len().saturating_sub(pos) >= HEADER_LEN {
        let Ok(header) = BatchHeader::parse(&records[pos..]) else { break };
        let end = pos + header.total_len();
        if header.total_len() < HEADER_LEN || end > records.len() {
            break;
        }
        out.push((header, records.slice(pos..end)));
        pos = end;
    }
    out
}

/// What a read_committed consumer drops: the transactional batches of a
/// producer from the first offset of an aborted transaction until its
/// abort marker (Kafka's `aborted_transactions`).
#[derive(Default)]
struct Aborted {
    /// (first offset, producer id), not reached yet.
    upcoming: BTreeSet<(i64, i64)>,
    /// Producers inside an aborted transaction now.
    open: BTreeSet<i64>,
}

impl Aborted {
    /// Whether the batch's records are to be dropped.
    fn drops(&mut self, header: &BatchHeader, batch: &Bytes) -> bool {
        while let Some(&(first, producer)) = self.upcoming.first() {
            if first > header.last_offset() {
                break;
            }
            self.upcoming.pop_first();
            self.open.insert(producer);
        }
        if header.is_control() {
            if crate::log::txn::marker_of(batch).is_some() {
                self.open.remove(&header.producer_id);
            }
            return true;
        }
        header.is_transactional() && self.open.contains(&header.producer_id)
    }
}

pub async fn run(globals: &Globals, args: ConsumeArgs) -> Result<(), CliError> {
    let start = Position::parse("--from", &args.from, "beginning", "end")?;
    let template = match (&args.template, args.key_value) {
        (Some(_), true) => return Err(CliError::Invalid("give --template or --key-value, not both".to_string())),
        (Some(t), false) => parse_template(t)?,
        (None, true) => vec![Piece::Key, Piece::Text("=".into()), Piece::Value],
        (None, false) => vec![Piece::Value],
    };
    if args.count == Some(0) {
        return Ok(());
    }
    let mut client = Client::connect(globals).await?;
    let all = client.partitions_of(&args.topic).await?;
    let chosen: Vec<i32> = if args.partitions.is_empty() {
        all.clone()
    } else {
        args.partitions.clone()
    };
    if let Some(missing) = chosen.iter().find(|p| !all.contains(p)) {
        return Err(CliError::Invalid(format!("topic {} has no partition {missing}", args.topic)));
    }
    let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
    let mut group = match &args.group {
        // The group's coordinator assigns the partitions as it goes.
        Some(group) => Some(GroupReader::new(&mut client, group, &args.topic).await?),
        None => {
            let keys: Vec<(String, i32)> = chosen.iter().map(|p| (args.topic.clone(), *p)).collect();
            for ((_, partition), located) in client.locate(&keys, start).await? {
                let position = start.resolve(located.start.unwrap_or(0), located.end.unwrap_or(0), located.at_time);
                positions.insert(partition, position);
            }
            None
        }
    };
    // Ctrl-C stops reading between requests: what was printed is still
    // committed, and the member leaves its group.
    let read = tokio::select! {
        read = read_records(&mut client, globals, &args, &template, start, &mut positions, &mut group) => read,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    let finished = match &mut group {
        Some(group) => group.finish(&mut client, &args.topic, &positions).await,
        None => Ok(()),
    };
    read.and(finished)
}

/// Fetches and prints records from `positions` on, moving them past what
/// was printed, until `-n` records, the end (unless `--follow`), or an error.
async fn read_records(
    client: &mut Client,
    globals: &Globals,
    args: &ConsumeArgs,
    template: &[Piece],
    start: Position,
    positions: &mut BTreeMap<i32, i64>,
    group: &mut Option<GroupReader>,
) -> Result<(), CliError> {
    let isolation: i8 = if args.read_uncommitted { 0 } else { 1 };
    let limits = crate::log::records::Limits {
        max_decoded_bytes: MAX_DECODED_BYTES,
    };
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let mut printed = 0u64;
    let mut at_end: BTreeSet<i32> = BTreeSet::new();
    let mut leaders: BTreeMap<i32, i32> = BTreeMap::new();
    let joined = tokio::time::Instant::now();
    loop {
        if let Some(group) = group.as_mut() {
            if group.heartbeat_due() {
                group.heartbeat(client, &args.topic, start, positions).await?;
                // Partitions came or went: their leaders and ends anew.
                leaders.clear();
                at_end.retain(|p| positions.contains_key(p));
            }
            if !group.assigned() {
                if joined.elapsed() > globals.timeout() {
                    return Err(CliError::Unreachable(format!(
                        "group {} assigned no partitions within --timeout-ms",
                        args.group.as_deref().unwrap_or_default()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            if positions.is_empty() {
                // Nothing assigned to this member: wait for a rebalance, or
                // stop at once without --follow.
                if !args.follow && args.count.is_none() {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        }
        if leaders.is_empty() {
            // A topic deleted meanwhile ends the command with Kafka's error.
            leaders = client.leaders(&args.topic).await?;
            leaders.retain(|partition, _| positions.contains_key(partition));
        }
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for (&partition, &leader) in &leaders {
            by_leader.entry(leader).or_default().push(partition);
        }
        let mut refresh = false;
        for (leader, partitions) in by_leader {
            if leader < 0 {
                refresh = true;
                continue;
            }
            let request = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(MAX_WAIT_MS)
                .with_min_bytes(1)
                .with_max_bytes(50 << 20)
                .with_isolation_level(isolation)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(args.topic.clone())))
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|p| {
                                FetchPartition::default()
                                    .with_partition(*p)
                                    .with_fetch_offset(positions.get(p).copied().unwrap_or(0))
                                    .with_current_leader_epoch(-1)
                                    .with_log_start_offset(-1)
                                    .with_partition_max_bytes(8 << 20)
                            })
                            .collect(),
                    )]);
            let response: FetchResponse = client.call(Some(leader), ApiKey::Fetch, 12, &request).await?;
            if response.error_code != 0 {
                return Err(CliError::kafka(response.error_code, format!("cannot fetch {}", args.topic)));
            }
            for data in response.responses.iter().flat_map(|t| &t.partitions) {
                let partition = data.partition_index;
                if data.error_code != 0 {
                    let error = kafka_protocol::ResponseError::try_from_code(data.error_code);
                    if error.is_some_and(|e| e.is_retriable()) {
                        refresh = true;
                        continue;
                    }
                    return Err(CliError::kafka(data.error_code, format!("cannot read {}-{partition}", args.topic)));
                }
                let mut aborted = Aborted::default();
                for txn in data.aborted_transactions.iter().flatten() {
                    aborted.upcoming.insert((txn.first_offset, txn.producer_id.0));
                }
                let mut position = positions.get(&partition).copied().unwrap_or(0);
                for (header, batch) in data.records.as_ref().map(whole_batches).unwrap_or_default() {
                    let next = header.last_offset() + 1;
                    if aborted.drops(&header, &batch) {
                        position = position.max(next);
                        continue;
                    }
                    let mut rows = Vec::new();
                    decode_batch(&batch, limits, &mut rows)
                        .map_err(|e| CliError::Invalid(format!("{}-{partition}: a batch does not decode: {e}", args.topic)))?;
                    // With a group, a batch is flushed before its rows count as
                    // printed: what is committed reached the output. A failed write
                    // commits from the batch's start (at least once).
                    let unflushed = position;
                    for row in rows.iter().filter(|r| r.offset >= position) {
                        let written = match globals.format {
                            Format::Text => render(&mut stdout, template, &args.topic, partition, row),
                            Format::Json => writeln!(stdout, "{}", record_json(&args.topic, partition, row)),
                        };
                        if written.is_err() {
                            // The reader went away (a closed pipe): stop quietly.
                            positions.insert(partition, unflushed);
                            return Ok(());
                        }
                        printed += 1;
                        if args.count.is_some_and(|n| printed >= n) {
                            let flushed = stdout.flush().is_ok();
                            positions.insert(partition, if flushed { row.offset + 1 } else { unflushed });
                            return Ok(());
                        }
                    }
                    if group.is_some() && stdout.flush().is_err() {
                        positions.insert(partition, unflushed);
                        return Ok(());
                    }
                    position = position.max(next);
                }
                positions.insert(partition, position);
                // The end a reader of this isolation level sees.
                let end = if isolation == 1 && data.last_stable_offset >= 0 {
                    data.last_stable_offset
                } else {
                    data.high_watermark
                };
                if position >= end {
                    at_end.insert(partition);
                } else {
                    at_end.remove(&partition);
                }
            }
        }
        let _ = stdout.flush();
        if !args.follow && args.count.is_none() && at_end.len() == positions.len() {
            return Ok(());
        }
        if let Some(group) = group.as_mut().filter(|g| g.commit_due()) {
            group.commit(client, &args.topic, positions).await?;
        }
        if refresh {
            leaders.clear();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_name_known_fields_and_escape_braces() {
        let pieces = parse_template("{partition}:{offset} {key}={value}\\t{{x}}").unwrap();
        let row = Row {
            offset: 7,
            timestamp: 1,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![("h".into(), Some(Bytes::from_static(b"1")))],
        };
        let text = |pieces: &[Piece]| {
            let mut out = Vec::new();
            render(&mut out, pieces, "t", 2, &row).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text(&pieces), "2:7 k=v\t{x}\n");
        assert_eq!(text(&parse_template("{headers}").unwrap()), "h=1\n");
        for bad in ["{nope}", "{value", "}", "a } b"] {
            assert!(matches!(parse_template(bad), Err(CliError::Invalid(_))), "{bad}");
        }
        let json = record_json("t", 2, &row);
        assert_eq!(json["offset"], 7);
        assert_eq!(json["key"], "k");
        assert_eq!(json["headers"][0]["value"], "1");
        assert_eq!(record_json("t", 0, &Row { key: None, ..row })["key"], serde_json::Value::Null);
    }

    #[test]
    fn starts_parse() {
        let parse = |s| Position::parse("--from", s, "beginning", "end");
        assert_eq!(parse("beginning"), Ok(Position::Start));
        assert_eq!(parse("end"), Ok(Position::End));
        assert_eq!(parse("offset:3"), Ok(Position::Offset(3)));
        assert_eq!(parse("timestamp:9"), Ok(Position::Timestamp(9)));
        for bad in ["", "start", "offset:-2", "timestamp:x"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse("first"),
            Err(CliError::Invalid(
                "--from first: give beginning, end, offset:N or timestamp:MS".into()
            ))
        );
        assert_eq!(Position::Timestamp(5).resolve(0, 9, None), 9, "no record after the time: the end");
        assert_eq!(Position::Timestamp(5).resolve(0, 9, Some(4)), 4);
    }

    #[test]
    fn a_partial_batch_at_the_end_waits_for_the_next_fetch() {
        let rows: Vec<Row> = (0..3)
            .map(|i| Row {
                offset: i,
                timestamp: 0,
                key: None,
                value: Some(Bytes::from(vec![b'x'; 10])),
                headers: vec![],
            })
            .collect();
        let one = crate::archive::records::encode_batch(&rows, 0);
        let mut two = one.to_vec();
        two.extend_from_slice(&one[..one.len() - 5]);
        let batches = whole_batches(&Bytes::from(two));
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].1, one);
        assert!(whole_batches(&Bytes::from_static(&[0u8; 70])).len() <= 1);
    }
}
