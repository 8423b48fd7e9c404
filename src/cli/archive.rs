//! `sediment archive ls|inspect`: what the archive holds, read from the
//! bucket (or folder) directly, without a broker: the topics, and per
//! partition the objects with their offsets, records, sizes and time range,
//! from each partition's newest manifest (docs/archive-format.md). Queries
//! over the data are DuckDB's job (docs/analytics.md).

use std::collections::BTreeSet;
use std::sync::Arc;

use object_store::path::Path;
use object_store::ObjectStore;
use serde_json::json;

use super::output::table;
use super::{print, CliError, Format};
use crate::archive::manifest::{self, Manifest};

#[derive(clap::Args, Debug, Clone)]
pub struct ArchiveArgs {
    /// The archive's URL, as the broker's --archive (file://, s3://, ...;
    /// S3 settings from the AWS_* variables). Default: ./data's archive.
    #[arg(long, env = "SEDIMENT_ARCHIVE", global = true)]
    pub archive: Option<String>,
    /// Output: human text, or JSON for scripts.
    #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
    pub format: Format,
}

#[derive(clap::Subcommand, Debug)]
pub enum ArchiveCommand {
    /// The archived topics.
    Ls,
    /// A topic's archived objects per partition: offsets, records, sizes, times.
    Inspect {
        topic: String,
        /// List every object, not only each partition's summary.
        #[arg(short, long)]
        objects: bool,
    },
}

/// The names under `prefix` that start with `label=`, from the store's
/// listing with a delimiter.
async fn labelled(store: &dyn ObjectStore, prefix: Option<&Path>, label: &str) -> Result<BTreeSet<String>, CliError> {
    let listing = store
        .list_with_delimiter(prefix)
        .await
        .map_err(|e| CliError::Unreachable(format!("cannot list the archive: {e}")))?;
    let start = format!("{label}=");
    Ok(listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.parts().next_back().map(|part| part.as_ref().to_string()))
        .filter_map(|name| name.strip_prefix(&start).map(str::to_string))
        .collect())
}

/// One partition's archive as `inspect` shows it.
fn partition_json(partition: i32, m: &Manifest, objects: bool) -> serde_json::Value {
    let mut value = json!({
        "partition": partition,
        "objects": m.objects.len(),
        "start_offset": m.log_start_offset.or_else(|| m.start_offset()),
        "end_offset": m.end_offset(),
        "records": m.objects.iter().map(|o| o.records).sum::<i64>(),
        "bytes": m.total_bytes(),
        "min_timestamp": m.objects.iter().map(|o| o.min_timestamp).min(),
        "max_timestamp": m.objects.iter().map(|o| o.max_timestamp).max(),
        "manifest_version": m.version,
    });
    if objects {
        value["object_list"] = json!(m
            .objects
            .iter()
            .map(|o| json!({"key": o.key, "first_offset": o.first_offset, "last_offset": o.last_offset, "records": o.records, "bytes": o.size_bytes, "min_timestamp": o.min_timestamp, "max_timestamp": o.max_timestamp}))
            .collect::<Vec<_>>());
    }
    value
}

fn or_dash(v: &serde_json::Value) -> String {
    if v.is_null() {
        "-".to_string()
    } else {
        v.to_string().trim_matches('"').to_string()
    }
}

pub async fn run(args: &ArchiveArgs, command: ArchiveCommand) -> Result<(), CliError> {
    let url = args
        .archive
        .clone()
        .unwrap_or_else(|| crate::archive::store::default_url(std::path::Path::new("data")));
    let store: Arc<dyn ObjectStore> = crate::archive::store::open(&url).map_err(|e| CliError::Invalid(e.to_string()))?;
    match command {
        ArchiveCommand::Ls => {
            let topics = labelled(store.as_ref(), None, "topic").await?;
            print(
                args.format,
                || topics.iter().map(|t| format!("{t}\n")).collect(),
                || json!(topics.iter().collect::<Vec<_>>()),
            );
        }
        ArchiveCommand::Inspect { topic, objects } => {
            let prefix = crate::archive::layout::topic_prefix(&topic);
            let partitions: Vec<i32> = labelled(store.as_ref(), Some(&prefix), "partition")
                .await?
                .iter()
                .filter_map(|p| p.parse().ok())
                .collect::<BTreeSet<i32>>()
                .into_iter()
                .collect();
            if partitions.is_empty() {
                return Err(CliError::kafka(
                    kafka_protocol::ResponseError::UnknownTopicOrPartition.code(),
                    format!("the archive at {url} holds nothing of topic {topic}"),
                ));
            }
            let mut described = Vec::new();
            for partition in partitions {
                let m = manifest::load(store.as_ref(), &topic, partition)
                    .await
                    .map_err(|e| CliError::Unreachable(format!("cannot read the manifest of {topic}-{partition}: {e}")))?;
                described.push(partition_json(partition, &m, objects));
            }
            print(
                args.format,
                || {
                    let rows: Vec<Vec<String>> = described
                        .iter()
                        .map(|p| {
                            [
                                "partition",
                                "objects",
                                "start_offset",
                                "end_offset",
                                "records",
                                "bytes",
                                "min_timestamp",
                                "max_timestamp",
                            ]
                            .iter()
                            .map(|k| or_dash(&p[*k]))
                            .collect()
                        })
                        .collect();
                    let mut out = format!("topic {topic}  archive {url}\n");
                    out.push_str(&table(
                        &[
                            "PARTITION",
                            "OBJECTS",
                            "START",
                            "END",
                            "RECORDS",
                            "BYTES",
                            "MIN-TIMESTAMP",
                            "MAX-TIMESTAMP",
                        ],
                        &rows,
                    ));
                    if objects {
                        let rows: Vec<Vec<String>> = described
                            .iter()
                            .flat_map(|p| p["object_list"].as_array().cloned().unwrap_or_default())
                            .map(|o| {
                                ["key", "first_offset", "last_offset", "records", "bytes"]
                                    .iter()
                                    .map(|k| or_dash(&o[*k]))
                                    .collect()
                            })
                            .collect();
                        out.push('\n');
                        out.push_str(&table(&["OBJECT", "FIRST", "LAST", "RECORDS", "BYTES"], &rows));
                    }
                    out
                },
                || json!({"topic": topic, "archive": url, "partitions": described}),
            );
        }
    }
    Ok(())
}
