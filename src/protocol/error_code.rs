//! One place that turns internal errors into Kafka error codes.

use kafka_protocol::ResponseError;

use crate::log::batch::BatchError;
use crate::log::records::RecordError;
use crate::log::LogError;

/// Kafka's name for an error code, as its docs and tools write it
/// (`UNKNOWN_TOPIC_OR_PARTITION`).
pub fn name(code: i16) -> String {
    let Some(error) = kafka_protocol::ResponseError::try_from_code(code) else {
        return "NONE".to_string();
    };
    if let kafka_protocol::ResponseError::Unknown(code) = error {
        return format!("UNKNOWN_ERROR_CODE_{code}");
    }
    let camel = error.to_string();
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

pub fn log_error(e: &LogError) -> i16 {
    match e {
        LogError::Io(_) => ResponseError::KafkaStorageError.code(),
        LogError::Batch(BatchError::CrcMismatch { .. }) => ResponseError::CorruptMessage.code(),
        LogError::Batch(BatchError::UnsupportedMagic(_)) => ResponseError::UnsupportedForMessageFormat.code(),
        LogError::Batch(_) => ResponseError::InvalidRecord.code(),
        LogError::Records(e) => record_error(e),
        LogError::MessageTooLarge { .. } => ResponseError::MessageTooLarge.code(),
        LogError::InvalidProducerEpoch => ResponseError::InvalidProducerEpoch.code(),
        LogError::OutOfOrderSequence => ResponseError::OutOfOrderSequenceNumber.code(),
        // Only the transaction coordinator writes markers.
        LogError::ControlBatchFromClient => ResponseError::InvalidRecord.code(),
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange.code(),
    }
}

fn record_error(e: &RecordError) -> i16 {
    match e {
        RecordError::Batch(b) => log_error(&LogError::Batch(b.clone())),
        RecordError::TooLarge { .. } => ResponseError::MessageTooLarge.code(),
        RecordError::Decompress { .. } | RecordError::Malformed { .. } => ResponseError::CorruptMessage.code(),
        RecordError::Invalid { .. } => ResponseError::InvalidRecord.code(),
        RecordError::Timestamp { .. } => ResponseError::InvalidTimestamp.code(),
        RecordError::Internal(_) => ResponseError::UnknownServerError.code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_kafka() {
        assert_eq!(log_error(&LogError::Batch(BatchError::CrcMismatch { stored: 0, computed: 1 })), 2);
        assert_eq!(log_error(&LogError::MessageTooLarge { size: 2, max: 1 }), 10);
        assert_eq!(log_error(&LogError::OutOfOrderSequence), 45);
        let malformed = RecordError::Malformed { offset: 0, what: "x" };
        assert_eq!(log_error(&LogError::Records(malformed)), 2);
        let invalid = RecordError::Invalid {
            offset: 0,
            what: "x".into(),
        };
        assert_eq!(log_error(&LogError::Records(invalid)), 87);
        let bomb = RecordError::TooLarge { offset: 0, limit: 1 };
        assert_eq!(log_error(&LogError::Records(bomb)), 10);
        let ours = RecordError::Internal("validation task failed".into());
        assert_eq!(log_error(&LogError::Records(ours)), -1, "not the client's fault");
        assert_eq!(log_error(&LogError::InvalidProducerEpoch), 47);
        assert_eq!(
            log_error(&LogError::OffsetOutOfRange {
                offset: 0,
                log_start: 1,
                log_end: 2
            }),
            1
        );
    }
}
