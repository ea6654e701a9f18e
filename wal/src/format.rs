//! Byte layouts of segment headers, record frames and the checkpoint file. The crate docs
//! describe them in prose; this module is the only code that reads or writes them.

use crate::{Lsn, SegmentId};

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SLUICEWL";
/// First bytes of the checkpoint file.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"SLUICECP";
/// Format version written into segment headers.
pub const SEGMENT_VERSION: u32 = 2;
/// Oldest segment format version this build reads. Version 1 frames never open a group.
pub const OLDEST_SEGMENT_VERSION: u32 = 1;
/// Format version written into the checkpoint file.
pub const CHECKPOINT_VERSION: u32 = 1;
/// Bit of a frame's length word marking the first record written after the writer's last sync.
pub const OPENS_GROUP: u32 = 1 << 31;
/// Bytes reserved for the segment header; records start here.
pub const SEGMENT_HEADER_LEN: u64 = 64;
/// Bytes of framing in front of every record payload.
pub const FRAME_HEADER_LEN: u64 = 16;
/// Size of the checkpoint file.
pub const CHECKPOINT_LEN: usize = 36;

/// The header at offset 0 of a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Position of this segment in the log's history; grows by one per segment ever started.
    pub id: SegmentId,
    /// LSN of the first record this segment holds (or will hold).
    pub first_lsn: Lsn,
    /// Random per-segment value mixed into every record checksum.
    pub salt: u64,
    /// Size of the segment file in bytes.
    pub size: u64,
    /// The format version the header was written with; [`SegmentHeader::encode`] always writes
    /// [`SEGMENT_VERSION`].
    pub version: u32,
}

impl SegmentHeader {
    /// Encodes the header into its fixed-size block.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN as usize] {
        let mut b = [0u8; SEGMENT_HEADER_LEN as usize];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
        // 12..16 reserved, zero
        b[16..24].copy_from_slice(&self.id.0.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_lsn.0.to_le_bytes());
        b[32..40].copy_from_slice(&self.salt.to_le_bytes());
        b[40..48].copy_from_slice(&self.size.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..48]);
        b[48..52].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a header block; `Err` says why it is not a valid header. An invalid header means
    /// the slot is free (never used, or its recycling was interrupted).
    pub fn decode(b: &[u8]) -> Result<SegmentHeader, String> {
        if b.len() < SEGMENT_HEADER_LEN as usize {
            return Err(format!(
                "header is {} bytes, expected {SEGMENT_HEADER_LEN}",
                b.len()
            ));
        }
        if b[0..8] != SEGMENT_MAGIC {
            return Err("bad magic".into());
        }
        let crc = u32_at(b, 48);
        if crc != crc32c::crc32c(&b[0..48]) {
            return Err("header checksum mismatch".into());
        }
        let version = u32_at(b, 8);
        if !(OLDEST_SEGMENT_VERSION..=SEGMENT_VERSION).contains(&version) {
            return Err(format!("unsupported format version {version}"));
        }
        Ok(SegmentHeader {
            id: SegmentId(u64_at(b, 16)),
            first_lsn: Lsn(u64_at(b, 24)),
            salt: u64_at(b, 32),
            size: u64_at(b, 40),
            version,
        })
    }
}

/// The checksum of one record: covers the segment salt, the LSN, the length word as written
/// (length and [`OPENS_GROUP`]) and the payload.
pub fn record_crc(salt: u64, lsn: Lsn, word: u32, payload: &[u8]) -> u32 {
    let mut head = [0u8; 20];
    head[0..8].copy_from_slice(&salt.to_le_bytes());
    head[8..16].copy_from_slice(&lsn.0.to_le_bytes());
    head[16..20].copy_from_slice(&word.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&head), payload)
}

/// Appends one framed record to `buf`; `opens_group` when it is the first record written since
/// the segment was last synced.
pub fn encode_record(buf: &mut Vec<u8>, salt: u64, lsn: Lsn, payload: &[u8], opens_group: bool) {
    let word = payload.len() as u32 | if opens_group { OPENS_GROUP } else { 0 };
    buf.extend_from_slice(&word.to_le_bytes());
    buf.extend_from_slice(&record_crc(salt, lsn, word, payload).to_le_bytes());
    buf.extend_from_slice(&lsn.0.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// Bytes a record of `payload_len` takes on disk.
pub fn framed_len(payload_len: u64) -> u64 {
    FRAME_HEADER_LEN + payload_len
}

/// The fixed part of a record frame, before validation.
#[derive(Debug, Clone, Copy)]
pub struct FrameHeader {
    /// Payload length as written.
    pub len: u32,
    /// The [`OPENS_GROUP`] bit as written.
    pub opens_group: bool,
    /// Checksum as written.
    pub crc: u32,
    /// LSN as written.
    pub lsn: Lsn,
}

impl FrameHeader {
    /// Reads a frame header from the first [`FRAME_HEADER_LEN`] bytes of `b`.
    pub fn read(b: &[u8]) -> FrameHeader {
        let word = u32_at(b, 0);
        FrameHeader {
            len: word & !OPENS_GROUP,
            opens_group: word & OPENS_GROUP != 0,
            crc: u32_at(b, 4),
            lsn: Lsn(u64_at(b, 8)),
        }
    }

    /// True when `payload` is this frame's payload in a segment salted with `salt`.
    pub fn matches(&self, salt: u64, payload: &[u8]) -> bool {
        let word = self.len | if self.opens_group { OPENS_GROUP } else { 0 };
        payload.len() == self.len as usize && record_crc(salt, self.lsn, word, payload) == self.crc
    }
}

/// The durable checkpoint: how far the consumer has confirmed, and how much a `drop_oldest`
/// policy has thrown away over the log's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckpointData {
    /// Every record with an LSN at or below this is confirmed (or dropped).
    pub confirmed: Lsn,
    /// Records skipped by the `drop_oldest` policy, ever.
    pub dropped_total: u64,
}

impl CheckpointData {
    /// Encodes the checkpoint file's contents.
    pub fn encode(&self) -> [u8; CHECKPOINT_LEN] {
        let mut b = [0u8; CHECKPOINT_LEN];
        b[0..8].copy_from_slice(&CHECKPOINT_MAGIC);
        b[8..12].copy_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
        // 12..16 reserved, zero
        b[16..24].copy_from_slice(&self.confirmed.0.to_le_bytes());
        b[24..32].copy_from_slice(&self.dropped_total.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..32]);
        b[32..36].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes the checkpoint file's contents.
    pub fn decode(b: &[u8]) -> Result<CheckpointData, String> {
        if b.len() != CHECKPOINT_LEN {
            return Err(format!(
                "file is {} bytes, expected {CHECKPOINT_LEN}",
                b.len()
            ));
        }
        if b[0..8] != CHECKPOINT_MAGIC {
            return Err("bad magic".into());
        }
        if u32_at(b, 32) != crc32c::crc32c(&b[0..32]) {
            return Err("checksum mismatch".into());
        }
        let version = u32_at(b, 8);
        if version != CHECKPOINT_VERSION {
            return Err(format!("unsupported format version {version}"));
        }
        Ok(CheckpointData {
            confirmed: Lsn(u64_at(b, 16)),
            dropped_total: u64_at(b, 24),
        })
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_a_flipped_bit() {
        let h = SegmentHeader {
            id: SegmentId(7),
            first_lsn: Lsn(1234),
            salt: 0xdead_beef_cafe_f00d,
            size: 1 << 20,
            version: SEGMENT_VERSION,
        };
        let mut b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        b[20] ^= 1;
        assert!(SegmentHeader::decode(&b).is_err());
    }

    #[test]
    fn record_checksum_depends_on_the_salt() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 1, Lsn(5), b"hello", false);
        let head = FrameHeader::read(&buf);
        assert!(head.matches(1, &buf[FRAME_HEADER_LEN as usize..]));
        assert!(!head.matches(2, &buf[FRAME_HEADER_LEN as usize..]));
    }

    #[test]
    fn the_group_bit_is_read_apart_from_the_length_and_covered_by_the_checksum() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 1, Lsn(5), b"hello", true);
        let head = FrameHeader::read(&buf);
        assert_eq!((head.len, head.opens_group), (5, true));
        assert!(head.matches(1, &buf[FRAME_HEADER_LEN as usize..]));
        buf[3] ^= 0x80;
        let flipped = FrameHeader::read(&buf);
        assert_eq!((flipped.len, flipped.opens_group), (5, false));
        assert!(!flipped.matches(1, &buf[FRAME_HEADER_LEN as usize..]));
    }

    #[test]
    fn version_1_headers_are_still_read() {
        let h = SegmentHeader {
            id: SegmentId(1),
            first_lsn: Lsn(1),
            salt: 9,
            size: 1 << 16,
            version: SEGMENT_VERSION,
        };
        let mut b = h.encode();
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..48]);
        b[48..52].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(SegmentHeader::decode(&b).map(|h| h.version), Ok(1));
        b[8..12].copy_from_slice(&3u32.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..48]);
        b[48..52].copy_from_slice(&crc.to_le_bytes());
        assert!(SegmentHeader::decode(&b).is_err());
    }

    #[test]
    fn checkpoint_round_trips() {
        let c = CheckpointData {
            confirmed: Lsn(99),
            dropped_total: 3,
        };
        assert_eq!(CheckpointData::decode(&c.encode()), Ok(c));
        let mut b = c.encode();
        b[17] ^= 0x80;
        assert!(CheckpointData::decode(&b).is_err());
    }
}
